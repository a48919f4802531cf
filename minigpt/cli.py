"""The command line: minigpt-prepare, minigpt-train, minigpt-eval, minigpt-runs, minigpt-plot, minigpt-sample, minigpt-serve,
minigpt-export.

Each command turns its flags into the library's arguments and prints the result. A UserError becomes
one clear message and a non-zero exit, with no traceback; Ctrl-C and SIGTERM exit with 130/143 after
the command has removed what it had half-written; a second signal exits at once (signals.py).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from .errors import Interrupted, UserError


def _run(app: typer.Typer) -> None:
    from .signals import install

    install()  # the first signal unwinds, so temporary files are removed; a second exits at once
    try:
        app()
    except Interrupted as e:
        name = "interrupted" if e.signum == signal.SIGINT else "terminated"
        print(f"minigpt: {name}; nothing half-written was kept", file=sys.stderr)
        sys.exit(128 + e.signum)


def _fail(e: UserError) -> typer.Exit:
    from .distributed import env_rank

    rank = env_rank()
    if rank == 0 or e.local:  # under torchrun every rank meets a shared error; one message is enough
        print(f"{f'[rank {rank}] ' if rank else ''}error: {e}", file=sys.stderr)
    return typer.Exit(e.exit_code)


prepare_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Stream a fixed slice of C4 (or another hub dataset, or your own text files) once, "
    "freeze it with a character vocabulary, and write uint8/uint16 token shards for "
    "minigpt-train.",
)


@prepare_app.command()
def prepare(
    docs: Optional[str] = typer.Option(
        None,
        "--docs",
        metavar="N|all",
        show_default="3000 from a dataset, all of local files",
        help="Train documents: the first N of the train split, or all of them.",
    ),
    val_docs: Optional[str] = typer.Option(
        None,
        "--val-docs",
        metavar="M|all",
        show_default="N/10, 1 to 10,000",
        help="Validation documents: the first M of the validation split (or of "
        "--val-data-files; or the M after the N where there is neither).",
    ),
    val_fraction: Optional[float] = typer.Option(
        None,
        "--val-fraction",
        metavar="F",
        show_default="0.1 where nothing else gives validation",
        help="Validation is the last F (0 < F <= 0.5) of the slice's characters, a document cut in two at the cut.",
    ),
    dataset: Optional[str] = typer.Option(
        None, "--dataset", show_default="allenai/c4", help="Hub id, or a local folder laid out like a hub repo."
    ),
    config: Optional[str] = typer.Option(
        None,
        "--config",
        show_default="en for C4, else the dataset's default",
        help="Dataset config (C4: en, en.noblocklist, realnewslike, ...).",
    ),
    split: Optional[str] = typer.Option(None, "--split", show_default="train", help="The dataset's split for train."),
    val_split: Optional[str] = typer.Option(
        None,
        "--val-split",
        show_default="validation, where the dataset has it",
        help="The dataset's split for validation.",
    ),
    revision: Optional[str] = typer.Option(
        None,
        "--revision",
        metavar="REV",
        show_default="the default branch",
        help="Hub branch, tag or commit to stream (the manifest records the commit).",
    ),
    text_column: Optional[str] = typer.Option(
        None, "--text-column", metavar="NAME", show_default="text", help="The column that holds the documents' text."
    ),
    data_files: Optional[str] = typer.Option(
        None,
        "--data-files",
        metavar="FILES",
        help="Local files instead of --dataset: a file, a quoted glob or a "
        "folder of plain text (.txt), JSON lines (.json, .jsonl, .json.gz) "
        "or Parquet.",
    ),
    val_data_files: Optional[str] = typer.Option(
        None, "--val-data-files", metavar="FILES", help="Local files for the validation documents."
    ),
    test_split: Optional[str] = typer.Option(
        None,
        "--test-split",
        metavar="NAME",
        show_default="no test split",
        help="A test split kept apart from validation, from the dataset's split NAME (minigpt-eval --split test).",
    ),
    test_data_files: Optional[str] = typer.Option(
        None, "--test-data-files", metavar="FILES", help="Local files for a test split's documents."
    ),
    test_docs: Optional[str] = typer.Option(
        None,
        "--test-docs",
        metavar="K|all",
        show_default="N/10, 1 to 10,000, with --test-split or --test-data-files",
        help="Test documents: the first K of --test-split or --test-data-files; alone, the K after "
        "the train (and validation) ones.",
    ),
    test_fraction: Optional[float] = typer.Option(
        None,
        "--test-fraction",
        metavar="F",
        help="The test split is the last F of the slice's characters (after validation's, where it is a "
        "fraction too; the two at most 0.5).",
    ),
    doc_split: Optional[str] = typer.Option(
        None,
        "--doc-split",
        metavar="file|paragraph|line",
        show_default="file",
        help="Plain text: a document is a whole file, a run of lines between blank lines, or a line.",
    ),
    vocab: Optional[str] = typer.Option(
        None,
        "--vocab",
        metavar="PATH",
        help="Encode with this frozen vocabulary (a vocab.json, or a dataset or run "
        "folder): characters outside it become <unk>.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", show_default="data/<source>-<N>", help="The dataset folder to write."
    ),
    min_count: Optional[int] = typer.Option(
        None,
        "--min-count",
        metavar="K",
        show_default="1 per million train chars, at least 10 (a dataset) or 1 (local files)",
        help="A character enters the vocabulary when it occurs at least K times in train; rarer ones become <unk>.",
    ),
    max_vocab: Optional[int] = typer.Option(
        None,
        "--max-vocab",
        metavar="V",
        show_default="no cap",
        help="Keep at most V entries (the 2 special tokens included), the most "
        "frequent characters first. 256 keeps uint8 shards.",
    ),
    shard_tokens: int = typer.Option(
        100_000_000, "--shard-tokens", metavar="S", help="Tokens per shard file, at most."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset made with other arguments."),
) -> None:
    from .data.prepare import BuildOptions, prepare as run_prepare, summary
    from .data.source import resolve_source

    try:
        source = resolve_source(
            dataset,
            config,
            data_files,
            val_data_files,
            docs,
            val_docs,
            text_column,
            split,
            val_split,
            revision,
            doc_split,
            val_fraction,
            test_data_files,
            test_docs,
            test_split,
            test_fraction,
        )
        result = run_prepare(source, BuildOptions(min_count, max_vocab, shard_tokens, vocab), out, force)
    except UserError as e:
        raise _fail(e) from None
    print(summary(result))


def prepare_cli() -> None:
    _run(prepare_app)


train_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Train a GPT on a dataset made by minigpt-prepare; leaves a run folder that minigpt-sample can use alone.",
)


@train_app.command()
def train(
    preset: str = typer.Option(
        "seed",
        "--preset",
        help="seed (gpt.py's best config), A, B, C (its larger "
        "variants) or tiny (seconds on a CPU). Flags below override it.",
    ),
    data: Optional[Path] = typer.Option(
        None, "--data", show_default="the newest dataset under data/", help="Dataset folder made by minigpt-prepare."
    ),
    out: Optional[Path] = typer.Option(None, "--out", show_default="runs/<dataset>-<preset>", help="Run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    init_from: Optional[Path] = typer.Option(
        None,
        "--init-from",
        metavar="RUN",
        help="Start from this run's weights (fine-tuning): its model shape, a "
        "fresh optimizer and schedule; the dataset must use its vocabulary.",
    ),
    force: bool = typer.Option(False, "--force", help="Start over in a run folder that already holds a run."),
    verify_data: bool = typer.Option(False, "--verify-data", help="Check every shard's sha256 before training."),
    tensorboard: bool = typer.Option(
        False,
        "--tensorboard",
        help="Also write every metrics row as TensorBoard scalars "
        "into the run folder's tb/ (pip install 'minigpt[tensorboard]').",
    ),
    wandb: bool = typer.Option(
        False,
        "--wandb",
        help="Also log every metrics row and the config to Weights & Biases (pip install 'minigpt[wandb]').",
    ),
    wandb_project: str = typer.Option("minigpt", "--wandb-project", help="The wandb project (with --wandb)."),
    n_layer: Optional[int] = typer.Option(None, "--n-layer"),
    n_head: Optional[int] = typer.Option(None, "--n-head"),
    n_embd: Optional[int] = typer.Option(None, "--n-embd"),
    block_size: Optional[int] = typer.Option(None, "--block-size", help="Context length in characters."),
    dropout: Optional[float] = typer.Option(None, "--dropout"),
    bias: Optional[bool] = typer.Option(None, "--bias/--no-bias", help="Biases in Linear and LayerNorm layers."),
    tie_weights: Optional[bool] = typer.Option(
        None, "--tie-weights/--no-tie-weights", help="The output head shares the token embedding."
    ),
    init: Optional[str] = typer.Option(None, "--init", help="gpt2, zero (residual projections start at 0) or torch."),
    mlp: Optional[str] = typer.Option(None, "--mlp", help="MLP activation: gelu or relu2."),
    pos: Optional[str] = typer.Option(None, "--pos", help="Positions: learned or rope."),
    qk_norm: Optional[bool] = typer.Option(None, "--qk-norm/--no-qk-norm", help="RMS-normalise queries and keys."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Sequences per micro-step."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Micro-steps per optimizer step."),
    max_iters: Optional[int] = typer.Option(None, "--max-iters", help="Optimizer steps."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate."),
    min_lr: Optional[float] = typer.Option(None, "--min-lr", help="End of the cosine decay (default lr/10)."),
    warmup_iters: Optional[int] = typer.Option(None, "--warmup-iters"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW decay on 2-D weights."),
    optimizer: Optional[str] = typer.Option(
        None, "--optimizer", help="adamw, or muon (Muon for the blocks' matrices, AdamW for the rest)."
    ),
    muon_dtype: Optional[str] = typer.Option(
        None,
        "--muon-dtype",
        show_default="auto",
        help="Precision of Muon's Newton-Schulz iteration: auto (bf16 on CUDA and, "
        "from --n-embd 96, on CPUs with bf16 instructions; fp32 elsewhere), "
        "bfloat16 or float32.",
    ),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="After warmup: cosine, wsd or constant."),
    beta2: Optional[float] = typer.Option(None, "--beta2", help="AdamW's second-moment decay."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Max gradient norm; 0 turns it off."),
    eval_interval: Optional[int] = typer.Option(None, "--eval-interval", help="Evaluate and checkpoint every N steps."),
    eval_tokens: Optional[int] = typer.Option(
        None,
        "--eval-tokens",
        show_default="on a CPU, sized to ~10% of the run's time; else 1,000,000 (tiny 16,384)",
        help="Tokens of val (and of train) per evaluation; 0: all.",
    ),
    log_interval: Optional[int] = typer.Option(None, "--log-interval"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(
        None,
        "--dtype",
        show_default="auto",
        help="The model's precision: auto (bf16 autocast on CUDA, fp16 on GPUs "
        "without bf16, and from --n-embd 96 on CPUs with bf16 instructions; "
        "fp32 elsewhere), float32, bfloat16 or float16.",
    ),
    compile: Optional[bool] = typer.Option(
        None, "--compile/--no-compile", show_default="on for CUDA", help="torch.compile the model."
    ),
    cuda_graphs: Optional[bool] = typer.Option(
        None,
        "--cuda-graphs/--no-cuda-graphs",
        show_default="on",
        help="On CUDA (one process, bf16 or fp32): capture the whole training step as one CUDA graph and replay it.",
    ),
    backend: str = typer.Option(
        "auto", "--backend", help="Under torchrun: nccl, gloo, or auto (nccl on CUDA, gloo on CPUs)."
    ),
    dist_timeout: float = typer.Option(
        300, "--dist-timeout", metavar="SECONDS", help="Under torchrun: how long a rank waits to reach the others."
    ),
) -> None:
    flags = dict(locals())  # first, before any name is bound here: the flags as given
    if "WORLD_SIZE" in os.environ:  # under torchrun, before torch loads: c10d's C++ log repeats, with stack
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")  # frames, the errors minigpt explains
    from .config import FIELDS
    from .distributed import env_rank
    from .finetune import run_config
    from .progress import train_display
    from .trainer import log_line, summary, train as run_train

    try:
        cfg, init = run_config(
            preset, {k: v for k, v in flags.items() if k in FIELDS and k != "preset"}, init_from, resume, out
        )
        with train_display(
            cfg.max_iters,
            lambda row: log_line(row, cfg),
            enabled=None if env_rank() == 0 else False,
            tokens_per_step=cfg.tokens_per_step,
        ) as (say, on_row):
            result = run_train(
                cfg,
                data,
                out,
                resume,
                force,
                verify_data,
                say=say,
                on_row=on_row,
                backend=backend,
                dist_timeout=dist_timeout,
                init_from=init,
                tensorboard=tensorboard,
                wandb_project=wandb_project if wandb else None,
            )
    except UserError as e:
        raise _fail(e) from None
    if env_rank() == 0:
        print(summary(result, cfg))
    if result.stopped_by:
        raise typer.Exit(128 + getattr(signal, result.stopped_by))


def train_cli() -> None:
    _run(train_app)


eval_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="A run's loss on a dataset split or on text files: nats and bits per character, bits per UTF-8 byte.",
)


@eval_app.command()
def evaluate(
    run: Optional[Path] = typer.Option(None, "--run", show_default="the newest run under runs/", help="Run folder."),
    data: Optional[Path] = typer.Option(
        None,
        "--data",
        show_default="the run's own dataset",
        help="A dataset encoded with the run's vocabulary (minigpt-prepare --vocab RUN).",
    ),
    split: str = typer.Option(
        "val",
        "--split",
        help="val or train: the trainer's evaluation windows of that split; test: all of a test split "
        "(minigpt-prepare --test-split / --test-data-files / --test-fraction / --test-docs).",
    ),
    text: Optional[list[Path]] = typer.Option(
        None, "--text", metavar="FILE", help="Score UTF-8 text files instead (repeatable; each one document)."
    ),
    eval_tokens: Optional[int] = typer.Option(
        None,
        "--eval-tokens",
        metavar="N",
        show_default="the run's budget for a dataset, all of a text",
        help="Tokens to score (whole windows); 0: all.",
    ),
    batch_size: Optional[int] = typer.Option(
        None,
        "--batch-size",
        metavar="B",
        show_default="64 on a CPU, the run's on a GPU",
        help="Windows per forward pass.",
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    stride: Optional[int] = typer.Option(
        None,
        "--stride",
        metavar="S",
        show_default="the trainer's windows",
        help="Sliding windows S tokens apart: every character predicted with at least block_size - S before it.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of the two lines."),
) -> None:
    import json

    from .checkpoint import find_run
    from .evaluate import evaluate as run_eval

    try:
        path = find_run(run)
        score = run_eval(path, data, split, text, eval_tokens, batch_size, device, stride)
    except UserError as e:
        raise _fail(e) from None
    if json_out:
        print(json.dumps({"run": str(path), **score.to_json()}))
    else:
        print(score.lines(path))


def eval_cli() -> None:
    _run(eval_app)


runs_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Every run folder in one table: shape, steps, best val loss, tokens, time, state.",
)


@runs_app.command()
def runs(
    folders: Optional[list[Path]] = typer.Argument(
        None, metavar="[DIR ...]", show_default="every run under runs/", help="Run folders, or folders of runs."
    ),
    sort: str = typer.Option("best", "--sort", help="best (lowest val loss first), time (newest first) or name."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per run, one per line."),
) -> None:
    import json

    from .runs import COLUMNS, cells, read_run, run_folders, sort_rows

    try:
        rows = sort_rows([read_run(p) for p in run_folders(folders)], sort)
    except UserError as e:
        raise _fail(e) from None
    if json_out:
        for r in rows:
            print(json.dumps(r.to_json()))
    elif sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*COLUMNS)
        for r in rows:
            table.add_row(*cells(r))
        Console().print(table)
    else:  # plain columns in a pipe
        table = [list(COLUMNS)] + [cells(r) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def runs_cli() -> None:
    _run(runs_app)


plot_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Overlay the curves of several runs (PNG, SVG or PDF).",
)


@plot_app.command()
def plot(
    runs: list[Path] = typer.Argument(..., metavar="RUN ...", help="Run folders."),
    out: Optional[Path] = typer.Option(
        None, "--out", show_default="runs/plot-<metric>-by-<x>.png", help="The picture: .png, .svg or .pdf."
    ),
    x: str = typer.Option("step", "--x", help="step, tokens (tokens seen) or time (training seconds)."),
    metric: str = typer.Option(
        "val_loss", "--metric", help="val_loss (with the train loss), train_loss, val_bpc, lr or tokens_per_s."
    ),
) -> None:
    from .plot import plot as draw

    try:
        _, path = draw(runs, out, x, metric)
    except UserError as e:
        raise _fail(e) from None
    print(path)


def plot_cli() -> None:
    _run(plot_app)


sample_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Generate text from a run folder made by minigpt-train (weights, config and vocabulary are all it needs).",
)


@sample_app.command()
def sample(
    run: Optional[Path] = typer.Option(None, "--run", show_default="the newest run under runs/", help="Run folder."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Text to continue (default: a document start)."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="Read the prompt from a UTF-8 file."),
    num_samples: int = typer.Option(1, "--num-samples", help="How many samples, one after another."),
    max_new_tokens: int = typer.Option(500, "--max-new-tokens", help="Characters to generate per sample."),
    temperature: float = typer.Option(0.8, "--temperature", help="0 is greedy; higher is more random."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Sample only among the k most likely characters."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus: the smallest set reaching probability p."),
    seed: int = typer.Option(1337, "--seed", help="The same seed gives the same text."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    stop_at_eot: bool = typer.Option(False, "--stop-at-eot", help="End a sample at the end of a document."),
    allow_unk: bool = typer.Option(False, "--allow-unk", help="Map prompt characters outside the vocabulary to <unk>."),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="Compile the one-character step with torch.compile "
        "(CPU: tens of seconds the first time, a few once inductor has it on disk, then more characters "
        "per second; CUDA: inside the CUDA graph).",
    ),
) -> None:
    try:  # a console that is not UTF-8 gets "?" for what it cannot show, not a UnicodeEncodeError
        sys.stdout.reconfigure(errors="replace")
    except (AttributeError, ValueError):
        pass
    from .checkpoint import find_run
    from .engine import Engine, SamplingParams

    try:
        if prompt is not None and prompt_file is not None:
            raise UserError("--prompt and --prompt-file both give a prompt", "use one of them")
        if num_samples < 1 or max_new_tokens < 1:
            raise UserError(
                f"--num-samples and --max-new-tokens must be at least 1 (got {num_samples}, {max_new_tokens})"
            )
        params = SamplingParams(temperature, top_k, top_p)
        params.check()
        if prompt_file is not None:
            try:
                prompt = prompt_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(
                    f"cannot read --prompt-file {prompt_file}: {e}", "give a readable UTF-8 text file"
                ) from None
        engine = Engine.load(find_run(run), device, compile=compile)
        ids, unknown = engine.encode_prompt(prompt or "", allow_unk)
    except UserError as e:
        raise _fail(e) from None
    if compile and engine.device.type not in ("cpu", "cuda"):
        print(f"note: --compile applies on the CPU and CUDA; on {engine.device.type} it is left out", file=sys.stderr)
    if unknown:
        print(
            f"warning: {len(unknown)} prompt character(s) outside the vocabulary became <unk>: "
            + ", ".join(repr(c) for c in unknown[:20]),
            file=sys.stderr,
        )
    for i, pieces in enumerate(engine.samples(ids, num_samples, max_new_tokens, params, seed, stop_at_eot)):
        if num_samples > 1:
            print(f"{'-' * 20} sample {i + 1} of {num_samples} {'-' * 20}", flush=True)
        sys.stdout.write(prompt or "")
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()


def sample_cli() -> None:
    _run(sample_app)


serve_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Serve run folders over HTTP: a playground page at / and OpenAI's completions API under /v1, "
    "the requests that overlap in time decoded together.",
)


@serve_app.command()
def serve(
    runs: Optional[list[Path]] = typer.Argument(
        None, metavar="[RUN ...]", show_default="every run under runs/", help="Run folders, or folders of runs."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port, printed)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch: int = typer.Option(64, "--batch", help="Requests decoded together per model (its KV cache slots)."),
    queue: int = typer.Option(256, "--queue", help="Requests that may wait for a slot before 429 Too Many Requests."),
    max_tokens: int = typer.Option(4096, "--max-tokens", help="The most max_tokens a request may ask for."),
    threads: int = typer.Option(1, "--threads", help="Torch threads of each model's decoding process."),
) -> None:
    try:
        from .server import listen, served_runs
    except ImportError as e:
        raise _fail(
            UserError(
                f"minigpt-serve needs FastAPI and uvicorn ({e.name} is not installed)",
                "pip install 'minigpt[serve]'",
            )
        ) from None
    try:
        if min(batch, max_tokens, threads) < 1 or queue < 0:
            raise UserError(
                f"--batch, --max-tokens and --threads must be at least 1, --queue at least 0 "
                f"(got {batch}, {max_tokens}, {threads}, {queue})"
            )
        names = served_runs(runs)
        sock = listen(host, port)
    except UserError as e:
        raise _fail(e) from None
    from .server import run_server

    run_server(sock, runs, names, device=device, slots=batch, queue=queue, max_tokens=max_tokens, threads=threads)


def serve_cli() -> None:
    _run(serve_app)


export_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Write a run as a Hugging Face transformers folder (model, tokenizer, model card) that loads with no minigpt.",
)


@export_app.command()
def export(
    run: Optional[Path] = typer.Option(None, "--run", show_default="the newest run under runs/", help="Run folder."),
    out: Path = typer.Option(..., "--out", help="The folder to write (it must not exist, unless --force)."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    try:
        from .checkpoint import find_run
        from .export import REMOTE
        from .export import export as write

        try:
            import tokenizers  # noqa: F401
        except ImportError:
            raise UserError("minigpt-export needs the tokenizers library", "pip install 'minigpt[export]'") from None
        path = find_run(run)
        kind = write(path, out, force)
    except UserError as e:
        raise _fail(e) from None
    remote = ", trust_remote_code=True" if kind == REMOTE else ""
    print(f"wrote {out}: {kind}; load it with AutoModelForCausalLM.from_pretrained({str(out)!r}{remote})")


def export_cli() -> None:
    _run(export_app)

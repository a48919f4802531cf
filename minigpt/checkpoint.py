"""The run folder: everything a training run leaves behind, each file written atomically.

  config.json        model config, training arguments, the dataset (folder, manifest sha256), versions
  vocab.json         a copy of the dataset's vocabulary, so the folder alone is enough to sample
  model.safetensors  the weights minigpt-sample loads (no pickle)
  train_state.pt     what --resume needs: weights, optimizer, grad scaler, step, RNG states; plain
                     tensors and containers, loaded with torch.load(weights_only=True)
  metrics.jsonl      one JSON line per log or evaluation

train_state.pt carries its own copy of the weights so that one file (one rename) is a consistent
checkpoint: a crash between writing two files can never pair new weights with an old optimizer.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import save_model

from . import __version__
from .errors import UserError
from .files import sha256_file, write_atomic, write_json_atomic
from .model import GPT, GPTConfig
from .data.vocab import VOCAB_FILE, Vocab

RUNS_DIR = Path("runs")
CONFIG, WEIGHTS, STATE, METRICS = "config.json", "model.safetensors", "train_state.pt", "metrics.jsonl"
VOCAB = VOCAB_FILE  # the dataset's vocab.json, copied
# the only fields that differ between identical runs (clock_from: the step where elapsed_s's clock started)
TIMING_FIELDS = ("tokens_per_s", "mfu", "elapsed_s", "clock_from")


def read_config(folder: Path) -> dict:
    """A run folder's config.json, the one reader of it (OSError or ValueError where it cannot be read)."""
    return json.loads((Path(folder) / CONFIG).read_text(encoding="utf-8"))


def find_run(path: Path | None) -> Path:
    """The run folder to read: the one given, or the newest under runs/ that holds weights."""
    if path is not None:
        return Path(path)
    found = sorted(
        (p for p in RUNS_DIR.glob("*") if (p / WEIGHTS).is_file()), key=lambda p: (p / WEIGHTS).stat().st_mtime
    )
    if not found:
        raise UserError(
            f"no trained run under {RUNS_DIR.resolve()}",
            "train one first with `minigpt-train` (e.g. minigpt-train --preset tiny), or pass --run DIR",
        )
    return found[-1]


def versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "minigpt": __version__}


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file(STATE).is_file()

    def start(self, config: dict, vocab_src: Path) -> None:
        """A fresh run: config and vocabulary written, old metrics and checkpoints gone."""
        with disk_faults(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            for name in (STATE, WEIGHTS, METRICS):
                self.file(name).unlink(missing_ok=True)
            write_json_atomic(self.file(CONFIG), config)
            write_atomic(self.file(VOCAB), Path(vocab_src).read_bytes())

    def clean_temporary(self) -> None:
        """Remove what a killed process left mid-write (`.NAME.tmp-*`); called with the folder's lock held."""
        for tmp in self.path.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)

    def read_config(self) -> dict:
        return read_config(self.path)

    def write_config(self, config: dict) -> None:
        with disk_faults(self.path):
            write_json_atomic(self.file(CONFIG), config)

    def save(self, model: torch.nn.Module, state: dict) -> None:
        """The checkpoint (one atomic file), then the weights for sampling (another). Where the disk is
        full, a UserError that says how much is needed; the last good checkpoint is left as it was."""
        state = {**state, "model": model.state_dict()}
        with disk_faults(self.path, needed=2 * _tensor_bytes(state)):
            write_atomic(self.file(STATE), lambda tmp: _torch_save(state, tmp))
        self.save_weights(model)

    def save_weights(self, model: torch.nn.Module) -> None:
        """model.safetensors (also rewritten on --resume: a kill between the two files of a checkpoint
        leaves the weights one checkpoint behind)."""

        def weights(tmp: Path) -> None:
            save_model(model, str(tmp))  # ties handled: the shared embedding/head matrix is stored once
            os.chmod(tmp, 0o644)  # safetensors creates it owner-only; the weights are meant to be shared

        with disk_faults(self.path, needed=_tensor_bytes(model.state_dict())):
            write_atomic(self.file(WEIGHTS), weights)

    def load_state(self, device: torch.device) -> dict:
        return torch.load(self.file(STATE), map_location=device, weights_only=True)

    def saved_progress(self) -> tuple[int, int] | None:
        """(step, max_iters) of the checkpoint, read memory-mapped (the tensors are never loaded); None
        where there is none or it cannot be read."""
        try:
            state = torch.load(self.file(STATE), map_location="cpu", weights_only=True, mmap=True)
            return int(state["step"]), int(state["train"]["max_iters"])
        except Exception:  # noqa: BLE001 - a missing or damaged checkpoint is an answer here, not an error
            return None

    def append_metrics(self, row: dict) -> None:
        """One whole line, flushed: a crash can tear at most the last line, which metrics() then drops."""
        with disk_faults(self.path), open(self.file(METRICS), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def metrics(self) -> tuple[list[dict], bool]:
        """The rows, and whether a torn last line (a crash during an append) was left out."""
        path = self.file(METRICS)
        if not path.is_file():
            return [], False
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        rows, torn = [], False
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                if i < len(lines) - 1 and any(rest.strip() for rest in lines[i + 1 :]):
                    raise UserError(
                        f"{path}: line {i + 1} is not JSON, and more lines follow it",
                        "the file was edited or damaged; restore it, or start over with --force",
                    ) from None
                torn = True
        return rows, torn

    def truncate_metrics(self, step: int) -> bool:
        """On resume: drop lines logged after the checkpoint, which the resumed run logs again, and a torn
        last line; True when there was one."""
        rows, torn = self.metrics()
        with disk_faults(self.path):
            write_atomic(
                self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step).encode("utf-8")
            )
        return torn


def _torch_save(obj, path: Path) -> None:
    """torch.save through a Python file: where a write fails (a full disk), its OSError is the context of
    the RuntimeError torch raises; given a path, torch's own writer loses it ("unexpected pos")."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def _tensor_bytes(obj) -> int:
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


FULL, DENIED = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG), (errno.EACCES, errno.EPERM, errno.EROFS)


def write_errno(e: BaseException) -> int | None:
    """The errno behind a failed write: an OSError's own; torch.save's RuntimeError carries the file's
    OSError as its context (_torch_save); safetensors ends its message with "(os error N)"."""
    if isinstance(e, OSError):
        return e.errno
    if isinstance(e.__context__, OSError):
        return e.__context__.errno
    found = re.search(r"\(os error (\d+)\)", str(e))
    return int(found.group(1)) if found else None


@contextmanager
def disk_faults(folder: Path, needed: int | None = None):
    """A full disk or an unwritable folder while writing a run folder, as one message (exit 2)."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError, RuntimeError) as e:
        code = write_errno(e)
        if code not in FULL + DENIED:
            raise
        if code == errno.EFBIG:
            what = "a file would be larger than this system allows (File too large)"
        else:
            what = "the disk is full" if code in FULL else f"it cannot be written ({os.strerror(code)})"
        size = f"; a checkpoint needs about {needed / 1e6:,.1f} MB free" if needed and code in FULL else ""
        raise UserError(
            f"cannot write the run folder {folder}: {what}{size}",
            "free space (or fix the permissions) there, then continue with --resume: the last good checkpoint is kept",
        ) from None


@dataclass
class SavedRun:
    """A finished (or checkpointed) run folder as minigpt-sample, minigpt-eval and --init-from read it."""

    path: Path
    config: dict  # config.json
    model: GPTConfig
    vocab: Vocab
    vocab_sha256: str  # of vocab.json: the dataset's it was trained on, byte for byte

    @property
    def train(self) -> dict:
        return self.config.get("train", {})


def open_run(path: Path | str, flag: str = "--run") -> SavedRun:
    """A run folder's config.json and vocab.json, checked against each other; a UserError that says what
    is wrong otherwise (missing, damaged, values outside the allowed choices)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{flag} {path}: no such folder", "pass a run folder written by minigpt-train")
    missing = [name for name in (CONFIG, VOCAB, WEIGHTS) if not (path / name).is_file()]
    if missing:
        raise UserError(
            f"{path} is missing {', '.join(missing)}",
            "a run folder needs config.json, vocab.json and model.safetensors; was training finished?",
        )
    try:
        config = read_config(path)
        missing = sorted({f.name for f in fields(GPTConfig)} - set(config["model"]))
        if missing:  # a default would silently build another model than the one the weights belong to
            raise KeyError(f"model keys missing: {', '.join(missing)}")
        model = GPTConfig(**config["model"])
        model.check()
        vocab = Vocab.load(path / VOCAB)
        vocab.check()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(
            f"{path}: cannot read config.json or vocab.json ({type(e).__name__}: {e})",
            "the run folder is damaged; train again or restore it",
        ) from None
    if model.vocab_size != len(vocab):
        raise UserError(
            f"{path}: the model has {model.vocab_size} tokens but vocab.json has {len(vocab)}",
            "vocab.json does not belong to these weights; copy the dataset's vocab.json back",
        )
    return SavedRun(path, config, model, vocab, sha256_file(path / VOCAB))


def load_model(run: SavedRun, device: torch.device) -> GPT:
    """The run's model with its weights, on the device (the sampler's and minigpt-eval's)."""
    model = GPT(run.model)
    load_weights(model, run, device)
    return model.to(device)


def load_weights(model: GPT, run: SavedRun, device: torch.device | str = "cpu") -> None:
    """model.safetensors into the model, or a UserError when the file is damaged or of another shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, str(run.path / WEIGHTS), device=str(device))
    except SafetensorError as e:
        raise UserError(
            f"{run.path / WEIGHTS} is not a readable safetensors file ({e})",
            "the file is damaged or incomplete; take it from the run's checkpoint again",
        ) from None
    except RuntimeError as e:  # load_state_dict's: a header line, then one line per difference
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = lines[1][:200] if len(lines) > 1 else str(e)
        raise UserError(
            f"{run.path / WEIGHTS} does not match config.json: {first}",
            "the weights and config.json come from different runs",
        ) from None

"""The rules of --resume and of a fresh start on a run folder: what a checkpoint must match, what a resume
may change, and what a run folder that already holds a run allows."""

from __future__ import annotations

import torch

from .checkpoint import STATE, RunFolder
from .config import TrainConfig
from .errors import UserError

# What --resume may change: how long, how often to evaluate and log, where and how fast it computes.
# Everything else would make the resumed run another run (BENCHMARKS' exact-resume tests hold it fixed).
RESUME_MAY_CHANGE = (
    "max_iters",
    "eval_interval",
    "log_interval",
    "eval_tokens",
    "eval_tokens_from",
    "device",
    "compile",
    "cuda_graphs",
    "muon_dtype",
    "lr_from",
)


def check_fresh(run: RunFolder, force: bool) -> None:
    """A fresh run may start in an empty folder, or over another with --force; else one message says why not."""
    if not run.exists() or force:
        return
    state_step, max_iters = run.saved_progress() or (None, 0)
    if state_step is None:
        raise UserError(
            f"{run.path} holds a checkpoint that cannot be read ({run.file(STATE).name} is damaged)",
            "add --force to start over there, or choose another --out",
        )
    if state_step >= max_iters:
        raise UserError(
            f"{run.path} already holds a finished run ({state_step:,} steps)",
            "choose another --out, or add --force to train over it",
        )
    raise UserError(
        f"{run.path} holds an unfinished run (checkpoint at step {state_step})",
        "add --resume to continue it, --force to start over, or choose another --out",
    )


def checked_state(run: RunFolder, config: dict) -> dict:
    """The checkpoint --resume continues from, once it is known to be this run's (dataset, shape, settings)."""
    if not run.exists():
        raise UserError(
            f"--resume: {run.path} has no checkpoint ({run.file(STATE).name})",
            "drop --resume to start a new run there, or point --out at the run to continue",
        )
    try:
        state = run.load_state(torch.device("cpu"))
    except Exception as e:
        raise UserError(
            f"--resume: cannot read {run.file(STATE)}: {e}", "the checkpoint is damaged; start over with --force"
        ) from None
    if state["dataset"]["manifest_sha256"] != config["dataset"]["manifest_sha256"]:
        raise UserError(
            f"--resume: {run.path} was trained on another dataset ({state['dataset']['folder']})",
            "resume with the same --data, or start a new run with another --out",
        )
    if state["model_config"] != config["model"]:
        diff = {
            k: (state["model_config"].get(k), v)
            for k, v in config["model"].items()
            if state["model_config"].get(k) != v
        }
        raise UserError(
            "--resume: the model shape differs from the checkpoint's: "
            + ", ".join(f"{k} was {a}, now {b}" for k, (a, b) in diff.items()),
            "resume with the run's own flags (see its config.json), or start a new run with another --out",
        )
    saved = with_defaults(state["train"])
    refused = {
        k: (saved[k], v)
        for k, v in config["train"].items()
        if k != "preset" and k not in RESUME_MAY_CHANGE and saved[k] != v
    }
    if refused:
        raise UserError(
            "--resume: these settings differ from the run's, and would make it another run: "
            + "; ".join(f"--{k.replace('_', '-')} was {a}, now {b}" for k, (a, b) in refused.items()),
            "resume with the run's own flags (its config.json); to train with these, start a new run "
            f"(another --out), from its weights if you like: --init-from {run.path}. "
            f"On resume only {', '.join('--' + k.replace('_', '-') for k in RESUME_MAY_CHANGE)} may change",
        )
    before = saved_device_type(run)
    if before is not None and before != config["runtime"]["device"].split(":")[0]:
        raise UserError(
            f"--resume: the run trained on {before}, and this would continue it on {config['runtime']['device']}",
            f"resume it on {before} (--device {before})",
        )
    return state


def with_defaults(train: dict) -> dict:
    """A checkpoint's training settings, each field newer than the checkpoint at its default."""
    return {**TrainConfig().to_json(), **train}


def saved_train(run: RunFolder) -> dict | None:
    """config.json's training settings, or None where it cannot be read (--resume's own checks say why)."""
    try:
        return run.read_config()["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def saved_device_type(run: RunFolder) -> str | None:
    try:
        return run.read_config()["runtime"]["device"].split(":")[0]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None

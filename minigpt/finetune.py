"""--init-from RUN: a new run that starts from another run's weights, on a dataset encoded with its
vocabulary (minigpt-prepare --vocab RUN), with a fresh optimizer and schedule.

The model's shape comes from the source run's config.json, so the flags that set a shape are refused;
the training flags (lr, steps, dropout, batch, schedule, ...) apply as given. config.json records
where the weights came from: the source run's folder, the sha256 of its model.safetensors, and the step
its checkpoint had reached. A fine-tuning run resumes like any run (its shape is then read from its
own config.json).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .checkpoint import WEIGHTS, RunFolder, SavedRun, load_weights, open_run, read_config
from .config import MODEL_FIELDS, TrainConfig, make_config
from .errors import UserError
from .files import sha256_file
from .model import GPT

SHAPE_FIELDS = tuple(f for f in MODEL_FIELDS if f != "dropout")  # dropout is a training choice


@dataclass
class InitFrom:
    run: SavedRun
    weights_sha256: str
    step: int | None  # the source run's checkpoint step

    def to_json(self) -> dict:
        return {"run": str(self.run.path.resolve()), "weights_sha256": self.weights_sha256, "step": self.step}


def open_source(path: Path, given: dict, resume: bool) -> InitFrom:
    """The run to start from, after the flags are checked: no --resume, no shape flags."""
    if resume:
        raise UserError(
            "--init-from starts a new run, and --resume continues one",
            "drop --init-from to resume a fine-tuning run (its weights are in its checkpoint)",
        )
    shape = [f"--{k.replace('_', '-')}" for k in SHAPE_FIELDS if given.get(k) is not None]
    if shape:
        raise UserError(
            f"--init-from takes the model's shape from {path}: leave out {', '.join(shape)}",
            "training flags (--lr, --max-iters, --dropout, --batch-size, ...) still apply",
        )
    run = open_run(path, "--init-from")
    progress = RunFolder(run.path).saved_progress()  # a folder copied for sampling may have no checkpoint
    return InitFrom(run, sha256_file(run.path / WEIGHTS), progress[0] if progress else None)


def with_model_of(cfg: TrainConfig, model: dict) -> TrainConfig:
    """cfg with the shape of a saved model (config.json's "model"), its dropout left as cfg's."""
    cfg = replace(cfg, **{k: model[k] for k in SHAPE_FIELDS if k in model})
    cfg.check()
    return cfg


def resumed_shape(cfg: TrainConfig, out: Path | None) -> TrainConfig:
    """On --resume of a fine-tuning run, its shape from its own config.json (not the preset's)."""
    try:
        saved = read_config(out) if out is not None else {}
    except (OSError, ValueError):
        return cfg  # the trainer's own --resume checks say what is wrong
    return with_model_of(cfg, saved["model"]) if saved.get("init_from") and "model" in saved else cfg


def run_config(
    preset: str, overrides: dict, init_from: Path | None, resume: bool, out: Path | None
) -> tuple[TrainConfig, InitFrom | None]:
    """minigpt-train's flags made a run's configuration: the preset and the flags given (config.make_config),
    with the shape of the run to start from (--init-from), or on --resume of a fine-tuning run its own."""
    cfg, init = make_config(preset, **overrides), None
    if init_from is not None:
        init = open_source(init_from, overrides, resume)
        cfg = with_model_of(cfg, init.run.config["model"])
    elif resume:
        cfg = resumed_shape(cfg, out)
    return cfg, init


def start(model: GPT, init: InitFrom, dataset_vocab_sha256: str, device: torch.device) -> None:
    """The source run's weights into the new model, once its dataset is known to share the vocabulary."""
    if dataset_vocab_sha256 != init.run.vocab_sha256:
        raise UserError(
            f"the dataset was encoded with another vocabulary than {init.run.path}'s (vocab.json sha256 "
            f"{dataset_vocab_sha256[:12]}... against {init.run.vocab_sha256[:12]}...)",
            f"prepare the text with the run's vocabulary: minigpt-prepare ... --vocab {init.run.path}",
        )
    load_weights(model, init.run, device)

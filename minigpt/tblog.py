"""minigpt-train --tensorboard: every metrics row also as TensorBoard scalars in the run folder's tb/
(rank 0 only). TensorBoard is an optional extra; without it, one clear message before training starts.

On --resume the writer is opened with purge_step = the checkpoint's step + 1: TensorBoard's readers
then drop what the interrupted session logged after the checkpoint, which the resumed run logs again,
so the curves hold each step once, as metrics.jsonl does."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

TB_DIR = "tb"


def summary_writer():
    """torch's SummaryWriter class, or the message that says how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package, an optional extra of minigpt",
            "pip install 'minigpt[tensorboard]' (or pip install tensorboard), or leave --tensorboard out",
        ) from None
    return SummaryWriter


def open_writer(run: Path, resumed_at: int | None):
    return summary_writer()(log_dir=str(Path(run) / TB_DIR), purge_step=None if resumed_at is None else resumed_at + 1)


def scalars(row: dict) -> dict:
    """A metrics row's numbers to chart: every number but the step (the axis) and clock_from (bookkeeping)."""
    return {
        k: v
        for k, v in row.items()
        if k not in ("step", "clock_from") and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def write_row(writer, row: dict) -> None:
    """A metrics row's numbers as scalars at its step."""
    for key, value in scalars(row).items():
        writer.add_scalar(key, value, row["step"])

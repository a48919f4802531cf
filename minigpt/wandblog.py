"""minigpt-train --wandb: every metrics row also logged to Weights & Biases (rank 0 only), the run's
config with it. wandb is an optional extra; without it, one clear message before training starts.

The wandb run's id is kept in the run folder (wandb.json), so --resume continues the same wandb run
(resume="allow"); a fresh start over an old run (--force) gets a new id. Steps that the interrupted session logged after its checkpoint are logged again with
the same values (resume is exact); wandb keeps one value per step. WANDB_MODE=offline writes the run
under the run folder's wandb/ for `wandb sync` later, with no network.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from .errors import UserError
from .files import write_json_atomic
from .tblog import scalars

ID_FILE = "wandb.json"


def wandb_module():
    """The wandb package, or the message that says how to install it."""
    try:
        import wandb
    except ImportError:
        raise UserError(
            "--wandb needs the wandb package, an optional extra of minigpt",
            "pip install 'minigpt[wandb]' (or pip install wandb), or leave --wandb out",
        ) from None
    return wandb


def open_run(folder: Path, project: str, config: dict, resume: bool):
    """The wandb run of this run folder: on --resume the same one again; else a new one (a fresh start
    over an old run, --force, is another run)."""
    wandb = wandb_module()
    path = Path(folder) / ID_FILE
    if resume and path.is_file():
        run_id = json.loads(path.read_text(encoding="utf-8"))["id"]
    else:
        run_id = secrets.token_hex(4)  # wandb's id alphabet: letters, digits, - and _
        write_json_atomic(path, {"id": run_id, "project": project})
    return wandb.init(
        project=project, name=Path(folder).name, id=run_id, resume="allow", dir=str(folder), config=config
    )


def log_row(run, row: dict) -> None:
    """A metrics row's numbers at its step."""
    run.log(scalars(row), step=row["step"])

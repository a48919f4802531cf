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

import json
import os
import platform
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_model

from . import __version__
from .files import write_bytes_atomic, write_json_atomic

RUNS_DIR = Path("runs")
CONFIG, VOCAB, WEIGHTS, STATE, METRICS = "config.json", "vocab.json", "model.safetensors", "train_state.pt", "metrics.jsonl"
TIMING_FIELDS = ("tokens_per_s", "mfu", "elapsed_s")  # the only fields that differ between identical runs


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
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (STATE, WEIGHTS, METRICS):
            self.file(name).unlink(missing_ok=True)
        write_json_atomic(self.file(CONFIG), config)
        tmp = self.file(f".{VOCAB}.tmp")
        shutil.copyfile(vocab_src, tmp)
        os.replace(tmp, self.file(VOCAB))

    def read_config(self) -> dict:
        return json.loads(self.file(CONFIG).read_text(encoding="utf-8"))

    def save(self, model: torch.nn.Module, state: dict) -> None:
        """The checkpoint (one atomic file), then the weights for sampling (another)."""
        tmp = self.file(f".{STATE}.tmp-{os.getpid()}")
        torch.save({**state, "model": model.state_dict()}, tmp)
        os.replace(tmp, self.file(STATE))
        tmp = self.file(f".{WEIGHTS}.tmp-{os.getpid()}")
        save_model(model, str(tmp))  # ties handled: the shared embedding/head matrix is stored once
        os.chmod(tmp, 0o644)  # safetensors creates it owner-only; the weights are meant to be shared
        os.replace(tmp, self.file(WEIGHTS))

    def load_state(self, device: torch.device) -> dict:
        return torch.load(self.file(STATE), map_location=device, weights_only=True)

    def append_metrics(self, row: dict) -> None:
        with open(self.file(METRICS), "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """On resume: drop lines logged after the checkpoint, which the resumed run logs again."""
        rows = [r for r in self.metrics() if r["step"] <= step]
        write_bytes_atomic(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))

"""bench/text8.sh, the text8 recipe, run as written on a small folder laid out like the hub's
afmck/text8 (parquet, train / validation / test, one row each of lowercase letters and spaces):
the real `datasets` path, the training, the test split kept apart, sliding-window figures."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conftest import ROOT


def text8_like(folder: Path, sizes: dict[str, int]) -> Path:
    rng = random.Random(0)
    words = ["anarchism", "originated", "as", "a", "term", "of", "abuse", "first", "used", "against", "the", "early"]
    for split, n in sizes.items():
        text = ""
        while len(text) < n:
            text += rng.choice(words) + " "
        (folder / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": [text[:n]]}), folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def test_the_text8_recipe_runs_as_written(tmp_path):
    hub = text8_like(tmp_path / "afmck-text8", {"train": 40_000, "validation": 4_000, "test": 4_000})
    env = {**os.environ, "DATASET": str(hub), "PRESET": "tiny", "BLOCK": "32", "ITERS": "30", "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this environment's console scripts
    r = subprocess.run(
        ["bash", str(ROOT / "bench" / "text8.sh")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    val = json.loads((tmp_path / "runs" / "text8" / "eval-val.json").read_text())
    test = json.loads((tmp_path / "runs" / "text8" / "eval-test.json").read_text())
    assert val["stride"] == test["stride"] == 16 and test["source"].endswith("text8 (test)")
    assert val["tokens"] > 3_900 and test["tokens"] > 3_900  # all of each split, but the tail past the last window
    manifest = json.loads((tmp_path / "data" / "text8" / "manifest.json").read_text())
    assert manifest["splits"]["test"]["chars"] == 4_000 and manifest["test_from"] == "test_split"
    assert manifest["vocab_size"] == 2 + len(
        set("".join("anarchism originated as a term of abuse first used against the early"))
    )
    assert f"text8 test: {test['bits_per_char']:.4f} bits/char" in r.stdout

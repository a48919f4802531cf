"""C4 (`allenai/c4`, config `en`), the default source: its id, and the layout of a local folder that
`datasets` reads like the hub repo (tests/c4mirror.py and bench/c4_corpus.py write such folders)."""

from __future__ import annotations

DEFAULT_DATASET = "allenai/c4"
DEFAULT_CONFIG = "en"

# The dataset card front matter that makes a local folder read like the hub repo allenai/c4, config en:
# `datasets` takes the splits from `configs:`, and the column types from `dataset_info` (without it,
# pyarrow would read timestamps as datetimes where the hub gives strings).
_FEATURES_YAML = """dataset_info:
- config_name: en
  features:
  - name: text
    dtype: string
  - name: timestamp
    dtype: string
  - name: url
    dtype: string
"""
_CONFIGS_YAML = """configs:
- config_name: en
  data_files:
  - split: train
    path: en/c4-train.*.json.gz
  - split: validation
    path: en/c4-validation.*.json.gz
"""


def mirror_readme(title: str, features: bool = True) -> str:
    """README.md for a folder laid out like the hub repo (`en/c4-train.*.json.gz`, `en/c4-validation.*`)."""
    return f"---\n{_FEATURES_YAML if features else ''}{_CONFIGS_YAML}---\n\n# {title}\n"


HUB_HINT = (
    "work offline with local files: --data-files FILES (text, JSON lines or Parquet; --val-data-files too), "
    "or --dataset DIR for a local folder laid out like the hub repo, or set HF_ENDPOINT to a reachable hub mirror"
)

#!/usr/bin/env bash
# text8 with minigpt: prepare, train, and score the validation and test splits with sliding windows,
# the way char-level results are published (90M / 5M / 5M characters, 27 symbols).
#
#   bash bench/text8.sh                       # afmck/text8 from the hub (needs the network once)
#   DATASET=path/to/folder bash bench/text8.sh  # a local folder laid out like the hub repo
#
# Every setting can be changed from the environment; the defaults are the run this recipe means:
# the seed preset's shape (8 layers x 384, 8 heads) with a 256-character window, 5,000 steps.
set -euo pipefail
DATASET=${DATASET:-afmck/text8}
OUT=${OUT:-text8}                 # data/$OUT, runs/$OUT
PRESET=${PRESET:-seed}
BLOCK=${BLOCK:-256}
ITERS=${ITERS:-5000}
STRIDE=${STRIDE:-$((BLOCK / 2))}  # every character scored with at least BLOCK / 2 before it
EXTRA=${EXTRA:-}                  # more minigpt-train flags, e.g. "--batch-size 32 --device cuda"

# 1. the three splits, frozen once (each is one row of text); test is kept apart, never used to choose settings
minigpt-prepare --dataset "$DATASET" --split train --val-split validation --test-split test \
    --docs all --val-docs all --test-docs all --out "data/$OUT" --force
# 2. the model
minigpt-train --data "data/$OUT" --preset "$PRESET" --block-size "$BLOCK" --max-iters "$ITERS" \
    --out "runs/$OUT" --force $EXTRA
# 3. bits per character, sliding windows over all of each held-out split
minigpt-eval --run "runs/$OUT" --stride "$STRIDE" --eval-tokens 0 --json > "runs/$OUT/eval-val.json"
minigpt-eval --run "runs/$OUT" --split test --stride "$STRIDE" --json > "runs/$OUT/eval-test.json"
python - "runs/$OUT" <<'PY'
import json, sys
for split in ("val", "test"):
    s = json.load(open(f"{sys.argv[1]}/eval-{split}.json"))
    print(f"text8 {split}: {s['bits_per_char']:.4f} bits/char over {s['tokens']:,} characters (stride {s['stride']})")
PY

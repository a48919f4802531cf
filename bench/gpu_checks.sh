#!/usr/bin/env bash
# The GPU checks and benchmarks in one go, for a lent GPU machine (figures go into BENCHMARKS.md).
#
#   bash bench/gpu_checks.sh [STEP ...]     # steps: env tests muon trainbench nsprecision seedrun quality ddp samplebench lrsweep memory servebench
#   bash bench/gpu_checks.sh env trainbench seedrun bg:tests bg:quality bg:ddp
#
# A step written bg:NAME runs in the background, beside the next ones, with a log of its own that is
# appended to the main log when all have ended: for checks whose time is not a figure (tests, losses).
# Needs a prepared dataset in $DATA (default data/c4-bench-3000: `python prepare.py --dataset
# bench/.corpus/c4-800mb --docs 3000 --out data/c4-bench-3000`) and torch with CUDA; `datasets` is
# not needed there. Each step has its own time limit, logs to $OUT/log.txt and leaves JSON in $OUT.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-bench/results/gpu}
DATA=${DATA:-data/c4-bench-3000}
RUNS=${RUNS:-/tmp/minigpt-runs}
PY=${PY:-python3}
mkdir -p "$OUT" "$RUNS"
LOG="$OUT/log.txt"

step() {  # step NAME LIMIT_S COMMAND...: run it with a limit, log everything, print a short tail
  local name=$1 limit=$2
  shift 2
  echo "=== $name ($(date -u +%H:%M:%S)): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$LOG"
  return $rc
}

env_info() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import sys, torch, numpy, safetensors; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, 'safetensors', safetensors.__version__); print(torch.cuda.get_device_name())"
  nproc
  date -u
}

seed_run() {  # the seed preset's 5,000 iterations through the CLI, as a user runs it
  rm -rf "$RUNS/seed"
  local t0
  t0=$($PY -c 'import time; print(time.time())')
  $PY train.py --data "$DATA" --out "$RUNS/seed" ${SEED_ARGS:-} || return
  $PY -c "import time; print(f'wall time of the whole command: {time.time() - $t0:.1f} s')"
  cp "$RUNS/seed/metrics.jsonl" "$OUT/seed_metrics.jsonl"
  $PY sample.py --run "$RUNS/seed" --max-new-tokens 400 --seed 1 --prompt "The "
}

sample_bench() {  # block 64 on the seed run's weights where seedrun made them (else fresh ones), and block 256
  local weights=()
  [ -f "$RUNS/seed/model.safetensors" ] && weights=(--run "$RUNS/seed")
  $PY bench/sample_bench.py --device cuda "${weights[@]}" --json "$OUT/sample_bench_64.json" &&
    $PY bench/sample_bench.py --device cuda --block-size 256 --json "$OUT/sample_bench_256.json"
}

ns_precision() {  # Muon's iteration on CUDA: the rule keeps bf16 (start-up line); the seed preset's step in bf16 and fp32
  rm -rf "$RUNS/nsline"
  $PY train.py --preset seed --max-iters 20 --eval-interval 20 --data "$DATA" --out "$RUNS/nsline" | grep "Newton-Schulz"
  for dt in auto float32; do
    $PY bench/train_bench.py --data "$DATA" --preset seed --steps 200 --warmup 20 --variants compile+graph \
      --muon-dtype $dt --json "$OUT/train_bench_ns_$dt.json" || return
  done
}

ddp_run() {  # the one-GPU path through torchrun (no CUDA graphs under DDP), and its metrics
  rm -rf "$RUNS/ddp1"
  $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m minigpt.train --preset seed --max-iters 300 \
    --eval-interval 300 --data "$DATA" --out "$RUNS/ddp1" || return
  tail -n 3 "$RUNS/ddp1/metrics.jsonl"
}

export OUT DATA RUNS PY
export -f env_info seed_run sample_bench ddp_run ns_precision
BG=$(mktemp -d)
for s in ${@:-env tests trainbench seedrun samplebench}; do
  name=${s#bg:}
  run=step
  if [ "$name" != "$s" ]; then  # in the background, logging apart
    run="bg_step"
  fi
  case $name in
    env) cmd=(60 bash -c env_info) ;;
    tests) cmd=(420 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py) ;;
    muon) cmd=(60 $PY bench/muon_bench.py --device cuda --json "$OUT/muon_bench.json") ;;
    trainbench) cmd=(240 $PY bench/train_bench.py --data "$DATA" --preset seed --steps 200 --warmup 20 \
                  --variants "${TRAIN_VARIANTS:-compile+graph,compile,graph}" --json "$OUT/train_bench.json") ;;
    nsprecision) cmd=(300 bash -c ns_precision) ;;
    seedrun) cmd=(300 bash -c seed_run) ;;
    quality) cmd=(240 $PY bench/quality_bench.py --data "$DATA" --shape seed --device cuda --variants old \
               --lrs 3e-4 --jobs 1 --compile --json "$OUT/quality_seed_old.json") ;;
    ddp) cmd=(200 bash -c ddp_run) ;;
    lrsweep) cmd=(600 $PY bench/lr_sweep.py --data "$DATA" --name seed --preset seed --steps 5000 --device cuda \
               --parallel 1 --lo 1e-3 --hi 1e-2 --json "$OUT/lr_seed.json") ;;
    samplebench) cmd=(360 bash -c sample_bench) ;;
    memory) cmd=(300 $PY bench/memory_bench.py --device cuda --data "$DATA" --json "$OUT/memory.json") ;;
    servebench) cmd=(300 $PY bench/serve_bench.py --data "$DATA" --device cuda --repeat 3 --json "$OUT/serve.json") ;;
    *) echo "unknown step $s"; continue ;;
  esac
  if [ $run = bg_step ]; then
    (LOG="$BG/$name.log" step "$name" "${cmd[@]}" >/dev/null) &
    echo "=== $name: started in the background ($(date -u +%H:%M:%S))" | tee -a "$LOG"
  else
    step "$name" "${cmd[@]}"
  fi
done
wait
for f in "$BG"/*.log; do
  [ -e "$f" ] && cat "$f" >>"$LOG"
done
grep -h "^===" "$BG"/*.log 2>/dev/null
grep -h "^===\|Newton-Schulz\|ms/step\|passed\|failed\|tok/s\|MFU\|speed-up\|finished\|best val\|wall time\|tokens in\|\[1/1\]\|^old\|error" "$LOG" | grep -v "^step " | tail -60

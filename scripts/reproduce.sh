#!/usr/bin/env bash
# The runs behind results/: the whole pipeline (train_rm.py, merge.py, rlhf.py) at one preset for each
# seed, with clean labels and with 25% of the training labels flipped, then scripts/aggregate.py.
#
#   bash scripts/reproduce.sh                   # cpu preset, seeds 0 1 2, runs in runs/repro/
#   SEEDS="0 1" PRESET=tiny ROOT=/tmp/r OUT=/tmp/r/results JOBS=1 REWARDS= bash scripts/reproduce.sh
#
# REWARDS are rlhf.py's PPO reward sources: by default the preset's three (best RM, ENS M=6, WARM M=6, with
# the cpu preset's 6 reward models), WARM M=2 (does a larger M hold up longer?) and the oracle (the upper
# bound); empty: the preset's default. ARGS are more flags for every script (e.g. ARGS="--rm.fluency_edits true").
#
# JOBS runs go at once, each on its own thread(s): on 2 cores, two one-thread runs do 1.4x the work of
# one two-thread run (the models are too small to keep two threads busy). Every run is resumable, so
# rerunning this script finishes what a killed one left. A corrupted run shares every stage before the
# preference labels with the clean run of its seed, so it copies them instead of training them again.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-"0 1 2"}
PRESET=${PRESET:-cpu}
ROOT=${ROOT:-runs/repro}
JOBS=${JOBS:-2}
OUT=${OUT:-results}
REWARDS=${REWARDS-rm:best,ens:6,warm:6,warm:2,oracle}
ARGS=${ARGS:-}
PYTHON=${PYTHON:-python3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
mkdir -p "$ROOT/logs"

pipeline() {  # run_dir, then extra flags for every script; stops at the first stage that fails
  local dir=$1; shift
  set -- "$@" $ARGS  # word-split on purpose: a list of flags
  $PYTHON train_rm.py --preset "$PRESET" --run-dir "$dir" "$@" &&
    $PYTHON merge.py --preset "$PRESET" --run-dir "$dir" "$@" &&
    $PYTHON rlhf.py --preset "$PRESET" --run-dir "$dir" ${REWARDS:+--reward "$REWARDS"} "$@"
}

one_run() {  # "clean SEED" or "corrupt SEED"
  local setting=$1 seed=$2 clean="$ROOT/$PRESET-s$2-clean"
  if [ "$setting" = clean ]; then
    pipeline "$clean" --seed "$seed"
    return
  fi
  local dir="$ROOT/$PRESET-s$seed-corrupt"
  until [ -f "$clean/sft/quality.json" ]; do  # the clean run's SFT has finished
    [ -f "$clean.failed" ] && { echo "the clean run of seed $seed failed"; return 1; }
    sleep 10
  done
  if [ ! -f "$dir/sft/quality.json" ]; then
    mkdir -p "$dir/metrics"
    cp -r "$clean/tokenizer.tiktoken" "$clean/tokenizer.tiktoken.sha256" "$clean/pretrain" "$clean/sft" "$dir/" &&
      cp "$clean/metrics/pretrain.jsonl" "$clean/metrics/sft.jsonl" "$dir/metrics/" || return 1
  fi
  pipeline "$dir" --seed "$seed" --rm.corrupt 0.25
}
export -f pipeline one_run
export PRESET ROOT PYTHON REWARDS ARGS

# Clean runs first, so that a corrupted run rarely waits for its clean run's SFT.
for setting in clean corrupt; do for seed in $SEEDS; do echo "$setting $seed"; done; done |
  xargs -P "$JOBS" -L 1 bash -c 'one_run "$0" "$1" > "$ROOT/logs/$PRESET-s$1-$0.log" 2>&1 && echo "done: $0 seed $1" || { touch "$ROOT/$PRESET-s$1-$0.failed"; echo "FAILED: $0 seed $1, see $ROOT/logs/$PRESET-s$1-$0.log"; exit 255; }'

$PYTHON scripts/aggregate.py "$ROOT"/"$PRESET"-s*-clean "$ROOT"/"$PRESET"-s*-corrupt --out "$OUT"

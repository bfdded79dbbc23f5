#!/usr/bin/env bash
# Label memorisation (the paper's Fig. 4) where reward models can memorise: few training documents, many
# passes over them, 25% of the training labels flipped. For each finished run given (train_rm.py --until sft
# or more), a new run directory beside it shares its tokenizer, pretraining and SFT (hard links) and its
# settings but for the reward models' data, trains the M reward models on TRAIN_DOCS documents, and merge.py
# scores every RM, ENS and WARM on all of their training pairs: the "train (corrupted labels)" column is the
# agreement with the flipped labels; scripts/memorisation_index.py then takes off what a model would agree with
# them without memorising. merge.py also measures LMC (Fig. 3) in this regime.
#
#   bash scripts/memorisation.sh runs/sci/s0 runs/sci/s1 runs/sci/s2       # makes runs/sci/s0-mem300, ...
#   TRAIN_DOCS=1000 bash scripts/memorisation.sh runs/sci/s0                # less memorisation, better accuracy
#
# Runs one after the other, each on OMP_NUM_THREADS threads (default 1); resumable like every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAIN_DOCS=${TRAIN_DOCS:-300}
PYTHON=${PYTHON:-python3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
dirs=()
for base in "$@"; do
  [ -f "$base/sft/quality.json" ] || { echo "error: $base has no finished SFT (run train_rm.py --until sft)" >&2; exit 2; }
  dir="$base-mem$TRAIN_DOCS"
  if [ ! -f "$dir/config.json" ]; then
    mkdir -p "$dir/metrics"
    cp -al "$base/tokenizer.tiktoken" "$base/tokenizer.tiktoken.sha256" "$base/pretrain" "$base/sft" "$dir/"
    cp -al "$base/metrics/pretrain.jsonl" "$base/metrics/sft.jsonl" "$dir/metrics/"
    "$PYTHON" -c 'import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["rm"].update(corrupt=0.25, train_docs=int(sys.argv[3]))
open(sys.argv[2], "w").write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")' "$base/config.json" "$dir/config.json" "$TRAIN_DOCS"
  fi
  "$PYTHON" train_rm.py --run-dir "$dir"
  "$PYTHON" merge.py --run-dir "$dir" --eval-pairs 1000000
  dirs+=("$dir")
done
"$PYTHON" scripts/aggregate.py --rm-only "${dirs[@]}"
# each model's agreement with the flipped labels beside its accuracy on documents it never saw: the baseline
"$PYTHON" scripts/memorisation_index.py "${dirs[@]}"

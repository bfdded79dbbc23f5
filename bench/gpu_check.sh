#!/usr/bin/env bash
# The gpu preset's check on one CUDA GPU, in one short run (about 10 minutes on an H100):
#   1. the unit tests; tests/test_device.py runs bf16 autocast, a PPO iteration and torch.compile on CUDA too
#   2. a training step of the gpu preset's model (8 x 512, batch 64 x 256, bf16, torch.compile): tokens/s, MFU
#   3. sampling with and without the KV cache at the gpu preset's size
#   4. merging M = 2 and 10 reward models of that size: time and peak host memory
#   5. the tiny pipeline (train_rm.py, merge.py, rlhf.py) end to end on the GPU in bf16, each stage timed
#
#   bash bench/gpu_check.sh [LOG_DIR]      # everything printed also goes to LOG_DIR/gpu_check.log
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${1:-runs/gpu_check}
PYTHON=${PYTHON:-python3}
mkdir -p "$LOG_DIR"
exec > >(tee "$LOG_DIR/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
stage() { echo; echo "== $* ($(date +%T))"; }
timed() { local t0=$SECONDS; "$@"; echo "-- $(( SECONDS - t0 )) s: $*"; }

stage "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PYTHON -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

stage "1. unit tests (test_device.py on cpu and cuda)"
timed $PYTHON -m pytest -q -x -p no:cacheprovider

stage "2. training step, gpu preset (bf16 autocast, torch.compile)"
timed $PYTHON bench/train_step.py --preset gpu --steps 30 --vocab 4096

stage "3. generation, gpu preset's model"
timed $PYTHON bench/generate.py --n-layer 8 --n-head 8 --n-embd 512 --vocab-size 4096 --batch-size 128

stage "4. merge, gpu preset's model"
timed $PYTHON bench/merge_memory.py --n-layer 8 --n-head 8 --n-embd 512 --vocab-size 4096 --ms 2,10 --no-load-all

stage "5. the tiny pipeline on the GPU"
rm -rf "$LOG_DIR/tiny"
timed $PYTHON train_rm.py --preset tiny --device cuda --dtype bfloat16 --run-dir "$LOG_DIR/tiny"
timed $PYTHON merge.py --run-dir "$LOG_DIR/tiny"
timed $PYTHON rlhf.py --run-dir "$LOG_DIR/tiny"
stage "done"

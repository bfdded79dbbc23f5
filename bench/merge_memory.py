"""Does merging M reward models need memory flat in M? Peak RSS of WARM's merge against M.

Writes M reward-model-sized checkpoints to a temporary directory, then merges the first M of them in a fresh
process for each M, two ways: streamed from their paths (`merge(paths)`: one checkpoint loaded at a time beside
a running sum), and, for comparison, with every checkpoint loaded first (`merge([load(p) for p in paths])`).
Each child reports the rise of its peak RSS over its RSS after the imports: the memory the merge itself
took, shown in units of one checkpoint. Streamed it should stay near 2 (the sum and
one input, or the sum and the output) whatever M; loading all first grows as M + 2 (the inputs,
the sum, the output).

    python bench/merge_memory.py                    # a ~14M-parameter RM (56 MB a checkpoint), M = 2, 4, ..., 10
    python bench/merge_memory.py --help
"""

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing the package
from warm_mini import averaging, checkpoint  # noqa: E402
from warm_mini.config import ModelConfig  # noqa: E402
from warm_mini.model import GPT  # noqa: E402

MODES = ("stream", "load-all")


def memory_bytes(field: str) -> int:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, from /proc: Linux only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise KeyError(field)


def child(mode: str, paths: list[str]) -> None:
    """What one fresh process does: merge, then print how far its peak RSS rose above its RSS after the imports.

    Not getrusage's ru_maxrss: a child's ru_maxrss starts at its parent's RSS (inherited through fork), and
    importing torch peaks above where it settles; either would hide a merge's ~100 MB. Writing 5 to
    clear_refs resets the peak (VmHWM) to the current RSS instead.
    """
    Path("/proc/self/clear_refs").write_text("5")
    start = memory_bytes("VmRSS")
    if mode == "stream":
        averaging.merge(paths)
    else:
        averaging.merge([checkpoint.load(p) for p in paths])
    print(memory_bytes("VmHWM") - start)


def run_child(mode: str, paths: list[Path]) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", mode, *map(str, paths)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def write_checkpoints(config: ModelConfig, n: int, folder: Path) -> list[Path]:
    """n reward models (GPT backbone + scalar head) with different random weights, saved as the pipeline saves them."""
    paths = []
    for seed in range(n):
        torch.manual_seed(seed)
        rm = nn.ModuleDict({"backbone": GPT(config), "head": nn.Linear(config.n_embd, 1)})
        path = folder / f"rm{seed}.pt"
        checkpoint.save({"model": rm.state_dict(), "model_config": dataclasses.asdict(config), "tokenizer": "bench",
                         "seed": seed}, path)
        paths.append(path)
    return paths


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ms", default="2,4,6,8,10", help="comma-separated numbers of models to merge")
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--no-load-all", action="store_true", help="skip the load-everything-first comparison")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)  # internal: run as one measured process
    args, rest = p.parse_known_args()
    if args.child:
        return child(args.child, rest)

    ms = sorted(int(m) for m in args.ms.split(","))
    config = ModelConfig(vocab_size=args.vocab_size, block_size=256, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd)
    modes = ["stream"] + ([] if args.no_load_all else ["load-all"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="merge_memory.") as tmp:
        paths = write_checkpoints(config, ms[-1], Path(tmp))
        size = paths[0].stat().st_size
        print(f"one checkpoint: {size / 2**20:.1f} MiB on disk (float32, n_layer {config.n_layer}, n_embd {config.n_embd}, "
              f"vocab {config.vocab_size})")
        print(f"{'M':>3}" + "".join(f"  {mode + ': extra MiB':>20} {'/ ckpt':>7}" for mode in modes))
        for m in ms:
            row = f"{m:>3}"
            for mode in modes:
                extra = run_child(mode, paths[:m])
                row += f"  {extra / 2**20:>20.0f} {extra / size:>7.2f}"
            print(row, flush=True)
    print(f"{time.perf_counter() - t0:.0f} s in all; temporary files deleted")


if __name__ == "__main__":
    main()

"""Training throughput at a preset's model size: our training loop against a bare loop, in one run.

The bare loop is the least a training step can do: forward, backward, fused torch.optim.AdamW, no
logging, no clipping, no schedule. Ours (warm_mini.train.train) adds all of that plus tqdm, a JSONL
log and a final checkpoint; its overhead should stay under 5%. Both see the same batches.

    python bench/train_step.py                  # cpu preset's model, 20 steps each
    python bench/train_step.py --preset gpu     # on CUDA: bf16 autocast, compile as the preset says
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import config, data  # noqa: E402
from warm_mini.lm import lm_loss  # noqa: E402
from warm_mini.model import GPT  # noqa: E402
from warm_mini.train import autocast, train  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=config.PRESETS, default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per loop (after 3 warm-up steps)")
    parser.add_argument("--vocab", type=int, default=2048, help="vocabulary size (the tokenizer's, roughly)")
    args = parser.parse_args()

    cfg = config.preset(args.preset)
    device = cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu"
    model_cfg = cfg.model
    model_cfg.vocab_size = args.vocab
    tcfg = cfg.pretrain
    warmup = 3
    tcfg.steps, tcfg.warmup_steps, tcfg.eval_every, tcfg.ckpt_every = warmup + args.steps, 1, 10**9, 10**9
    stream = torch.randint(0, args.vocab, (200_000,))
    batches = data.window_batches(stream, model_cfg.block_size, tcfg.batch_size, tcfg.grad_accum, seed=0)
    tokens_per_step = tcfg.batch_size * model_cfg.block_size
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cast = autocast(device, cfg.dtype)
    print(f"preset {args.preset}: {model_cfg.n_layer} layers x {model_cfg.n_embd} wide, batch {tcfg.batch_size} x {model_cfg.block_size} tokens, "
          f"device {device}, dtype {cfg.dtype}, {torch.get_num_threads()} threads, compile {tcfg.compile}")

    # The bare loop.
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    runner = torch.compile(model) if tcfg.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, fused=True)
    for step in range(warmup + args.steps):
        if step == warmup:
            sync()
            t0 = time.perf_counter()
        batch = {k: v.to(device) for k, v in batches(step, 0, 0, 1).items()}
        with cast:
            loss = lm_loss(runner, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    bare = args.steps * tokens_per_step / (time.perf_counter() - t0)
    print(f"bare loop:  {bare:10,.0f} tokens/s  (MFU {model.estimate_mfu(bare, peak_flops=_peak(device)):.1%} of an assumed {_peak(device) / 1e9:,.0f} GFLOPS peak)")

    # Ours: the whole call, timed at two lengths; the difference is the cost of the extra steps,
    # logging and progress bar included, start-up and the final checkpoint excluded.
    def ours(steps: int) -> float:
        tcfg.steps = steps
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train(GPT(model_cfg), tcfg, batches, lm_loss, Path(tmp), device=device, dtype=cfg.dtype, metrics_path=Path(tmp) / "m.jsonl", desc="ours")
            sync()
            return time.perf_counter() - t0

    ours_tps = args.steps * tokens_per_step / (ours(warmup + args.steps) - ours(warmup))
    print(f"our loop:   {ours_tps:10,.0f} tokens/s")
    print(f"overhead of our loop: {bare / ours_tps - 1:+.1%} per step (target: at most +5%)")


def _peak(device: str) -> float:
    """Peak dense FLOPS for the MFU estimate: an H100's bf16 on CUDA, a rough 100 GFLOPS on a laptop CPU."""
    return 989e12 if device.startswith("cuda") else 100e9


if __name__ == "__main__":
    main()

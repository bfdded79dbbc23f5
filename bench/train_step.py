"""Training throughput at a preset's model size, measured side by side in one run:

1. our GPT (rotary positions, warm_mini/model.py) against a plain GPT of the same shape with a learned
   position table (`PlainGPT` below, the textbook layout): the same step, batches and fused AdamW, in
   alternating rounds so that a busy machine slows both alike. Target: ours at least 1.0x, goal 1.1x;
2. our training loop (warm_mini.train.train: clipping, schedule, logging, tqdm, checkpoints) against the bare
   loop of step 1: its overhead should stay under 5%.

    python bench/train_step.py                  # cpu preset's model, 3 rounds of 10 steps each
    python bench/train_step.py --preset gpu     # on CUDA: bf16 autocast, compile as the preset says
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import config, data  # noqa: E402
from warm_mini.config import ModelConfig  # noqa: E402
from warm_mini.lm import lm_loss  # noqa: E402
from warm_mini.model import GPT  # noqa: E402
from warm_mini.train import autocast, train  # noqa: E402


class PlainGPT(nn.Module):
    """The baseline: a minimal GPT-2-style model with a learned position table, the same shape as ours."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.n_head = c.n_head
        self.tok_emb, self.pos_emb = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.block_size, c.n_embd)
        self.blocks = nn.ModuleList([nn.ModuleDict({
            "ln_1": nn.LayerNorm(c.n_embd, bias=c.bias), "qkv": nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias),
            "proj": nn.Linear(c.n_embd, c.n_embd, bias=c.bias), "ln_2": nn.LayerNorm(c.n_embd, bias=c.bias),
            "up": nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias), "down": nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias),
        }) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))  # (B, T, C)
        for b in self.blocks:
            q, k, v = b["qkv"](b["ln_1"](x)).split(x.size(-1), dim=2)
            q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)
            x = x + b["proj"](y)
            x = x + b["down"](F.gelu(b["up"](b["ln_2"](x))))
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=config.PRESETS, default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round and model (after 3 warm-up steps)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median round counts")
    parser.add_argument("--vocab", type=int, default=2048, help="vocabulary size (the tokenizer's, roughly)")
    args = parser.parse_args()

    cfg = config.preset(args.preset)
    device = cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu"
    model_cfg = cfg.model
    model_cfg.vocab_size = args.vocab
    tcfg = cfg.pretrain
    warmup = 3
    stream = torch.randint(0, args.vocab, (200_000,))
    batches = data.window_batches(stream, model_cfg.block_size, tcfg.batch_size, tcfg.grad_accum, seed=0)
    tokens_per_step = tcfg.batch_size * model_cfg.block_size
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cast = autocast(device, cfg.dtype)
    print(f"preset {args.preset}: {model_cfg.n_layer} layers x {model_cfg.n_embd} wide, "
          f"batch {tcfg.batch_size} x {model_cfg.block_size} tokens, "
          f"device {device}, dtype {cfg.dtype}, {torch.get_num_threads()} threads, compile {tcfg.compile}")

    # 1. The bare step of each model, in alternating rounds on the same batches.
    loops = {}
    for name, make in (("ours (rotary)", GPT), ("plain GPT (learned positions)", PlainGPT)):
        torch.manual_seed(0)
        model = make(model_cfg).to(device)
        runner = torch.compile(model) if tcfg.compile else model
        loops[name] = (model, runner, torch.optim.AdamW(model.parameters(), lr=tcfg.lr, fused=True))

    def bare_round(name: str, first_step: int, steps: int) -> float:
        """tokens/s of `steps` bare steps (forward, backward, fused AdamW) of one model."""
        _, runner, opt = loops[name]
        sync()
        t0 = time.perf_counter()
        for step in range(first_step, first_step + steps):
            batch = {k: v.to(device) for k, v in batches(step, 0, 0, 1).items()}
            with cast:
                loss = lm_loss(runner, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync()
        return steps * tokens_per_step / (time.perf_counter() - t0)

    for name in loops:
        bare_round(name, 0, warmup)
    rounds = {name: [] for name in loops}
    for r in range(args.rounds):
        for name in loops:
            rounds[name].append(bare_round(name, warmup + r * args.steps, args.steps))
    tps = {name: statistics.median(v) for name, v in rounds.items()}
    for name, v in tps.items():
        print(f"{name:30s} {v:10,.0f} tokens/s (median of {args.rounds} rounds of {args.steps} steps)")
    ours_name, plain_name = list(loops)
    mfu = loops[ours_name][0].estimate_mfu(tps[ours_name], peak_flops=_peak(device))
    print(f"ours / plain GPT: {tps[ours_name] / tps[plain_name]:.2f}x (target: at least 1.0x, goal 1.1x); "
          f"our MFU {mfu:.1%} of an assumed {_peak(device) / 1e9:,.0f} GFLOPS peak")

    # 2. Our whole training loop, timed at two lengths; the difference is the cost of the extra steps,
    # logging and progress bar included, start-up and the final checkpoint excluded.
    tcfg.warmup_steps, tcfg.eval_every, tcfg.ckpt_every = 1, 10**9, 10**9

    def ours(steps: int) -> float:
        tcfg.steps = steps
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            train(GPT(model_cfg), tcfg, batches, lm_loss, Path(tmp), device=device, dtype=cfg.dtype,
                  metrics_path=Path(tmp) / "m.jsonl", desc="ours")
            sync()
            return time.perf_counter() - t0

    loop_tps = args.steps * tokens_per_step / (ours(warmup + args.steps) - ours(warmup))
    print(f"our training loop: {loop_tps:10,.0f} tokens/s")
    print(f"overhead of our loop over the bare step: {tps[ours_name] / loop_tps - 1:+.1%} per step (target: at most +5%)")


def _peak(device: str) -> float:
    """Peak dense FLOPS for the MFU estimate: an H100's bf16 on CUDA, a rough 100 GFLOPS on a laptop CPU."""
    return 989e12 if device.startswith("cuda") else 100e9


if __name__ == "__main__":
    main()

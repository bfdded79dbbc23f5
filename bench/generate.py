"""How much does the KV cache buy? Times sampling new tokens with and without it.

Without the cache every new token re-runs the whole sequence (prompt + everything generated so far);
with it, the prompt is run once (the prefill) and each step runs one column against the stored keys and values.

    python bench/generate.py                 # the cpu preset's model, batch 64, 128-token prompts, 48 new tokens
    python bench/generate.py --help
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing the package
from warm_mini.config import ModelConfig  # noqa: E402
from warm_mini.model import GPT, generate  # noqa: E402
from warm_mini.train import autocast  # noqa: E402


def main():
    defaults = ModelConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--n-layer", type=int, default=defaults.n_layer)
    p.add_argument("--n-head", type=int, default=defaults.n_head)
    p.add_argument("--n-embd", type=int, default=defaults.n_embd)
    p.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    p.add_argument("--block-size", type=int, default=defaults.block_size)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: bfloat16 autocast on CUDA, float32 on CPU")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per mode; the fastest counts (other processes only ever slow a run down)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    dtype = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    cast = autocast(str(device), dtype)
    config = ModelConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                         n_head=args.n_head, n_embd=args.n_embd, dropout=0.0)
    model = GPT(config).to(device).eval()
    prompt = torch.randint(0, config.vocab_size, (args.batch_size, args.prompt_len), device=device)
    prompt_mask = torch.ones_like(prompt, dtype=torch.bool)

    print(f"device {device}, dtype {dtype}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"model: {model.num_params() / 1e6:.2f}M parameters (n_layer {config.n_layer}, n_head {config.n_head}, "
          f"n_embd {config.n_embd}, vocab {config.vocab_size})")
    print(f"batch {args.batch_size}, prompt {args.prompt_len} tokens, {args.new_tokens} new tokens per row, best of {args.repeats}")

    def tokens_per_second(use_cache: bool, new_tokens: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with cast:
            tokens, _, _ = generate(model, prompt, prompt_mask, new_tokens, temperature=1.0, use_cache=use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return tokens.numel() / (time.perf_counter() - t0)

    results = {}
    for use_cache in (False, True):
        tokens_per_second(use_cache, 4)  # warm-up: allocator, kernels, thread pools
        results[use_cache] = max(tokens_per_second(use_cache, args.new_tokens) for _ in range(args.repeats))
        print(f"{'with' if use_cache else 'without'} KV cache: {results[use_cache]:10,.0f} new tokens/s")
    print(f"speed-up from the cache: {results[True] / results[False]:.1f}x")


if __name__ == "__main__":
    main()

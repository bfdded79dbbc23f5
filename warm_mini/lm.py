"""The policy before RL: pretraining on the world's text, then SFT on document -> summary.

Both stages run the shared loop in `train.py`; a finished stage (its model.pt exists) is loaded, not
retrained. SFT keeps snapshots along its trajectory: the preference pairs are sampled from them, RL may
start from one, and with no reward-model curriculum Baklava initialises reward models from them.
"""

import dataclasses
from pathlib import Path

import tiktoken
import torch
from tqdm import tqdm

from warm_mini import checkpoint, data, world
from warm_mini import tokenizer as tok
from warm_mini.cli import RunError
from warm_mini.config import Config, ModelConfig
from warm_mini.model import GPT, generate
from warm_mini.train import train

MAX_SUMMARY_TOKENS = 48  # references take 15 to 35 tokens; room to ramble, so rambling can be seen


def lm_loss(model, batch: dict) -> torch.Tensor:
    return model(batch["idx"], targets=batch["targets"])[1]


def load_model(path: Path, device: str = "cpu") -> GPT:
    """A GPT from a checkpoint written by the training loop (weights + its ModelConfig)."""
    state = checkpoint.load(path, map_location=device)
    model = GPT(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device)


def _stage(name: str, run_dir: Path, build, train_fn) -> GPT:
    """Load a finished stage or train it (resuming if it was interrupted)."""
    out = Path(run_dir) / name
    if (out / "model.pt").exists():
        tqdm.write(f"{name}: finished earlier, loading {out / 'model.pt'}")
        return load_model(out / "model.pt")
    return train_fn(build(), out)


def model_config(cfg: Config, enc: tiktoken.Encoding) -> ModelConfig:
    """The run's GPT shape: the preset's, with the trained tokenizer's vocabulary."""
    return dataclasses.replace(cfg.model, vocab_size=enc.n_vocab)


def pretrain(run_dir: Path, cfg: Config, splits: data.Splits, enc: tiktoken.Encoding) -> GPT:
    """Next-token prediction on documents and reference summaries, from random initialisation."""
    model_cfg = model_config(cfg, enc)

    def build():
        torch.manual_seed(cfg.seed)
        return GPT(model_cfg)

    def run(model, out):  # the data is prepared only when the stage has work to do
        stream, val_stream = (torch.tensor(tok.encode_with_specials(enc, world.world_text(docs)), dtype=torch.long)
                              for docs in (splits.train, splits.val))
        block = cfg.model.block_size
        train_batches = data.window_batches(stream, block, cfg.pretrain.batch_size, cfg.pretrain.grad_accum, cfg.seed)
        val_batches = data.window_batches(val_stream, block, cfg.pretrain.batch_size, 1, cfg.seed + 1)
        return train(model, cfg.pretrain, train_batches, lm_loss, out, device=cfg.device, dtype=cfg.dtype,
                     eval_fn=lambda m: {"val/loss": _mean_loss(m, val_batches, cfg.device)},
                     metrics_path=Path(run_dir) / "metrics" / "pretrain.jsonl", desc="pretrain",
                     extra_state={"model_config": dataclasses.asdict(model_cfg)})

    return _stage("pretrain", run_dir, build, run)


def sft(run_dir: Path, cfg: Config, splits: data.Splits, enc: tiktoken.Encoding) -> GPT:
    """Supervised fine-tuning from the pretrained weights, the loss on summary tokens only."""

    def build():
        return load_model(Path(run_dir) / "pretrain" / "model.pt")

    def run(model, out):  # the data is prepared only when the stage has work to do
        pad = enc.encode_single_token(tok.PAD)
        examples = data.sft_examples(enc, splits.train, cfg.seed)
        longest = max(len(p) + max(len(s), MAX_SUMMARY_TOKENS) for p, s in examples)  # room to generate too
        if longest > cfg.model.block_size:
            raise SystemExit(f"error: documents + summaries need {longest} tokens but --model.block_size is "
                             f"{cfg.model.block_size}; raise it, or --tokenizer.vocab_size (shorter tokenizations)")
        train_batches = data.sft_batches(examples, pad, cfg.sft.batch_size, cfg.sft.grad_accum, cfg.seed)
        val_batches = data.sft_batches(data.sft_examples(enc, splits.val, cfg.seed + 1), pad, cfg.sft.batch_size, 1, cfg.seed + 1)
        return train(model, cfg.sft, train_batches, lm_loss, out, device=cfg.device, dtype=cfg.dtype,
                     eval_fn=lambda m: {"val/loss": _mean_loss(m, val_batches, cfg.device)},
                     metrics_path=Path(run_dir) / "metrics" / "sft.jsonl", desc="sft",
                     extra_state={"model_config": dataclasses.asdict(model.config)})

    return _stage("sft", run_dir, build, run)


def sft_snapshots(run_dir: Path) -> list[Path]:
    """The SFT trajectory's snapshots, oldest first (the last one is the final SFT model)."""
    return sorted((Path(run_dir) / "sft").glob("step_*.pt"))


def rl_init(run_dir: Path, step: int = 0) -> Path:
    """The policy the RL stage starts from (and calls SFT): the final SFT model, or its snapshot at `step`."""
    path = Path(run_dir) / "sft" / (f"step_{step:06d}.pt" if step else "model.pt")
    if not path.exists():
        raise RunError(f"{path} does not exist: --rlhf.init_step must name an SFT snapshot of this run")
    return path


@torch.no_grad()
def _mean_loss(model, batch_fn, device: str, n_batches: int = 4) -> float:
    losses = [lm_loss(model, {k: v.to(device) for k, v in batch_fn(i, 0, 0, 1).items()}).item() for i in range(n_batches)]
    return sum(losses) / len(losses)


@torch.no_grad()
def sample_summaries(model: GPT, enc: tiktoken.Encoding, docs: list[world.Document], temperature: float,
                     batch_size: int = 64, seed: int = 0, device: str = "cpu",
                     max_new_tokens: int = MAX_SUMMARY_TOKENS) -> list[list[int]]:
    """One summary per document as token ids, ending in end-of-text when the model produced it."""
    eot, _, pad = tok.special_ids(enc)
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, len(docs), batch_size):
        prompt, mask = data.left_pad([data.prompt_ids(enc, d) for d in docs[i : i + batch_size]], pad)
        tokens, _, keep = generate(model, prompt.to(device), mask.to(device), max_new_tokens,
                                   temperature=temperature, eot_id=eot, pad_id=pad, generator=g)
        out += [row[m].tolist() for row, m in zip(tokens.cpu(), keep.cpu())]
    return out


def summarize(model: GPT, enc: tiktoken.Encoding, docs: list[world.Document], temperature: float,
              batch_size: int = 64, seed: int = 0, device: str = "cpu") -> list[str]:
    """One summary per document, decoded with its end marker when the model produced one."""
    return [tok.decode(enc, ids) for ids in sample_summaries(model, enc, docs, temperature, batch_size, seed, device)]


def quality_report(model: GPT, enc: tiktoken.Encoding, docs: list[world.Document], seed: int, device: str = "cpu") -> dict:
    """Oracle scores of greedy and temperature-1 summaries against the references, on held-out documents.

    Reward models learn from pairs of temperature-1 samples, so their scores must spread widely.
    """
    refs = [world.score(d, d.reference + world.EOT) for d in docs]
    greedy = [world.score(d, s) for d, s in zip(docs, summarize(model, enc, docs, 0.0, seed=seed, device=device))]
    sampled = [world.score(d, s) for d, s in zip(docs, summarize(model, enc, docs, 1.0, seed=seed, device=device))]
    mean = lambda xs: sum(xs) / len(xs)
    return {"reference": mean(refs), "greedy": mean(greedy), "sampled": mean(sampled),
            "greedy_over_reference": mean(greedy) / mean(refs), "sampled_scores": sampled}


def histogram(values: list[float], lo: float = -1.0, hi: float = 1.0, bins: int = 10, width: int = 40) -> str:
    """A text histogram, for terminals and closing notes."""
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
    top = max(counts) or 1
    step = (hi - lo) / bins
    return "\n".join(f"[{lo + i * step:+.1f}, {lo + (i + 1) * step:+.1f}) {c:5d} {'#' * round(width * c / top)}"
                     for i, c in enumerate(counts))

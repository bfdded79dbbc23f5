"""Stage 1a: the policy before RL. The run's tokenizer, pretraining on the world's text, then SFT on
document -> summary.

Both training stages run the shared loop in `warm_mini/train.py`; a finished stage (its model.pt exists) is
loaded, not retrained. SFT keeps snapshots along its trajectory: the preference pairs are sampled from them,
RL may start from one, and with no reward-model curriculum Baklava initialises reward models from them.
"""

import dataclasses
import hashlib
from pathlib import Path

import tiktoken
import torch
from tqdm import tqdm

from warm_mini import data, lm, world
from warm_mini import tokenizer as tok
from warm_mini.checkpoint import RunError
from warm_mini.config import Config, ModelConfig
from warm_mini.lm import MAX_SUMMARY_TOKENS, lm_loss
from warm_mini.model import GPT
from warm_mini.train import train


def tokenizer_path(run_dir: Path) -> Path:
    return Path(run_dir) / "tokenizer.tiktoken"


def tokenizer_hash(run_dir: Path) -> str:
    """A fingerprint of the run's tokenizer: checkpoints that disagree on it cannot be merged."""
    return hashlib.sha256(tokenizer_path(run_dir).read_bytes()).hexdigest()[:16]


def load_or_train_tokenizer(run_dir: Path, cfg: Config, splits: data.Splits) -> tiktoken.Encoding:
    """Train the BPE on the training documents' text once; later stages load the saved file."""
    path = tokenizer_path(run_dir)
    if path.exists():
        return tok.load(path)
    text = world.world_text(splits.train)[: cfg.tokenizer.train_chars]
    return tok.train_tokenizer(text, cfg.tokenizer.vocab_size, path)


def _stage(name: str, run_dir: Path, build, train_fn) -> GPT:
    """Load a finished stage or train it (resuming if it was interrupted)."""
    out = Path(run_dir) / name
    if (out / "model.pt").exists():
        tqdm.write(f"{name}: finished earlier, loading {out / 'model.pt'}")
        return lm.load_model(out / "model.pt")
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
        return lm.load_model(Path(run_dir) / "pretrain" / "model.pt")

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

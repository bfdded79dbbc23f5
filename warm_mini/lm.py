"""The language model as a policy: its loss, loading it, and sampling summaries from it.

The stages that train it (pretraining, SFT) are in warm_pipeline/sft_stage.py.
"""

from pathlib import Path

import tiktoken
import torch

from warm_mini import checkpoint, data, world
from warm_mini import tokenizer as tok
from warm_mini.config import ModelConfig
from warm_mini.model import GPT, generate

MAX_SUMMARY_TOKENS = 48  # references take 15 to 35 tokens; room to ramble, so rambling can be seen


def lm_loss(model, batch: dict) -> torch.Tensor:
    return model(batch["idx"], targets=batch["targets"])[1]


def load_model(path: Path, device: str = "cpu") -> GPT:
    """A GPT from a checkpoint written by the training loop (weights + its ModelConfig)."""
    state = checkpoint.load(path, map_location=device)
    model = GPT(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model.to(device)


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

"""Stage 1b: the preference pairs of a run, each split sampled from the run's own policies, labeled, and
cached in prefs/<split>.pt as plain tensors and lists of token ids (what each split holds: warm_mini/prefs.py).
"""

import random
from pathlib import Path

import tiktoken
from tqdm import tqdm

from warm_mini import checkpoint, data, lm, prefs, world
from warm_mini.config import Config
from warm_pipeline import sft_stage

EVAL_SUMMARIES = 3  # per evaluation document: with 2, ~30% of cpu-preset documents had only a tie to offer


def _policies(run_dir: Path, split: str) -> list[tuple[Path, float]]:
    """(checkpoint, temperature) of the policies a split samples from.

    In distribution: the second half of the SFT trajectory at temperature 1 (earlier snapshots cannot copy
    yet, so both of their summaries would sit at the oracle's floor: a tie, pure label noise).
    """
    snapshots = sft_stage.sft_snapshots(run_dir)
    if split == "ood":
        return [(Path(run_dir) / "pretrain" / "model.pt", 1.0), (snapshots[-1], 1.5)]
    return [(s, 1.0) for s in snapshots[len(snapshots) // 2 :]]


def split_size(cfg: Config, split: str) -> tuple[int, int]:
    """(documents, policy samples per document) of a split: K = rm.summaries_per_doc for training, none for the
    curriculum, 3 elsewhere."""
    if split == "train":
        return cfg.rm.train_docs, cfg.rm.summaries_per_doc
    if split == "curriculum":
        return cfg.rm.curriculum_docs, 0
    return getattr(cfg.rm, f"{split}_pairs"), EVAL_SUMMARIES


def make_pairs(run_dir: Path, cfg: Config, splits: data.Splits, enc: tiktoken.Encoding, split: str,
               kinds: tuple[str, ...] = world.KEY_FACTS) -> prefs.Pairs:
    """K summaries per document (K = rm.summaries_per_doc for training, 3 elsewhere), each from a policy
    drawn on its own (so that they often differ in quality), and the untied pairs of them labeled by the
    world's labeler: all of them for training, the first of each document for evaluation. Training documents
    also get their reference and E = rm.edited_per_doc one-fact edits of it (in one random template): each edit
    differs from the reference in one fact only, a pair no reward model can order without checking that fact
    (`kinds`: see add_edits; scripts/rm_curves.py varies them). The curriculum's documents get their reference
    and rm.curriculum_edits edits alone (and, with rm.fluency_edits, two fluency edits)."""
    n_docs, k = split_size(cfg, split)
    docs = prefs.docs_of(splits, split)[:n_docs]
    n = len(docs)
    rng = random.Random(f"{cfg.seed}:{split}")
    policies = _policies(run_dir, split) if k else []
    which = [[rng.randrange(len(policies)) for _ in range(k)] for _ in range(n)]
    summaries = [[None] * k for _ in range(n)]
    for p, (path, temperature) in enumerate(tqdm(policies, desc=f"prefs/{split}", leave=False)):
        model = lm.load_model(path, cfg.device)
        for side in range(k):
            idx = [i for i in range(n) if which[i][side] == p]
            texts = lm.summarize(model, enc, [docs[i] for i in idx], temperature, seed=cfg.seed * 1000 + k * p + side, device=cfg.device)
            for i, text in zip(idx, texts):
                summaries[i][side] = text
    edits = {"train": cfg.rm.edited_per_doc, "curriculum": cfg.rm.curriculum_edits}.get(split, 0)
    if edits:
        prefs.add_edits(cfg, docs, summaries, edits, kinds, stream=split, fluency=split == "curriculum" and cfg.rm.fluency_edits)
    return prefs.labeled_pairs(cfg, split, docs, summaries, enc)


def load_or_make(run_dir: Path, cfg: Config, splits: data.Splits, enc: tiktoken.Encoding, split: str) -> prefs.Pairs:
    path = Path(run_dir) / "prefs" / f"{split}.pt"
    if path.exists():
        return prefs.Pairs(**checkpoint.load(path))
    pairs = make_pairs(run_dir, cfg, splits, enc, split)
    checkpoint.save(pairs.__dict__, path)
    return pairs

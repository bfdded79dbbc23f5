"""Preference pairs: summaries of one document, sampled from a policy and labeled by the world's labeler.

Splits (each from its own documents):
    train   SFT snapshots at temperature 1 (a mix of checkpoints, so that quality varies), K summaries per
            document (`--rm.summaries_per_doc`), plus the reference summary and E one-fact edits of it
            (`--rm.edited_per_doc`), every untied pair of them labeled; labels possibly corrupted
            (`--rm.corrupt`: the paper's 25% setting keeps the clean label too)
    val     the same policies on validation documents, one pair each: ranks the RMs and picks the soup
    test    the same policies on test documents, one pair each: in distribution
    ood     shifted policies on test documents, one pair each: the pretrained-only model, and SFT at a high
            temperature
and, apart from the splits that merge.py scores every reward model on:
    curriculum   the reference of each of `--rm.curriculum_docs` training documents and `--rm.curriculum_edits`
            one-fact edits of it, no policy sample: the shared first phase of reward-model training
The labeler compares the oracle's unclipped quality and abstains on ties: two summaries of equal quality (most
often two wordings of a perfect summary) have no right answer, so their label would be a coin flip that no
reward model can learn.
Each split is cached in `prefs/<split>.pt` as plain tensors and lists of token ids.
"""

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

import tiktoken
import torch
from tqdm import tqdm

from warm_mini import checkpoint, data, lm, world
from warm_mini import tokenizer as tok
from warm_mini.config import Config

SPLITS = ("train", "val", "test", "ood")
LABELED = (*SPLITS, "curriculum")  # every labeled set, each with its own labeler seed
TRAINING = ("train", "curriculum")  # every untied pair labeled, labels corrupted at rm.corrupt


@dataclass
class Pairs:
    """N labeled pairs. `label[i]` is True when summary a is preferred; `clean` is the label before corruption."""

    doc: list[int]  # index of the document in its split's list
    a: list[list[int]]  # summary token ids, EOT included when the policy wrote it
    b: list[list[int]]
    score_a: torch.Tensor  # (N,) oracle quality (world.quality: the score before its floor), never shown to a reward model
    score_b: torch.Tensor
    label: torch.Tensor  # (N,) bool, what RMs train on
    clean: torch.Tensor  # (N,) bool, the label before corruption
    flipped: torch.Tensor  # (N,) bool

    def __len__(self):
        return len(self.doc)

    def head(self, n: int) -> "Pairs":
        """The first n pairs."""
        return Pairs(**{k: v[:n] for k, v in self.__dict__.items()})

    def chosen_rejected(self, clean: bool = False) -> tuple[list[list[int]], list[list[int]]]:
        """The preferred and the other summary of each pair, by the training labels or the clean ones."""
        label = self.clean if clean else self.label
        chosen = [a if l else b for a, b, l in zip(self.a, self.b, label.tolist())]
        rejected = [b if l else a for a, b, l in zip(self.a, self.b, label.tolist())]
        return chosen, rejected


def docs_of(splits: data.Splits, split: str) -> list[world.Document]:
    return {"train": splits.train, "val": splits.val, "test": splits.test, "ood": splits.test, "curriculum": splits.train}[split]


def _policies(run_dir: Path, split: str) -> list[tuple[Path, float]]:
    """(checkpoint, temperature) of the policies a split samples from.

    In distribution: the second half of the SFT trajectory at temperature 1 (earlier snapshots cannot copy
    yet, so both of their summaries would sit at the oracle's floor: a tie, pure label noise).
    """
    snapshots = lm.sft_snapshots(run_dir)
    if split == "ood":
        return [(Path(run_dir) / "pretrain" / "model.pt", 1.0), (snapshots[-1], 1.5)]
    return [(s, 1.0) for s in snapshots[len(snapshots) // 2 :]]


EVAL_SUMMARIES = 3  # per evaluation document: with 2, ~30% of cpu-preset documents had only a tie to offer
TIE = 1e-6  # oracle scores closer than this are equal (a score is a float sum)


def split_size(cfg: Config, split: str) -> tuple[int, int]:
    """(documents, policy samples per document) of a split: K = rm.summaries_per_doc for training, none for the
    curriculum, 3 elsewhere."""
    if split == "train":
        return cfg.rm.train_docs, cfg.rm.summaries_per_doc
    if split == "curriculum":
        return cfg.rm.curriculum_docs, 0
    return getattr(cfg.rm, f"{split}_pairs"), EVAL_SUMMARIES


def all_pairs(n_docs: int, k: int) -> list[tuple[int, int, int]]:
    """(document, summary s, summary t) for every pair s < t of each document's k summaries."""
    return [(i, s, t) for i in range(n_docs) for s, t in itertools.combinations(range(k), 2)]


def untied_pairs(scores: list[list[float]], first_only: bool) -> list[tuple[int, int, int]]:
    """(document, summary s, summary t) for the pairs the labeler judges: those whose oracle quality differs.

    `first_only` keeps one per document (the first in `all_pairs` order), so that pairs are independent.
    """
    pairs = [(i, s, t) for i, s, t in all_pairs(len(scores), len(scores[0])) if abs(scores[i][s] - scores[i][t]) > TIE]
    if not first_only:
        return pairs
    first = {}
    for pair in pairs:
        first.setdefault(pair[0], pair)
    return list(first.values())


def make_pairs(run_dir: Path, cfg: Config, splits: data.Splits, enc: tiktoken.Encoding, split: str,
               kinds: tuple[str, ...] = world.KEY_FACTS) -> Pairs:
    """K summaries per document (K = rm.summaries_per_doc for training, 3 elsewhere), each from a policy
    drawn on its own (so that they often differ in quality), and the untied pairs of them labeled by the
    world's labeler: all of them for training, the first of each document for evaluation. Training documents
    also get their reference and E = rm.edited_per_doc one-fact edits of it (in one random template): each edit
    differs from the reference in one fact only, a pair no reward model can order without checking that fact
    (`kinds`: see add_edits; scripts/rm_curves.py varies them). The curriculum's documents get their reference
    and rm.curriculum_edits edits alone."""
    n_docs, k = split_size(cfg, split)
    docs = docs_of(splits, split)[:n_docs]
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
        add_edits(cfg, docs, summaries, edits, kinds, stream=split)
    return labeled_pairs(cfg, split, docs, summaries, enc)


def add_edits(cfg: Config, docs: list[world.Document], summaries: list[list[str]], n_edits: int,
              kinds: tuple[str, ...] = world.KEY_FACTS, stream: str = "train") -> None:
    """Appends to each document's summaries its reference and `n_edits` one-fact edits of it, in one random template:
    different kinds drawn from `kinds`, or with rm.one_kind_per_doc all of one kind (they tie: no edit-vs-edit pair)."""
    rng = random.Random(f"{cfg.seed}:{stream}:edits")  # its own stream: the policy samples stay as they were
    for doc, summ in zip(docs, summaries):
        t = rng.randrange(len(world.SUMMARY_TEMPLATES))
        chosen = [rng.choice(kinds)] * n_edits if cfg.rm.one_kind_per_doc else rng.sample(kinds, n_edits)
        reference_and_edits = [world.reference_summary(doc, template=t)] + [world.edited_summary(doc, k, rng, t) for k in chosen]
        summ += [s + world.EOT for s in reference_and_edits]


def labeled_pairs(cfg: Config, split: str, docs: list[world.Document], summaries: list[list[str]], enc: tiktoken.Encoding) -> Pairs:
    """The untied pairs of each document's summaries (all for training, the first elsewhere), labeled by the world's labeler."""
    scores = [[world.quality(d, s) for s in summ] for d, summ in zip(docs, summaries)]
    ids = [[tok.encode_with_specials(enc, s) for s in summ] for summ in summaries]
    pairs = untied_pairs(scores, first_only=split not in TRAINING)
    score_a = torch.tensor([scores[i][s] for i, s, _ in pairs])
    score_b = torch.tensor([scores[i][t] for i, _, t in pairs])
    corrupt = cfg.rm.corrupt if split in TRAINING else 0.0  # evaluation labels stay clean
    labels = world.Labeler(cfg.world.label_tau, corrupt, seed=split_seed(cfg.seed, split)).label(score_a.numpy(), score_b.numpy())
    return Pairs(
        doc=[i for i, _, _ in pairs],
        a=[ids[i][s] for i, s, _ in pairs],
        b=[ids[i][t] for i, _, t in pairs],
        score_a=score_a, score_b=score_b,
        label=torch.as_tensor(labels.label), clean=torch.as_tensor(labels.clean), flipped=torch.as_tensor(labels.flipped),
    )


def split_seed(seed: int, split: str) -> int:
    """A seed per (run seed, split) that is the same in every process (str hashes are not)."""
    return seed * 10 + LABELED.index(split)


def load_or_make(run_dir: Path, cfg: Config, splits: data.Splits, enc: tiktoken.Encoding, split: str) -> Pairs:
    path = Path(run_dir) / "prefs" / f"{split}.pt"
    if path.exists():
        return Pairs(**checkpoint.load(path))
    pairs = make_pairs(run_dir, cfg, splits, enc, split)
    checkpoint.save(pairs.__dict__, path)
    return pairs

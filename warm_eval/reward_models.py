"""How single RMs, ENS and WARM are judged: pairwise accuracy by split (the paper's Fig. 4), linear
mode connectivity along (1-λ)·φ1 + λ·φ2 (Fig. 3), and which facts a reward model checks (one-fact edits).

Every reward model is scored once per split; ENS of any subset is then the mean of its members' stored
rewards (exactly what averaging.Ensemble computes), so a table with many ENS rows costs nothing extra.
"""

import random
from pathlib import Path

import torch
from tqdm import tqdm

from warm_mini import averaging, checkpoint, data, prefs, world
from warm_mini import tokenizer as tok
from warm_eval.report import pyplot, save_figure
from warm_mini.model import sequence_logprobs
from warm_mini.reward import LMC_PAIRS, normalise, normaliser, pair_accuracy, rm_from_checkpoint, score_pairs, score_summaries, split_rows

# Accuracy columns: what the paper's Fig. 4 compares.
COLUMNS = {
    "train (corrupted labels)": ("train", "flipped"),  # agreement with the flipped labels: memorisation
    "train (clean labels)": ("train", "kept"),  # the training pairs whose label was not flipped
    "val": ("val", "all"),
    "test": ("test", "all"),
    "ood": ("ood", "all"),
}


class Scorer:
    """Rewards of both summaries of every pair, per split, for one reward model (a checkpoint dict)."""

    def __init__(self, enc, splits: data.Splits, pairs: dict, device: str, max_pairs: int):
        self.enc, self.splits, self.pairs, self.device, self.max_pairs = enc, splits, pairs, device, max_pairs
        self._saved: dict[Path, dict] = {}

    def subset(self, split: str) -> prefs.Pairs:
        return self.pairs[split].head(self.max_pairs)

    def rewards(self, ckpt: dict, split_names=prefs.SPLITS) -> dict:
        return self.score(rm_from_checkpoint(ckpt, self.device), split_names)

    def saved_rewards(self, path: Path) -> dict:
        """Every split's rewards of the RM saved at `path`, scored once however often asked (the LMC endpoints)."""
        if path not in self._saved:
            self._saved[path] = self.rewards(checkpoint.load(path))
        return self._saved[path]

    def score(self, model, split_names=prefs.SPLITS) -> dict:
        """{split: (ra, rb)} from any module with the reward interface."""
        return {s: score_pairs(model, self.enc, prefs.docs_of(self.splits, s), self.subset(s), device=self.device) for s in split_names}

    def normalised(self, ckpt: dict) -> dict:
        """The checkpoint with its reward normaliser recomputed on SFT samples (after averaging, the members'
        normalisers no longer describe the merged model)."""
        model = rm_from_checkpoint(ckpt, self.device)
        normalise(model, self.enc, self.splits.val, self.pairs["val"], self.device)
        return {**ckpt, "model": {k: v.cpu() for k, v in model.state_dict().items()}}


class LogLikelihood(torch.nn.Module):
    """log pi(y | x) of a policy behind the reward interface (left-padded rows: prompt, ending at SEP, then summary).

    Not a reward model: never trained on a preference, it shows what the SFT backbone every RM starts from
    already knows (merge.py prints its accuracy beside the labeler's ceiling)."""

    def __init__(self, policy, sep: int):
        super().__init__()
        self.policy, self.sep = policy, sep

    def forward(self, idx, attention_mask):
        prompts, summaries = zip(*split_rows(idx, attention_mask, self.sep))
        prompt, prompt_mask = data.left_pad([list(p) for p in prompts], pad_id=0)
        n = max(map(len, summaries))
        response = torch.tensor([list(y) + [0] * (n - len(y)) for y in summaries], device=idx.device)
        response_mask = torch.tensor([[1] * len(y) + [0] * (n - len(y)) for y in summaries], device=idx.device)
        logp = sequence_logprobs(self.policy, prompt.to(idx.device), prompt_mask.to(idx.device), response, response_mask)
        return logp.sum(1)


def edit_probe(model, enc, docs: list[world.Document], device: str) -> dict[str, float]:
    """Per key fact: the share of `docs` on which `model` scores the reference summary above its one-fact edit."""
    rng, eot = random.Random(0), [enc.encode_single_token(world.EOT)]
    reference = score_summaries(model, enc, docs, [tok.encode(enc, d.reference) + eot for d in docs], device=device)
    edited = {k: [tok.encode(enc, world.edited_summary(d, k, rng)) + eot for d in docs] for k in world.KEY_FACTS}
    return {k: (reference > score_summaries(model, enc, docs, ids, device=device)).float().mean().item()
            for k, ids in edited.items()}


def accuracy_row(rewards: dict, scorer: Scorer) -> dict:
    """Accuracy in each column of COLUMNS from rewards {split: (ra, rb)}; a column with no pairs (no flipped
    labels in a clean run) is left out."""
    row = {}
    for column, (split, subset) in COLUMNS.items():
        pairs = scorer.subset(split)
        ra, rb = rewards[split]
        keep = {"all": torch.ones(len(pairs), dtype=torch.bool), "flipped": pairs.flipped, "kept": ~pairs.flipped}[subset]
        if keep.any():
            row[column] = pair_accuracy(ra[keep], rb[keep], pairs.label[keep])
    return row


def ensemble_by_split(members: list[dict]) -> dict:
    """ENS of the members' stored (normalised) rewards {split: (ra, rb)}, per split."""
    return {s: tuple(averaging.ensemble_rewards(torch.stack([m[s][side] for m in members])) for side in range(2)) for s in members[0]}


def accuracy_table(rm_paths: list[Path], ranked: list[int], ms: list[int], scorer: Scorer) -> tuple[list[dict], dict[str, dict]]:
    """Rows for every RM, then ENS and WARM of the top-M RMs (ranked by validation accuracy) for each M, and
    what was built to score them, for merge.py to save: {"warm_M.pt": the merged RM, "ens_M.pt": ENS's
    members and its normaliser}."""
    per_rm, built = {}, {}
    rows = []
    for i in tqdm(ranked, desc="scoring RMs", leave=False):
        per_rm[i] = scorer.saved_rewards(rm_paths[i])
        rows.append({"model": f"RM {i}", **accuracy_row(per_rm[i], scorer)})
    rows.sort(key=lambda r: int(r["model"].split()[1]))
    for m in ms:
        top = ranked[:m]
        ens = ensemble_by_split([per_rm[i] for i in top])
        rows.append({"model": f"ENS M={m}", **accuracy_row(ens, scorer)})
        mean, std = normaliser(torch.cat(ens["val"]))  # on the validation pairs scored (--eval-pairs of them)
        built[f"ens_{m}.pt"] = {"members": top, "reward_mean": mean, "reward_std": std}
        built[f"warm_{m}.pt"] = warm = scorer.normalised(averaging.merge([rm_paths[i] for i in top]))
        rows.append({"model": f"WARM M={m}", **accuracy_row(scorer.rewards(warm), scorer)})
    return rows, built


def lmc_curves(rm_paths: list[Path], run_dir: Path, scorer: Scorer, lams: list[float]) -> list[dict]:
    """Validation accuracy of WA and ENS along λ for the LMC pairs of growing diversity (Fig. 3)."""
    rows = []
    for name, (a, b) in tqdm(LMC_PAIRS.items(), desc="LMC", leave=False):
        if max(a, b) >= len(rm_paths):
            continue
        if name == "same run":  # RM a's mid-training snapshot against its final weights
            mids = sorted((Path(run_dir) / "rm" / f"train_{a}").glob("step_*.pt"))
            if len(mids) < 2:
                continue
            end_a = scorer.normalised(checkpoint.load(mids[0]))
            ra = scorer.rewards(end_a, ["val"])["val"]
        else:
            end_a, ra = checkpoint.load(rm_paths[a]), scorer.saved_rewards(rm_paths[a])["val"]
        end_b, rb = checkpoint.load(rm_paths[b]), scorer.saved_rewards(rm_paths[b])["val"]
        label = scorer.subset("val").label
        for lam in lams:
            # Accuracy ignores the normaliser (a positive affine map), so interpolations need no recalibration;
            # at λ = 0 and 1 the interpolation is an endpoint, already scored.
            wa = ra if lam == 0 else rb if lam == 1 else scorer.rewards(averaging.interpolate(end_a, end_b, lam), ["val"])["val"]
            ens = tuple((1 - lam) * x + lam * y for x, y in zip(ra, rb))
            rows.append({"pair": name, "lambda": lam, "WA": pair_accuracy(*wa, label), "ENS": pair_accuracy(*ens, label)})
    return rows


def diagonal(points: dict, lam: float) -> float:
    """The straight line between the WA endpoints of one LMC curve ({λ: row with "WA"}) at λ: what the paper's
    Fig. 3 compares WA against, (1-λ)·Acc(φ1) + λ·Acc(φ2). WA above it means averaging beats interpolating
    the two accuracies."""
    lo, hi = min(points), max(points)
    return (1 - lam) * points[lo]["WA"] + lam * points[hi]["WA"]


def plot_lmc(rows: list[dict], path: Path) -> bool:
    """Fig. 3: accuracy along λ for WA and ENS, with the diagonal between the endpoints. False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    names = list(dict.fromkeys(r["pair"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        pts = [r for r in rows if r["pair"] == name]
        lam = [r["lambda"] for r in pts]
        ax.plot(lam, [r["WA"] for r in pts], "o-", label="WA")
        ax.plot(lam, [r["ENS"] for r in pts], "s--", label="ENS")
        ax.plot([lam[0], lam[-1]], [pts[0]["WA"], pts[-1]["WA"]], ":", color="gray", label="diagonal")
        ax.set_title(name)
        ax.set_xlabel("λ")
    axes[0][0].set_ylabel("validation accuracy")
    axes[0][0].legend()
    save_figure(fig, path)
    plt.close(fig)
    return True

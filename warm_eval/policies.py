"""How policies are judged: the SFT policy's summaries against the references, Best-of-N against the control
reward (the paper's Fig. 6) and win rates judged by the oracle (Fig. 9).

`bon_kl`, `best_of_n` and `win_rate` are small pure functions of rewards already computed; the rest
samples summaries and scores them (reward.score_summaries scores with any reward source).
"""

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from warm_mini import averaging, checkpoint, lm, reward, world
from warm_pipeline import rm_stage, sft_stage


def quality_report(model, enc, docs: list[world.Document], seed: int, device: str = "cpu") -> dict:
    """Oracle scores of greedy and temperature-1 summaries against the references, on held-out documents.

    Reward models learn from pairs of temperature-1 samples, so their scores must spread widely.
    """
    refs = [world.score(d, d.reference + world.EOT) for d in docs]
    greedy = [world.score(d, s) for d, s in zip(docs, lm.summarize(model, enc, docs, 0.0, seed=seed, device=device))]
    sampled = [world.score(d, s) for d, s in zip(docs, lm.summarize(model, enc, docs, 1.0, seed=seed, device=device))]
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


def bon_kl(n: int) -> float:
    """KL(Best-of-N || base policy), the x-axis of the BoN plots."""
    # The paper's formula for Best-of-N: KL = log N - (N - 1) / N.
    return math.log(n) - (n - 1) / n


def best_of_n(proxy: torch.Tensor, control: torch.Tensor, ns: list[int]) -> dict[int, float]:
    """Mean control reward of the sample the proxy RM picks among the first n, for each n in `ns`.

    `proxy` and `control` are (D, N_max): N_max samples for each of D documents. The first n samples
    are a nested subsample of the N_max, so one set of samples serves every n and the curves over n
    share their noise (a smooth curve, not an independent estimate per n). Ties go to the first index
    (what argmax returns), so a constant proxy picks sample 0, i.e. plain sampling.
    """
    if proxy.shape != control.shape:
        raise ValueError(f"proxy {tuple(proxy.shape)} and control {tuple(control.shape)} differ in shape")
    out = {}
    for n in ns:
        if not 1 <= n <= proxy.shape[1]:
            raise ValueError(f"n={n} outside 1..{proxy.shape[1]}")
        pick = proxy[:, :n].argmax(dim=1, keepdim=True)  # (D, 1)
        out[n] = control.gather(1, pick).float().mean().item()
    return out


def win_rate(scores_a, scores_b, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Share of documents where policy a's summary scores higher than policy b's (ties count half),
    with a 95% percentile bootstrap interval that resamples documents."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length 1-d score lists, got shapes {a.shape} and {b.shape}")
    wins = (a > b) + 0.5 * (a == b)  # per-document outcome: 1, 0.5 or 0
    rng = np.random.default_rng(seed)
    boot = wins[rng.integers(0, len(wins), size=(n_boot, len(wins)))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(wins.mean()), float(low), float(high)


def bon_ns(n_max: int) -> list[int]:
    """1, 2, 4, ... up to n_max."""
    return [2**i for i in range(int(math.log2(n_max)) + 1)]


def bon_samples(run_dir: Path, cfg, docs, enc, n: int) -> tuple[list, list[list[int]]]:
    """Best-of-N's candidates: `n` samples of each document from the SFT policy (sft_stage.rl_init), as token ids,
    with the document of each row; document i's samples are rows i*n .. (i+1)*n - 1."""
    policy = lm.load_model(sft_stage.rl_init(run_dir, cfg.rlhf.init_step), cfg.device)
    repeated = [d for d in docs for _ in range(n)]
    return repeated, lm.sample_summaries(policy, enc, repeated, cfg.rlhf.bon_temperature, seed=cfg.seed, device=cfg.device)


def best_of_n_experiment(run_dir: Path, cfg, docs, enc, ms: list[int]) -> tuple[list[dict], dict]:
    """Fig. 6: N samples per document from the SFT policy, the one a proxy prefers kept, judged by the oracle.

    Proxies: every single RM, ENS and WARM of the top M (by validation accuracy) for each M in `ms` whose
    warm/warm_M.pt merge.py wrote, and the oracle itself (the upper bound). Returns rows (proxy, n, kl_bon,
    control) and the seconds each proxy took to score the samples (ENS: the sum of its members').
    """
    n_max = cfg.rlhf.bon_n
    repeated, samples = bon_samples(run_dir, cfg, docs, enc, n_max)
    as_table = lambda xs: torch.as_tensor(xs, dtype=torch.float32).view(len(docs), n_max)
    control = as_table(reward.control_scores(enc, repeated, samples))

    def timed_scores(model):
        start = time.perf_counter()
        scores = as_table(reward.score_summaries(model, enc, repeated, samples, device=cfg.device))
        return scores, time.perf_counter() - start

    proxies, seconds = {}, {}
    for path in tqdm(rm_stage.ranked_reward_models(run_dir), desc="best-of-n: scoring", leave=False):
        name = f"RM {rm_stage.rm_index(path)}"
        proxies[name], seconds[name] = timed_scores(reward.rm_from_checkpoint(checkpoint.load(path), cfg.device))
    for m in ms:
        warm_path, ens_path = (Path(run_dir) / "warm" / f"{kind}_{m}.pt" for kind in ("warm", "ens"))
        if not (warm_path.exists() and ens_path.exists()):
            continue
        members = [f"RM {i}" for i in checkpoint.load(ens_path)["members"]]
        # what Ensemble computes, less its normaliser: a positive affine map, which changes no pick
        proxies[f"ENS M={m}"] = averaging.ensemble_rewards(torch.stack([proxies[n] for n in members]))
        seconds[f"ENS M={m}"] = sum(seconds[n] for n in members)
        proxies[f"WARM M={m}"], seconds[f"WARM M={m}"] = timed_scores(reward.rm_from_checkpoint(checkpoint.load(warm_path), cfg.device))
    proxies["oracle"] = control
    rows = [{"proxy": name, "n": n, "kl_bon": bon_kl(n), "control": c}
            for name, scores in proxies.items() for n, c in best_of_n(scores, control, bon_ns(n_max)).items()]
    return rows, seconds


def judge_policies(paths: dict[str, Path], enc, docs, temperature: float, seed: int, device: str,
                   max_new_tokens: int = lm.MAX_SUMMARY_TOKENS) -> dict[str, list[float]]:
    """Control reward of each policy checkpoint's summary of every document (one sample each, every policy
    sampled with the same seed); a checkpoint named twice (a run whose best is its last) is sampled once."""
    by_path = {}
    for path in tqdm(list(dict.fromkeys(paths.values())), desc="judging policies", leave=False):
        summaries = lm.sample_summaries(lm.load_model(path, device), enc, docs, temperature, seed=seed, device=device,
                                        max_new_tokens=max_new_tokens)
        by_path[path] = reward.control_scores(enc, docs, summaries)
    return {name: by_path[path] for name, path in paths.items()}


def win_rate_rows(control: dict[str, list[float]], matchups: list[tuple[str, str]], seed: int = 0) -> list[dict]:
    """Oracle-judged win rate of a over b, with its 95% bootstrap interval, for each matchup (a, b)."""
    rows = []
    for a, b in matchups:
        rate, low, high = win_rate(control[a], control[b], seed=seed)
        rows.append({"a": a, "b": b, "win_rate": rate, "low": low, "high": high, "docs": len(control[a])})
    return rows

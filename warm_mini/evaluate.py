"""How policies are judged: Best-of-N against the control reward (the paper's Fig. 6-7) and win rates
judged by the oracle (Fig. 9).

Everything here is a small pure function of rewards already computed (reward.score_summaries scores
summaries with any reward source); sampling summaries is the caller's job.
"""

import math

import numpy as np
import torch



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

"""report.md: the run's results as tables and figures, CSV always, PNG when matplotlib is installed.

The figures follow the paper's: LMC (Fig. 3) and accuracy by split (Fig. 4) from merge.py, Best-of-N
(Fig. 6), control reward against KL during PPO (Fig. 1b and 8), and win rates (Fig. 9).
"""

import csv
import io
import math
from pathlib import Path

import numpy as np

from warm_mini import checkpoint

# ----------------------------------------------------------------------------- tables and figures


def write_csv(rows: list[dict], path: Path) -> None:
    """Write rows (dicts with the same keys) as CSV, atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    checkpoint.atomic_write_text(path, text.getvalue())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text) if "." in text or "e" in text or text == "nan" else int(text)
    except ValueError:
        return text


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: ("-" if math.isnan(v) else f"{v:.3f}") if isinstance(v, float) else str(v)  # nan: does not apply
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows])


def pyplot():
    """matplotlib.pyplot on a file-only backend, or None when matplotlib (an optional extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path: Path, note: str = "") -> None:
    """Save as PNG; `note` (e.g. the command that made the figure) goes in small print at the bottom."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1) if note else (0, 0, 1, 1))
    if note:
        fig.text(0.01, 0.005, note, fontsize=6, color="gray")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=120, format="png")
    checkpoint.atomic_write_bytes(path, buffer.getvalue())


def line_panels(panels: dict[str, dict[str, tuple[list, list]]], xlabel: str, ylabel: str, path: Path) -> bool:
    """One subplot per panel, one line per series {name: (xs, ys)}, a series keeping its colour in every panel;
    False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    names = list(dict.fromkeys(name for series in panels.values() for name in series))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels.items()):
        for name, (xs, ys) in series.items():
            ax.plot(xs, ys, "o-" if len(xs) <= 12 else "-", ms=3, label=name, color=f"C{names.index(name) % 10}")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)
    return True


def win_rate_bars(rows: list[dict], path: Path, note: str = "") -> bool:
    """Fig. 9: one horizontal bar per matchup with its 95% interval, 0.5 (a tie) marked; False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    y = list(range(len(rows)))[::-1]
    rates = [r["win_rate"] for r in rows]
    errors = [[r["win_rate"] - r["low"] for r in rows], [r["high"] - r["win_rate"] for r in rows]]
    ax.barh(y, rates, xerr=errors, color="tab:blue", alpha=0.7, capsize=3)
    ax.axvline(0.5, color="gray", linestyle=":")
    ax.set_yticks(y, [f"{r['a']} vs {r['b']}" for r in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate judged by the control reward")
    save_figure(fig, path, note)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- PPO summaries


def smooth(values: list[float], width: int) -> list[float]:
    """Trailing moving average (the first points average what there is)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0.0)
        out.append(total / min(i + 1, width))
    return out


def control_at_kl(evals: list[dict], kl: float) -> float:
    """Control reward at a given KL, interpolated between a run's evaluations (sorted by KL)."""
    pts = sorted((r["eval/kl"], r["eval/control_reward"]) for r in evals)
    xs, ys = zip(*pts)
    return float(np.interp(kl, xs, ys)) if xs[0] <= kl <= xs[-1] else math.nan


def run_summary(name: str, train: list[dict], evals: list[dict], window: int) -> dict:
    """Peak and final control reward of a run (smoothed over `window` iterations of training rollouts), the
    proxy reward at both, and the evaluation with the best held-out control reward."""
    control = smooth([r["objective/control_reward"] for r in train], window)
    proxy = smooth([r["objective/proxy_reward"] for r in train], window)
    peak = int(np.argmax(control))
    best = max(evals, key=lambda r: r["eval/control_reward"])
    return {"run": name, "iterations": len(train), "control start": control[0], "control peak": control[peak],
            "peak at iteration": peak + 1, "control final": control[-1], "proxy at peak": proxy[peak],
            "proxy final": proxy[-1], "kl final": train[-1]["objective/kl"],
            "best eval control": best["eval/control_reward"], "best eval iteration": best["iteration"]}


def hacking_verdict(s: dict, margin: float = 0.05) -> str:
    """Reward hacking: the control reward falls from its peak while the proxy holds or keeps rising."""
    fell = s["control final"] < s["control peak"] - margin
    held = s["proxy final"] > s["proxy at peak"] - margin
    trend = (f"control {s['control start']:+.3f} -> peak {s['control peak']:+.3f} (iteration {s['peak at iteration']})"
             f" -> {s['control final']:+.3f}, proxy {s['proxy at peak']:+.3f} at the peak -> {s['proxy final']:+.3f}")
    if fell and held:
        return "hacked: " + trend
    if fell:
        return "control and proxy both fell: " + trend
    return f"no collapse within {s['iterations']} iterations: " + trend


def time_split(train: list[dict]) -> dict:
    """Mean seconds per iteration in generation, scoring (of which the reward model) and update, and the
    whole run's seconds in those phases (its held-out evaluations left out)."""
    mean = lambda k: sum(r[k] for r in train) / len(train)
    keys = ("time/generation", "time/scoring", "time/reward_model", "time/update")
    split = {k.split("/")[1]: mean(k) for k in keys}
    return {**split, "run s": len(train) * (split["generation"] + split["scoring"] + split["update"])}


# ----------------------------------------------------------------------------- report.md


def write_report(run_dir: Path, cfg, runs: dict[str, dict], bon_rows: list[dict], bon_seconds: dict,
                 win_rows: list[dict]) -> Path:
    """Write rlhf/*.csv, figures/*.png and report.md; returns report.md's path.

    runs: {name: {"train": [...], "eval": [...], "kl_coef": float}} for every PPO run.
    """
    run_dir = Path(run_dir)
    rl_dir, fig_dir = run_dir / "rlhf", run_dir / "figures"
    lines = [f"# warm-mini report: {run_dir}", "",
             f"Preset `{cfg.preset}`, seed {cfg.seed}, {cfg.rm.n_models} reward models, "
             f"{cfg.rm.corrupt:.0%} of training labels flipped. The control reward is the world's oracle "
             "(in [-1, 1]; a reference summary scores 1): no reward model trains on it.", ""]

    def figure(made: bool, path: Path, caption: str):
        if made:
            lines.extend([f"![{caption}]({path.relative_to(run_dir).as_posix()})", ""])

    # merge.py's outputs
    lines += ["## Reward models: WARM and ENS (merge.py)", ""]
    accuracy = run_dir / "warm" / "accuracy.csv"
    if accuracy.exists():
        lines += ["Pairwise accuracy by split (Fig. 4); ENS and WARM average the top M by validation accuracy:", "",
                  markdown_table(read_csv(accuracy)), ""]
    else:
        lines += ["(run merge.py to add the accuracy table)", ""]
    lmc = run_dir / "warm" / "lmc.csv"
    if lmc.exists():
        lines += ["Linear mode connectivity (Fig. 3), validation accuracy along λ: `warm/lmc.csv`", ""]
    figure((fig_dir / "lmc.png").exists(), fig_dir / "lmc.png", "LMC")

    # Best-of-N
    if bon_rows:
        write_csv(bon_rows, rl_dir / "bon.csv")
        proxies = list(dict.fromkeys(r["proxy"] for r in bon_rows))
        ns = sorted({r["n"] for r in bon_rows})
        table = [{"proxy": p, **{f"N={n}": next(r["control"] for r in bon_rows if r["proxy"] == p and r["n"] == n) for n in ns},
                  "scoring s": bon_seconds.get(p, math.nan)} for p in proxies]
        write_csv(table, rl_dir / "bon_table.csv")
        lines += ["## Best-of-N (Fig. 6)", "",
                  f"{cfg.rlhf.bon_n} SFT samples (temperature {cfg.rlhf.bon_temperature}) per test document, "
                  f"{cfg.rlhf.bon_docs} documents; the sample the proxy prefers among the first N "
                  "is kept; mean control reward. KL_BoN = log N - (N - 1)/N. The oracle row picks by the control "
                  "reward itself (the ceiling). `scoring s`: seconds to score all samples (ENS: its members' sum).", "",
                  markdown_table(table), ""]
        series = {p: ([r["kl_bon"] for r in bon_rows if r["proxy"] == p], [r["control"] for r in bon_rows if r["proxy"] == p])
                  for p in proxies}
        figure(line_panels({"Best-of-N": series}, "KL_BoN", "control reward", fig_dir / "bon.png"), fig_dir / "bon.png", "BoN")

    # PPO
    if runs:
        window = max(1, cfg.rlhf.eval_every)
        summaries = [run_summary(name, r["train"], r["eval"], window) for name, r in runs.items()]
        evals = [{"run": name, "kl_coef": r["kl_coef"], **e} for name, r in runs.items() for e in r["eval"]]
        write_csv(evals, rl_dir / "ppo_eval.csv")
        write_csv(summaries, rl_dir / "ppo_summary.csv")
        lines += ["## PPO against each reward source (Fig. 1b, 8)", "",
                  f"{cfg.ppo.iterations} iterations of {cfg.ppo.batch_size} prompts, learning rate {cfg.ppo.lr:g}. "
                  f"Training-rollout rewards are smoothed over {window} iterations; `best eval` is the held-out "
                  f"evaluation ({cfg.rlhf.eval_docs} validation documents, every {cfg.rlhf.eval_every} iterations) "
                  "with the highest control reward.", "", markdown_table(summaries), ""]
        lines += [f"- **{s['run']}**: {hacking_verdict(s)}" for s in summaries] + [""]
        top = min(max(e["eval/kl"] for e in r["eval"]) for r in runs.values())
        kls = [round(top * f, 2) for f in (0.25, 0.5, 0.75, 1.0)] if top > 0 else []
        if kls:
            matched = [{"run": name, **{f"KL={k:g}": control_at_kl(r["eval"], k) for k in kls}} for name, r in runs.items()]
            lines += ["Held-out control reward at matched KL (interpolated between evaluations):", "",
                      markdown_table(matched), ""]
        by_kl = {n: ([e["eval/kl"] for e in r["eval"]], [e["eval/control_reward"] for e in r["eval"]]) for n, r in runs.items()}
        by_it = {n: ([e["iteration"] for e in r["eval"]], [e["eval/control_reward"] for e in r["eval"]]) for n, r in runs.items()}
        proxy_it = {n: ([e["iteration"] for e in r["eval"]], [e["eval/proxy_reward"] for e in r["eval"]]) for n, r in runs.items()}
        made = line_panels({"control vs KL": by_kl}, "KL(policy || SFT)", "control reward", fig_dir / "control_vs_kl.png")
        figure(made, fig_dir / "control_vs_kl.png", "control reward against KL")
        made = (line_panels({"control reward": by_it}, "PPO iteration", "control reward (oracle)", fig_dir / "ppo_control.png")
                and line_panels({"proxy reward": proxy_it}, "PPO iteration", "proxy reward (normalised)", fig_dir / "ppo_proxy.png"))
        figure(made, fig_dir / "ppo_control.png", "control reward during PPO")
        figure(made, fig_dir / "ppo_proxy.png", "proxy reward during PPO")

        times = [{"run": name, **time_split(r["train"])} for name, r in runs.items()]
        for t in times:
            total = t["generation"] + t["scoring"] + t["update"]
            t.update({f"{k} share": f"{t[k] / total:.0%}" for k in ("generation", "scoring", "update")})
        write_csv(times, rl_dir / "ppo_time.csv")
        lines += ["Seconds per PPO iteration (reward_model is the proxy's share of scoring) and in the whole run (`run s`, "
                  "without its held-out evaluations):", "", markdown_table(times), ""]
        warm = [t["reward_model"] for t in times if t["run"].startswith("WARM")]
        ens = [t["reward_model"] for t in times if t["run"].startswith("ENS")]
        if warm and ens:
            lines += [f"ENS's reward model costs {ens[0] / warm[0]:.1f}x WARM's per iteration "
                      f"(ENS averages {cfg.rm.n_models} forward passes, WARM runs one).", ""]

    # win rates
    if win_rows:
        write_csv(win_rows, rl_dir / "win_rates.csv")
        lines += ["## Win rates (Fig. 9)", "",
                  f"Share of {win_rows[0]['docs']} test documents on which policy a's summary has a higher control "
                  "reward than policy b's (ties count half), with a 95% bootstrap interval. `final`: after the last "
                  "iteration (equal steps); `best`: each run's best held-out evaluation; "
                  f"`KL≤{cfg.rlhf.kl_budget:g}`: each run's last evaluation before its held-out KL first exceeds "
                  f"{cfg.rlhf.kl_budget:g} (equal KL).", "",
                  markdown_table(win_rows), ""]
        figure(win_rate_bars(win_rows, fig_dir / "win_rates.png"), fig_dir / "win_rates.png", "win rates")

    path = run_dir / "report.md"
    checkpoint.atomic_write_text(path, "\n".join(lines))
    return path

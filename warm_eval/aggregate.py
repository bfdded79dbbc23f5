"""Several finished runs -> results/: every figure of the paper as a mean and a spread over seeds.

Each run directory (train_rm.py and merge.py finished, rlhf.py too for the RL tables) is one seed of one
setting: clean labels, or a share of flipped training labels; a run without rlhf.py's files counts in the
reward-model tables only. Runs pick their own best single RM (by validation accuracy), so
"RM <i>" becomes "best RM" before seeds are lined up. Every number is a mean over seeds with its sample
standard deviation (sd) and the number of seeds (n); plots draw the mean and shade one sd.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from warm_eval import report, reward_models
from warm_eval.policies import bon_kl
from warm_mini import checkpoint

RM_NEEDED = ("config.json", "warm/summary.json", "warm/accuracy.csv", "warm/lmc.csv")  # train_rm.py and merge.py
NEEDED = RM_NEEDED + ("rlhf/bon.csv", "rlhf/ppo_eval.csv", "rlhf/win_rates.csv")


@dataclass
class Run:
    """One finished run directory and what aggregation needs to know about it."""

    path: Path
    seed: int
    setting: str  # "clean" or e.g. "25% corrupted"
    best_rm: int  # the single RM the run ranked first (rlhf.py's rm:best)

    @property
    def has_rl(self) -> bool:
        """rlhf.py finished here: the run counts in the Best-of-N, PPO, win-rate and cost tables."""
        return all((self.path / f).exists() for f in NEEDED)

    @classmethod
    def load(cls, path, needed=NEEDED) -> "Run":
        path = Path(path)
        missing = [f for f in needed if not (path / f).exists()]
        if missing:
            raise FileNotFoundError(f"{path} is not a finished run (missing {', '.join(missing)}); "
                                    f"run train_rm.py, merge.py and rlhf.py with --run-dir {path}")
        cfg = json.loads((path / "config.json").read_text())
        corrupt = cfg["rm"]["corrupt"]
        setting = "clean" if corrupt == 0 else f"{corrupt:.0%} corrupted"
        ranked = json.loads((path / "warm" / "summary.json").read_text())["ranked"]
        return cls(path, cfg["seed"], setting, ranked[0])

    def rows(self, name: str) -> list[dict]:
        """A CSV of the run, with its best single RM renamed "best RM"."""
        best = re.compile(rf"^RM {self.best_rm}\b")
        return [{k: best.sub("best RM", v) if isinstance(v, str) else v for k, v in row.items()}
                for row in report.read_csv(self.path / name)]


def stats(values) -> dict:
    """Mean, sample standard deviation and count of the finite values (nan when there are none)."""
    xs = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    return {"mean": xs.mean() if len(xs) else math.nan, "sd": xs.std(ddof=1) if len(xs) > 1 else math.nan, "n": len(xs)}


def fmt(s: dict) -> str:
    """"0.612 ± 0.015" (mean ± sd over seeds), or just the mean when there is one seed."""
    if s["n"] == 0:
        return "-"
    return f"{s['mean']:.3f}" + (f" ± {s['sd']:.3f}" if s["n"] > 1 else "")


def by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    out = {}
    for run in sorted(runs, key=lambda r: (r.setting != "clean", r.setting, r.seed)):
        out.setdefault(run.setting, []).append(run)
    return out


# ----------------------------------------------------------------------------- the figures


def accuracy(runs: list[Run]) -> list[dict]:
    """Fig. 4: pairwise accuracy by split of the best RM, the mean RM, and ENS and WARM for each M."""
    out = []
    for setting, group in by_setting(runs).items():
        tables = {}  # model -> split -> [value per seed]
        for run in group:
            rows = run.rows("warm/accuracy.csv")
            singles = [r for r in rows if r["model"].startswith(("RM ", "best RM"))]
            columns = [c for c in reward_models.COLUMNS if c in rows[0]]  # a clean run has no flipped-label column
            mean_rm = {"model": "mean RM", **{c: float(np.mean([r[c] for r in singles])) for c in columns}}
            for row in [mean_rm] + [r for r in rows if not r["model"].startswith("RM ")]:
                for column in columns:
                    tables.setdefault(row["model"], {}).setdefault(column, []).append(row[column])
        for model in sorted(tables, key=_model_order):
            out += [{"setting": setting, "model": model, "split": column, **stats(values)} for column, values in tables[model].items()]
    return out


def lmc(runs: list[Run]) -> list[dict]:
    """Fig. 3: validation accuracy of WA and ENS along λ for each pair, with the diagonal between the WA endpoints."""
    out = []
    for setting, group in by_setting(runs).items():
        curves = {}  # (pair, λ) -> {"WA": [...], "ENS": [...], "diagonal": [...]}, one value per seed
        for run in group:
            rows = run.rows("warm/lmc.csv")
            per_pair = {}
            for pair in dict.fromkeys(r["pair"] for r in rows):
                pts = {r["lambda"]: r for r in rows if r["pair"] == pair}
                per_pair[pair] = {lam: {"WA": r["WA"], "ENS": r["ENS"], "diagonal": reward_models.diagonal(pts, lam)}
                                  for lam, r in pts.items()}
            # the seed's mean over pairs, so that its spread is over seeds too
            per_pair["mean of pairs"] = {lam: {k: float(np.mean([p[lam][k] for p in per_pair.values()])) for k in ("WA", "ENS", "diagonal")}
                                         for lam in next(iter(per_pair.values()))}
            for pair, pts in per_pair.items():
                for lam, values in pts.items():
                    cell = curves.setdefault((pair, lam), {"WA": [], "ENS": [], "diagonal": []})
                    for key, value in values.items():
                        cell[key].append(value)
        for (pair, lam), cell in curves.items():
            row = {"setting": setting, "pair": pair, "lambda": lam}
            for key, values in cell.items():
                s = stats(values)
                row.update({f"{key} mean": s["mean"], f"{key} sd": s["sd"]})
            gap = stats([w - d for w, d in zip(cell["WA"], cell["diagonal"])])
            out.append({**row, "WA - diagonal mean": gap["mean"], "WA - diagonal sd": gap["sd"], "n": gap["n"]})
    return out


def best_of_n(runs: list[Run]) -> list[dict]:
    """Fig. 6: control reward of the Best-of-N pick against KL_BoN for the best RM, the mean RM, ENS, WARM and the
    oracle. mean/sd/n are of the gain over N = 1 (plain sampling) within each seed, since seeds' SFT policies
    differ far more than proxies do; `control` is the mean control reward itself."""
    out = []
    for setting, group in by_setting(runs).items():
        curves = {}  # (proxy, n) -> [(control, gain over N=1) per seed]
        for run in group:
            rows = run.rows("rlhf/bon.csv")
            ns = sorted({r["n"] for r in rows})
            table = {(r["proxy"], r["n"]): r["control"] for r in rows}
            singles = [p for p in dict.fromkeys(r["proxy"] for r in rows) if p.startswith(("RM ", "best RM"))]
            for n in ns:
                table[("mean RM", n)] = float(np.mean([table[(p, n)] for p in singles]))
            for (proxy, n), control in table.items():
                if not proxy.startswith("RM "):
                    curves.setdefault((proxy, n), []).append((control, control - table[(proxy, ns[0])]))
        for (proxy, n) in sorted(curves, key=lambda k: (_model_order(k[0]), k[1])):
            controls, gains = zip(*curves[(proxy, n)])
            out.append({"setting": setting, "proxy": proxy, "N": n, "kl_bon": bon_kl(n),
                        "control": float(np.mean(controls)), **stats(gains)})
    return out


def control_vs_kl(runs: list[Run], step: float = 0.25) -> tuple[list[dict], list[dict]]:
    """Fig. 8: held-out control reward of each PPO run against its KL to SFT.

    Returns (curve, summary). curve: each seed's control reward minus its SFT policy's (iteration 0),
    interpolated at KL 0, step, 2 step, ... up to the KL that every seed reached. summary per source: the
    best held-out evaluation (control and KL there) and the last one.
    """
    curve, summary = [], []
    for setting, group in by_setting(runs).items():
        evals = _ppo_evals(group)
        for source in sorted(evals, key=_model_order):
            seeds = evals[source]
            reached = min(max(r["eval/kl"] for r in rows) for rows in seeds)
            for kl in (i * step for i in range(int(reached / step) + 1)):
                gains = (report.control_at_kl(rows, kl) - rows[0]["eval/control_reward"] for rows in seeds)
                curve.append({"setting": setting, "source": source, "kl": kl, **stats(gains)})
            best = [max(rows, key=lambda r: r["eval/control_reward"]) for rows in seeds]
            summary.append({"setting": setting, "source": source, "n": len(seeds),
                            "best control": fmt(stats(r["eval/control_reward"] for r in best)),
                            "KL at best": fmt(stats(r["eval/kl"] for r in best)),
                            "final control": fmt(stats(rows[-1]["eval/control_reward"] for rows in seeds)),
                            "final KL": fmt(stats(rows[-1]["eval/kl"] for rows in seeds)),
                            "start control": fmt(stats(rows[0]["eval/control_reward"] for rows in seeds))})
    return curve, summary


def control_vs_iteration(runs: list[Run]) -> list[dict]:
    """Fig. 1b: held-out control reward minus the SFT policy's at each evaluation, against PPO iterations."""
    curve = []
    for setting, group in by_setting(runs).items():
        evals = _ppo_evals(group)
        for source in sorted(evals, key=_model_order):
            gains = [{r["iteration"]: r["eval/control_reward"] - rows[0]["eval/control_reward"] for r in rows} for rows in evals[source]]
            for iteration in sorted(set.intersection(*(set(g) for g in gains))):  # the iterations every seed evaluated
                curve.append({"setting": setting, "source": source, "iteration": iteration, **stats(g[iteration] for g in gains)})
    return curve


def _ppo_evals(group: list[Run]) -> dict[str, list[list[dict]]]:
    """{source: [each seed's held-out evaluations, by iteration]} of one setting's runs."""
    evals = {}
    for run in group:
        rows = run.rows("rlhf/ppo_eval.csv")
        for source in dict.fromkeys(r["run"] for r in rows):
            evals.setdefault(source, []).append(sorted((r for r in rows if r["run"] == source), key=lambda r: r["iteration"]))
    return evals


def win_rates(runs: list[Run]) -> list[dict]:
    """Fig. 9: oracle-judged win rates, each matchup's mean and sd over seeds, and every seed's value."""
    out = []
    for setting, group in by_setting(runs).items():
        rates = {}  # (a, b) -> [win rate per seed]
        for run in group:
            for r in run.rows("rlhf/win_rates.csv"):
                rates.setdefault((r["a"], r["b"]), []).append(r["win_rate"])
        for (a, b), values in rates.items():
            out.append({"setting": setting, "a": a, "b": b, **stats(values), "min": min(values), "max": max(values),
                        "per seed": " ".join(f"{v:.3f}" for v in values)})
    return out


def cost(runs: list[Run]) -> list[dict]:
    """What each reward source costs: seconds per PPO iteration (all of it, and its reward model's share), the
    whole PPO run (without evaluations), and scoring the Best-of-N samples. Runs older than these files are skipped."""
    seconds = {}  # (setting, source) -> {column: [value per seed]}
    for run in runs:
        if (run.path / "rlhf" / "ppo_time.csv").exists():
            for r in run.rows("rlhf/ppo_time.csv"):
                cell = seconds.setdefault((run.setting, r["run"]), {})
                for column, value in (("PPO s per iteration", r["generation"] + r["scoring"] + r["update"]),
                                      ("reward model s per iteration", r["reward_model"]), ("PPO run s", r["run s"])):
                    cell.setdefault(column, []).append(value)
        if (run.path / "rlhf" / "bon_table.csv").exists():
            for r in run.rows("rlhf/bon_table.csv"):
                if math.isfinite(r["scoring s"]):
                    seconds.setdefault((run.setting, r["proxy"]), {}).setdefault("Best-of-N scoring s", []).append(r["scoring s"])
    columns = ("PPO s per iteration", "reward model s per iteration", "PPO run s", "Best-of-N scoring s")
    return [{"setting": setting, "source": source, **{c: fmt(stats(cell.get(c, []))) for c in columns}}
            for (setting, source), cell in sorted(seconds.items(), key=lambda kv: (kv[0][0] != "clean", _model_order(kv[0][1])))]


def _lmc_gap(row: dict | None, key: str = "WA - diagonal") -> dict:
    """The stats of one quantity of an lmc() row."""
    return {"mean": row[f"{key} mean"], "sd": row[f"{key} sd"], "n": row["n"]} if row else {"n": 0}


def _model_order(name: str) -> tuple:
    """best RM, mean RM, then ENS and WARM by M (ENS before WARM), the oracle last."""
    kinds = ["best RM", "mean RM", "ENS", "WARM", "oracle"]
    kind = next((i for i, k in enumerate(kinds) if name.startswith(k)), len(kinds))
    m = re.search(r"M=(\d+)", name)
    return (kind // 2, int(m.group(1)) if m else 0, kind, name)  # (singles, averages by M, oracle), M, kind


# ----------------------------------------------------------------------------- figures


def _band(ax, xs, rows, label, style="-"):
    """Plot the mean over seeds and shade one sd around it."""
    mean = np.array([r["mean"] for r in rows], dtype=float)
    sd = np.nan_to_num(np.array([r["sd"] for r in rows], dtype=float))
    line, = ax.plot(xs, mean, style, marker="o", ms=3, label=label)
    ax.fill_between(xs, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)


def _panels(n: int, rows: int = 1, width: float = 4.2, height: float = 3.2):
    plt = report.pyplot()
    fig, axes = plt.subplots(rows, n, figsize=(width * n, height * rows + 0.3), squeeze=False)
    return plt, fig, axes


def plot_all(out_dir: Path, tables: dict, note: str) -> list[Path]:
    """The figures as PNGs in out_dir; none without matplotlib."""
    if report.pyplot() is None:
        return []
    paths = []

    def done(plt, fig, name):
        report.save_figure(fig, out_dir / name, note)
        plt.close(fig)
        paths.append(out_dir / name)

    settings = list(dict.fromkeys(r["setting"] for r in tables["lmc"]))
    pairs = list(dict.fromkeys(r["pair"] for r in tables["lmc"]))
    plt, fig, axes = _panels(len(pairs), len(settings), width=3.2)
    for i, setting in enumerate(settings):
        for j, pair in enumerate(pairs):
            rows = [r for r in tables["lmc"] if r["setting"] == setting and r["pair"] == pair]
            ax, lams = axes[i][j], [r["lambda"] for r in rows]
            for key, style in (("WA", "-"), ("ENS", "--")):
                _band(ax, lams, [{"mean": r[f"{key} mean"], "sd": r[f"{key} sd"]} for r in rows], key, style)
            ax.plot(lams, [r["diagonal mean"] for r in rows], ":", color="gray", label="diagonal")
            ax.set_title(f"{pair} ({setting})", fontsize=9)
            ax.set_xlabel("λ")
        axes[i][0].set_ylabel("validation accuracy")
    axes[0][0].legend(fontsize=7)
    done(plt, fig, "lmc.png")

    acc = tables["accuracy"]
    settings = list(dict.fromkeys(r["setting"] for r in acc))
    plt, fig, axes = _panels(len(settings), width=6)
    for ax, setting in zip(axes[0], settings):
        models = [m for m in dict.fromkeys(r["model"] for r in acc if r["setting"] == setting) if m != "mean RM"]
        splits = [c for c in reward_models.COLUMNS if any(r["split"] == c and r["setting"] == setting and r["n"] for r in acc)]
        for k, model in enumerate(models):
            rows = {r["split"]: r for r in acc if r["setting"] == setting and r["model"] == model}
            xs = np.arange(len(splits)) + (k - (len(models) - 1) / 2) * 0.8 / len(models)
            ax.bar(xs, [rows[c]["mean"] for c in splits], 0.8 / len(models), yerr=np.nan_to_num([rows[c]["sd"] for c in splits]),
                   capsize=2, label=model)
        ax.set_xticks(range(len(splits)), [c.replace(" (", "\n(") for c in splits], fontsize=7)
        ax.axhline(0.5, color="gray", linestyle=":")
        ax.set_title(setting)
        ax.set_ylabel("pairwise accuracy")
    axes[0][0].legend(fontsize=7)
    done(plt, fig, "accuracy.png")

    for name, table, x, xlabel, key, ylabel in (
            ("bon.png", tables["bon"], "kl_bon", "KL_BoN = log N - (N-1)/N", "proxy", "control reward gain over N = 1"),
            ("control_vs_kl.png", tables["control_vs_kl"], "kl", "KL(policy || SFT)", "source", "control reward minus SFT's"),
            ("control_vs_iteration.png", tables["control_vs_iteration"], "iteration", "PPO iteration", "source",
             "control reward minus SFT's")):
        settings = list(dict.fromkeys(r["setting"] for r in table))
        if not settings:  # no run finished rlhf.py
            continue
        plt, fig, axes = _panels(len(settings))
        for ax, setting in zip(axes[0], settings):
            for source in dict.fromkeys(r[key] for r in table if r["setting"] == setting):
                rows = [r for r in table if r["setting"] == setting and r[key] == source and r["n"]]
                _band(ax, [r[x] for r in rows], rows, source)
            ax.set_title(setting)
            ax.set_xlabel(xlabel)
            ax.axhline(0, color="gray", linestyle=":")
            ax.set_ylabel(ylabel)
        axes[0][0].legend(fontsize=7)
        done(plt, fig, name)

    bars = [{"a": r["a"], "b": f"{r['b']} ({r['setting']})", "win_rate": r["mean"], "low": r["min"], "high": r["max"]}
            for r in tables["win_rates"]]
    if bars and report.win_rate_bars(bars, out_dir / "win_rates.png", note):
        paths.append(out_dir / "win_rates.png")
    return paths


# ----------------------------------------------------------------------------- results/


def pivot(rows: list[dict], index: list[str], column: str) -> list[dict]:
    """One row per `index` value, one column per `column` value, each cell "mean ± sd"."""
    out, columns = {}, {}
    for r in rows:
        key, name = tuple(r[k] for k in index), r[column] if isinstance(r[column], str) else f"{column}={r[column]:g}"
        out.setdefault(key, dict(zip(index, key)))[name] = fmt(r)
        columns[name] = None
    return [{**dict.fromkeys(index), **dict.fromkeys(columns, "-"), **row} for row in out.values()]


def write_results(run_paths: list, out_dir: Path, command: str) -> Path:
    """Aggregate the runs into out_dir: one CSV per figure, PNGs, and README.md; returns README.md's path."""
    runs = [Run.load(p, RM_NEEDED) for p in run_paths]
    rl_runs = [r for r in runs if r.has_rl]
    out_dir = Path(out_dir)
    curve, ppo_summary = control_vs_kl(rl_runs)
    tables = {"accuracy": accuracy(runs), "lmc": lmc(runs), "bon": best_of_n(rl_runs), "control_vs_kl": curve,
              "control_vs_iteration": control_vs_iteration(rl_runs), "ppo_summary": ppo_summary, "win_rates": win_rates(rl_runs),
              "cost": cost(rl_runs)}
    for name, rows in tables.items():
        if rows:  # cost needs files that older runs lack
            report.write_csv(rows, out_dir / f"{name}.csv")
    figures = plot_all(out_dir, tables, f"made by: {command}")

    groups = by_setting(runs)
    lines = ["# warm-mini: results over seeds", "",
             f"Made by `{command}` from {len(runs)} runs: "
             + "; ".join(f"{s}: seeds {', '.join(str(r.seed) for r in g)} (RL: {', '.join(str(r.seed) for r in g if r.has_rl) or 'none'})"
                         for s, g in groups.items())
             + ". Every cell is the mean over seeds ± the sample standard deviation; figures shade one sd. "
             "Every file here (CSV, PNG, this page) was written by that command.", "",
             "## Headline: ours against the paper", "", report.markdown_table(headline(runs)), ""]

    def section(title, text, table, figure=None):
        lines.extend([f"## {title}", "", text, "", report.markdown_table(table), ""])
        if figure and out_dir / figure in figures:
            lines.extend([f"![{title}]({figure})", ""])

    lmc_mid = [r for r in tables["lmc"] if r["lambda"] == 0.5]
    section("Linear mode connectivity (Fig. 3): `lmc.csv`",
            "Validation accuracy at λ = 0.5 of the weight average (WA) and of the ensemble (ENS) of two RMs, and how far WA "
            "lies above the straight line between the two end accuracies (the paper: above it).",
            [{"setting": r["setting"], "pair": r["pair"], "WA at 0.5": fmt(_lmc_gap(r, "WA")),
              "ENS at 0.5": fmt(_lmc_gap(r, "ENS")), "WA - diagonal": fmt(_lmc_gap(r))} for r in lmc_mid],
            "lmc.png")
    section("Accuracy by split (Fig. 4): `accuracy.csv`",
            "Pairwise accuracy; `train (corrupted labels)` is the agreement with the flipped labels (memorisation: lower is "
            "better), the other columns agreement with the clean labels. ENS and WARM average the top M RMs.",
            pivot(tables["accuracy"], ["setting", "model"], "split"), "accuracy.png")
    section("Best-of-N (Fig. 6): `bon.csv`",
            "How much the control reward of the sample each proxy picks among N SFT samples per test document gains over "
            "N = 1 (plain sampling), within each seed; the oracle row picks by the control reward itself (the ceiling). "
            "`mean RM` averages the single RMs' curves; `control` in `bon.csv` is the level itself.",
            pivot(tables["bon"], ["setting", "proxy"], "N"), "bon.png")
    section("PPO: control reward against KL (Fig. 8): `control_vs_kl.csv`, `ppo_summary.csv`",
            "Held-out control reward (validation documents) at each evaluation; `start` is the SFT policy's. `best`: each "
            "seed's best evaluation; `final`: its last. The figure plots each seed's control minus its SFT policy's, "
            "interpolated at matched KL, up to the KL every seed reached.",
            tables["ppo_summary"], "control_vs_kl.png")
    if "control_vs_iteration.png" in {p.name for p in figures}:
        lines.extend(["The same evaluations against PPO iterations (Fig. 1b: does the control reward rise, then collapse?), "
                      "`control_vs_iteration.csv`:", "", "![control reward against PPO iterations](control_vs_iteration.png)", ""])
    section("Win rates (Fig. 9): `win_rates.csv`",
            "Share of test documents on which a's summary beats b's by the control reward (ties half), mean ± sd over seeds; "
            "`final`: after the last PPO iteration (equal steps), `best`: at each run's best evaluation, `KL≤b`: at each run's "
            "last evaluation before its held-out KL first exceeds b (equal KL). Whiskers in the figure: the lowest and highest seed.",
            [{"setting": r["setting"], "a": r["a"], "b": r["b"], "win rate": fmt(r), "per seed": r["per seed"]}
             for r in tables["win_rates"]],
            "win_rates.png")
    if tables["cost"]:
        section("Cost: `cost.csv`",
                "Seconds per PPO iteration (all of it, and the reward model's share of scoring), for the whole PPO run (its "
                "held-out evaluations left out), and to score every Best-of-N sample (ENS: its members' sum). ENS pays M "
                "forward passes, WARM one.", tables["cost"])
    path = out_dir / "README.md"
    checkpoint.atomic_write_text(path, "\n".join(lines))
    return path


def claims(run: Run) -> dict[tuple[str, str], float]:
    """The paper's claims measured on one run, as {(claim, the paper's finding): number}.

    Comparisons are differences within the run (paired by seed), so that what moves a whole seed (a weaker
    SFT policy, say) cancels. M is the largest average the run made (all its RMs). The RL claims need rlhf.py.
    """
    acc = {r["model"]: r for r in run.rows("warm/accuracy.csv")}
    m = max(int(k.split("=")[1]) for k in acc if k.startswith("WARM M="))
    warm, ens = f"WARM M={m}", f"ENS M={m}"
    lmc_rows = run.rows("warm/lmc.csv")
    gaps = []
    for pair in dict.fromkeys(r["pair"] for r in lmc_rows):
        pts = {r["lambda"]: r for r in lmc_rows if r["pair"] == pair}
        gaps.append(pts[0.5]["WA"] - reward_models.diagonal(pts, 0.5))
    flipped = "train (corrupted labels)"
    singles = [r[flipped] for name, r in acc.items() if name.startswith(("RM ", "best RM")) and flipped in r]
    out = {("LMC: WA minus the diagonal at λ = 0.5, mean of the pairs", "> 0"): float(np.mean(gaps)),
           ("memorisation: mean single RM's agreement with the flipped labels", "high: they memorise"):
               float(np.mean(singles)) if singles else math.nan}
    for k in sorted({2, m}):
        out[(f"memorisation: agreement with the flipped labels, WARM M={k} minus ENS M={k}", "< 0, far")] = \
            acc[f"WARM M={k}"].get(flipped, math.nan) - acc[f"ENS M={k}"].get(flipped, math.nan)
    out[(f"OOD accuracy: {warm} minus {ens}", "≥ 0")] = acc[warm]["ood"] - acc[ens]["ood"]
    out[(f"OOD accuracy: {warm} minus best RM", "> 0")] = acc[warm]["ood"] - acc["best RM"]["ood"]
    if not run.has_rl:
        return out

    bon = run.rows("rlhf/bon.csv")
    n_max = max(r["n"] for r in bon)
    at_n = {r["proxy"]: r["control"] for r in bon if r["n"] == n_max}
    out[(f"Best-of-{n_max} control: {warm} minus best RM", "> 0")] = at_n.get(warm, math.nan) - at_n["best RM"]
    out[(f"Best-of-{n_max} control: {warm} minus {ens}", "> 0")] = at_n.get(warm, math.nan) - at_n.get(ens, math.nan)
    evals = {source: seeds[0] for source, seeds in _ppo_evals([run]).items()}  # this run's one "seed"
    for source in dict.fromkeys((warm, "WARM M=2", ens, "best RM", "oracle")):
        rows = evals.get(source, [])
        if rows:  # iteration 0 is the SFT policy
            best, final = ("> 0, WARM highest", "WARM holds up longest") if source != "oracle" else ("the upper bound",) * 2
            out[(f"PPO, {source}: best held-out control minus SFT's", best)] = \
                max(r["eval/control_reward"] for r in rows) - rows[0]["eval/control_reward"]
            out[(f"PPO, {source}: final held-out control minus SFT's", final)] = \
                rows[-1]["eval/control_reward"] - rows[0]["eval/control_reward"]
    wins = {}
    for r in run.rows("rlhf/win_rates.csv"):  # a over b, and b over a (ties count half, so it is the complement)
        wins[(r["a"], r["b"])], wins[(r["b"], r["a"])] = r["win_rate"], 1 - r["win_rate"]
    budgets = sorted({a.rsplit(" ", 1)[1] for a, _ in wins if a.startswith(warm) and "KL≤" in a})
    for when in ["final", *budgets]:
        for a, b, paper in ((f"{warm} {when}", f"best RM {when}", "0.794"), (f"{warm} {when}", "SFT", "0.998"),
                            (f"best RM {when}", "SFT", "0.985"), (f"{warm} {when}", f"{ens} {when}", "> 0.5")):
            out[(f"win rate: {a} vs {b}", paper)] = wins.get((a, b), math.nan)
    out[(f"win rate: {warm} best vs best RM best", "")] = wins.get((f"{warm} best", "best RM best"), math.nan)
    return out


def headline(runs: list[Run]) -> list[dict]:
    """One row per claim: the paper's finding beside ours, mean ± sd over seeds in each setting ("-": not measured)."""
    per_setting = {setting: [claims(r) for r in group] for setting, group in by_setting(runs).items()}
    keys = list(dict.fromkeys(k for measured in per_setting.values() for c in measured for k in c))

    def cell(values: list, seeds: int) -> str:
        s = stats(values)
        return fmt(s) + (f" (n={s['n']})" if 0 < s["n"] < seeds else "")

    return [{"claim": claim, "paper": paper, **{setting: cell([c.get((claim, paper)) for c in measured], len(measured))
                                                 for setting, measured in per_setting.items()}}
            for claim, paper in keys]

"""scripts/aggregate.py's arithmetic: seeds line up by role (the best RM of each run), mean and sd are right,
and every file of results/ is written; on small hand-made run directories."""

import json
import math

import pytest

from warm_eval import aggregate, report

SPLITS = ["train (corrupted labels)", "train (clean labels)", "val", "test", "ood"]


def fake_run(path, seed: int, corrupt: float, best: int, x: float):
    """A finished run's files; `x` shifts every number so that seeds differ. RM `best` ranks first."""
    (path / "warm").mkdir(parents=True)
    (path / "rlhf").mkdir()
    (path / "config.json").write_text(json.dumps({"seed": seed, "rm": {"corrupt": corrupt}}))
    (path / "warm" / "summary.json").write_text(json.dumps({"ranked": [best, 1 - best]}))
    acc = {"RM 0": 0.60, "RM 1": 0.50, "ENS M=2": 0.55, "WARM M=2": 0.58}
    splits = SPLITS if corrupt else SPLITS[1:]  # merge.py leaves the flipped-label column out of a clean run
    report.write_csv([{"model": m, **{s: a + x for s in splits}} for m, a in acc.items()], path / "warm" / "accuracy.csv")
    report.write_csv([{"pair": "data order", "lambda": lam, "WA": 0.5 + x + 0.1 * (lam == 0.5), "ENS": 0.5 + x}
                      for lam in (0.0, 0.5, 1.0)], path / "warm" / "lmc.csv")
    report.write_csv([{"proxy": p, "n": n, "kl_bon": 0.0, "control": c + x * n}
                      for p, c in (("RM 0", 0.3), ("RM 1", 0.1), ("ENS M=2", 0.2), ("WARM M=2", 0.25), ("oracle", 0.9))
                      for n in (1, 2)], path / "rlhf" / "bon.csv")
    report.write_csv([{"run": r, "kl_coef": 0.02, "iteration": it, "eval/control_reward": c + x, "eval/proxy_reward": 0.0, "eval/kl": kl}
                      for r in (f"RM {best}", "WARM M=2") for it, kl, c in ((0, 0.0, 0.6), (5, 2.0, 0.7), (10, 4.0, 0.4))],
                     path / "rlhf" / "ppo_eval.csv")
    report.write_csv([{"a": "WARM M=2 final", "b": f"RM {best} final", "win_rate": 0.5 + x, "low": 0.4, "high": 0.6, "docs": 10},
                      {"a": "WARM M=2 final", "b": "SFT", "win_rate": 0.6 + x, "low": 0.5, "high": 0.7, "docs": 10},
                      {"a": f"RM {best} KL≤1", "b": "WARM M=2 KL≤1", "win_rate": 0.3 + x, "low": 0.2, "high": 0.4, "docs": 10}],
                     path / "rlhf" / "win_rates.csv")
    return path


def add_costs(path, x: float):
    """The cost files rlhf.py writes since they were added (older runs lack them)."""
    report.write_csv([{"run": r, "generation": 1.0 + x, "scoring": 0.5, "reward_model": rm, "update": 2.5, "run s": 40.0 + x}
                      for r, rm in (("RM 0", 0.1), ("WARM M=2", 0.1 + x))], path / "rlhf" / "ppo_time.csv")
    report.write_csv([{"proxy": p, "N=1": 0.0, "scoring s": s + x}
                      for p, s in (("RM 0", 9.0), ("ENS M=2", 18.0), ("oracle", float("nan")))],
                     path / "rlhf" / "bon_table.csv")


@pytest.fixture
def runs(tmp_path):
    # the two clean seeds rank different RMs first; the best RM's numbers follow the role, not the index
    return [fake_run(tmp_path / "s0", 0, 0.0, best=0, x=0.0), fake_run(tmp_path / "s1", 1, 0.0, best=1, x=0.02),
            fake_run(tmp_path / "c0", 0, 0.25, best=0, x=0.0)]


def test_seeds_line_up_by_role_with_mean_and_sd(runs):
    loaded = [aggregate.Run.load(p) for p in runs]
    assert [r.setting for r in loaded] == ["clean", "clean", "25% corrupted"]
    acc = {(r["setting"], r["model"], r["split"]): r for r in aggregate.accuracy(loaded)}
    best = acc[("clean", "best RM", "val")]
    assert best["n"] == 2 and best["mean"] == pytest.approx((0.60 + 0.52) / 2)  # seed 0's RM 0, seed 1's RM 1
    assert best["sd"] == pytest.approx(math.sqrt(2) * 0.04)  # sample sd of two values: |a - b| / sqrt(2)
    assert acc[("clean", "mean RM", "val")]["mean"] == pytest.approx((0.55 + 0.57) / 2)
    assert ("clean", "WARM M=2", SPLITS[0]) not in acc and acc[("25% corrupted", "WARM M=2", SPLITS[0])]["n"] == 1
    assert acc[("25% corrupted", "WARM M=2", "val")]["n"] == 1 and math.isnan(acc[("25% corrupted", "WARM M=2", "val")]["sd"])

    lmc = {(r["setting"], r["pair"], r["lambda"]): r for r in aggregate.lmc(loaded)}
    assert lmc[("clean", "data order", 0.5)]["WA - diagonal mean"] == pytest.approx(0.1)
    assert lmc[("clean", "mean of pairs", 0.5)]["WA - diagonal mean"] == pytest.approx(0.1)

    bon = {(r["setting"], r["proxy"], r["N"]): r for r in aggregate.best_of_n(loaded)}
    assert bon[("clean", "best RM", 2)]["control"] == pytest.approx((0.3 + 0.1 + 0.04) / 2)
    assert bon[("clean", "best RM", 2)]["mean"] == pytest.approx((0.0 + 0.02) / 2)  # the gain over N = 1, per seed
    assert bon[("clean", "mean RM", 1)]["control"] == pytest.approx((0.2 + 0.22) / 2)

    curve, summary = aggregate.control_vs_kl(loaded)
    at = {(r["setting"], r["source"], r["kl"]): r for r in curve}
    assert at[("clean", "best RM", 1.0)]["mean"] == pytest.approx(0.05)  # halfway to KL 2, minus SFT's control
    assert {r["source"] for r in summary} == {"best RM", "WARM M=2"}
    rise_and_fall = [(r["iteration"], r["mean"]) for r in aggregate.control_vs_iteration(loaded)
                     if r["setting"] == "clean" and r["source"] == "best RM"]
    assert rise_and_fall == [(0, 0.0), (5, pytest.approx(0.1)), (10, pytest.approx(-0.2))]  # minus each seed's start

    wins = {(r["setting"], r["a"], r["b"]): r for r in aggregate.win_rates(loaded)}
    assert wins[("clean", "WARM M=2 final", "best RM final")]["per seed"] == "0.500 0.520"

    # The headline's claims are differences within a run: seed 1's WARM against its own best RM (RM 1).
    claims = {claim: v for (claim, _), v in aggregate.claims(loaded[1]).items()}
    assert claims["OOD accuracy: WARM M=2 minus best RM"] == pytest.approx(0.58 - 0.50)
    assert claims["PPO, best RM: best held-out control minus SFT's"] == pytest.approx(0.7 - 0.6)
    assert claims["PPO, WARM M=2: final held-out control minus SFT's"] == pytest.approx(0.4 - 0.6)
    # a win rate recorded the other way round is read as its complement (ties count half)
    assert claims["win rate: WARM M=2 KL≤1 vs best RM KL≤1"] == pytest.approx(1 - 0.32)
    assert math.isnan(claims["win rate: best RM KL≤1 vs SFT"])


def test_cost_is_averaged_over_the_runs_that_have_it(runs):
    add_costs(runs[0], 0.0)
    add_costs(runs[1], 0.2)  # seed 1 ranks RM 1 first, so its "RM 0" stays RM 0
    cost = {(r["setting"], r["source"]): r for r in aggregate.cost([aggregate.Run.load(p) for p in runs])}
    assert cost[("clean", "WARM M=2")]["PPO s per iteration"] == "4.100 ± 0.141"  # (4.0 + 4.2) / 2, sd 0.2 / sqrt(2)
    assert cost[("clean", "best RM")]["PPO run s"] == "40.000" and cost[("clean", "RM 0")]["Best-of-N scoring s"] == "9.200"
    assert cost[("clean", "ENS M=2")]["Best-of-N scoring s"] == "18.100 ± 0.141"
    assert ("clean", "oracle") not in cost and ("25% corrupted", "WARM M=2") not in cost  # no time, no row


def test_results_are_written_with_the_command_that_made_them(runs, tmp_path):
    out = tmp_path / "results"
    readme = aggregate.write_results(runs, out, "python scripts/aggregate.py s0 s1 c0")
    text = readme.read_text()
    assert "python scripts/aggregate.py s0 s1 c0" in text and "## Headline: ours against the paper" in text
    for name in ("accuracy", "lmc", "bon", "control_vs_kl", "control_vs_iteration", "ppo_summary", "win_rates"):
        assert report.read_csv(out / f"{name}.csv"), name
    if report.pyplot() is not None:
        for name in ("accuracy", "lmc", "bon", "control_vs_kl", "control_vs_iteration", "win_rates"):
            assert (out / f"{name}.png").exists() and f"]({name}.png)" in text, name


def test_an_unfinished_run_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        aggregate.Run.load(tmp_path / "run")


def test_a_run_without_rlhf_counts_in_the_reward_model_tables_only(runs, tmp_path):
    (runs[1] / "rlhf" / "bon.csv").unlink()
    loaded = [aggregate.Run.load(p, aggregate.RM_NEEDED) for p in runs]
    assert [r.has_rl for r in loaded] == [True, False, True]
    assert {r["n"] for r in aggregate.accuracy(loaded) if r["setting"] == "clean"} == {2}
    assert {r["n"] for r in aggregate.best_of_n([r for r in loaded if r.has_rl]) if r["setting"] == "clean"} == {1}
    assert not any(claim.startswith(("PPO", "win rate", "Best-of")) for claim, _ in aggregate.claims(loaded[1]))
    head = {r["claim"]: r for r in aggregate.headline(loaded)}
    assert head["OOD accuracy: WARM M=2 minus best RM"]["clean"] == "0.030 ± 0.071"  # seeds 0 and 1: -0.02 and +0.08
    assert head["PPO, best RM: best held-out control minus SFT's"]["clean"] == "0.100 (n=1)"
    text = aggregate.write_results(runs, tmp_path / "results", "cmd").read_text()
    assert "clean: seeds 0, 1 (RL: 0)" in text


def test_reward_model_only_runs_load_for_the_accuracy_table(runs):
    (runs[0] / "rlhf" / "bon.csv").unlink()  # a run that stopped after merge.py
    with pytest.raises(FileNotFoundError, match="rlhf/bon.csv"):
        aggregate.Run.load(runs[0])
    run = aggregate.Run.load(runs[0], aggregate.RM_NEEDED)
    acc = {(r["model"], r["split"]): r for r in aggregate.accuracy([run])}
    assert acc[("best RM", "val")]["mean"] == pytest.approx(0.60) and acc[("best RM", "val")]["n"] == 1

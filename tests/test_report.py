"""The report's summaries of PPO runs: smoothing, control at matched KL, the hacking verdict, the time split."""

import math

import pytest

from warm_eval import report


def fake_run(control: list[float], proxy: list[float]) -> tuple[list[dict], list[dict]]:
    train = [{"iteration": i + 1, "objective/control_reward": c, "objective/proxy_reward": p, "objective/kl": 0.1 * i,
              "time/generation": 1.0, "time/scoring": 0.5, "time/reward_model": 0.2, "time/update": 2.5}
             for i, (c, p) in enumerate(zip(control, proxy))]
    evals = [{"iteration": i, "eval/control_reward": c, "eval/kl": 0.1 * i, "eval/proxy_reward": p}
             for i, (c, p) in enumerate(zip(control, proxy))]
    return train, evals


def test_smooth_is_a_trailing_mean():
    assert report.smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_control_at_kl_interpolates_and_refuses_to_extrapolate():
    evals = [{"eval/kl": 0.0, "eval/control_reward": 0.5}, {"eval/kl": 2.0, "eval/control_reward": 0.9},
             {"eval/kl": 1.0, "eval/control_reward": 0.7}]
    assert report.control_at_kl(evals, 1.5) == pytest.approx(0.8)
    assert math.isnan(report.control_at_kl(evals, 3.0))


def test_hacking_verdict_needs_the_control_to_fall_while_the_proxy_holds():
    hacked = report.run_summary("a", *fake_run([0.5, 0.7, 0.8, 0.3, 0.1], [0.0, 0.3, 0.5, 0.9, 1.2]), window=1)
    assert hacked["control peak"] == 0.8 and hacked["peak at iteration"] == 3 and hacked["best eval iteration"] == 2
    assert report.hacking_verdict(hacked).startswith("hacked")
    both_fell = report.run_summary("b", *fake_run([0.5, 0.8, 0.3], [0.0, 0.9, 0.2]), window=1)
    assert not report.hacking_verdict(both_fell).startswith("hacked")
    steady = report.run_summary("c", *fake_run([0.5, 0.6, 0.7], [0.0, 0.3, 0.5]), window=1)
    assert report.hacking_verdict(steady).startswith("no collapse")
    plateau = report.run_summary("d", *fake_run([0.5, 0.8, 0.6, 0.3], [0.0, 1.0, 1.0, 0.98]), window=1)
    assert report.hacking_verdict(plateau).startswith("hacked")


def test_time_split_means_per_iteration_and_sums_the_run():
    train, _ = fake_run([0.5, 0.6], [0.0, 0.1])
    assert report.time_split(train) == {"generation": 1.0, "scoring": 0.5, "reward_model": 0.2, "update": 2.5, "run s": 8.0}


def test_tables_write_a_dash_where_a_number_does_not_apply():
    table = report.markdown_table([{"proxy": "oracle", "N=1": 0.5, "scoring s": math.nan}])
    assert table.splitlines()[-1] == "| oracle | 0.500 | - |"

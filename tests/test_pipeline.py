"""The tiny preset end to end, as a user runs it: train_rm.py, merge.py, rlhf.py; checks what they leave,
and that an interrupted PPO run resumes to the same policy."""

import collections
import csv
import dataclasses
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from warm_eval import report, reward_models
from warm_mini import checkpoint, config, data, prefs, reward, tokenizer, world
from warm_mini.model import GPT
from warm_mini.ppo import PPOTrainer
from warm_pipeline import rl_stage, rm_stage, sft_stage

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, run_dir: Path, *extra: str) -> str:
    out = subprocess.run([sys.executable, script, "--preset", "tiny", "--run-dir", str(run_dir), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny run directory after train_rm.py and merge.py, with their outputs."""
    run_dir = tmp_path_factory.mktemp("pipeline") / "tiny"
    return run_dir, run("train_rm.py", run_dir), run("merge.py", run_dir, "--soup")


@pytest.mark.parametrize("damage", ["flipped bytes", "another width"])
def test_merge_refuses_a_damaged_or_foreign_rm_in_one_line_before_writing_anything(tiny_run, tmp_path, damage):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run[0], run_dir)
    shutil.rmtree(run_dir / "warm")
    path = run_dir / "rm" / "rm_1.pt"
    if damage == "flipped bytes":
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
        path.write_bytes(bytes(data))
    else:
        ckpt = checkpoint.load(path)
        checkpoint.save({**ckpt, "model_config": {**ckpt["model_config"], "n_embd": 64}}, path)
    out = subprocess.run([sys.executable, "merge.py", "--run-dir", str(run_dir)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and "rm_1.pt" in out.stderr
    assert ("CRC-32" if damage == "flipped bytes" else "model_config.n_embd") in out.stderr
    assert not (run_dir / "warm").exists()


def test_stage_times_lists_every_finished_stage_in_the_order_it_ran(tiny_run):
    """scripts/stage_times.py, behind the notebook's stage tables, on the run train_rm.py and merge.py just made."""
    out = subprocess.run([sys.executable, "scripts/stage_times.py", str(tiny_run[0])], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line[:40].strip() for line in lines] == ["pretraining", "SFT", "SFT quality", "preference pairs", "linear probe",
                                                     "curriculum", *[f"reward model {i}" for i in range(4)], "merge.py"]
    gaps, elapsed = [float(line.split()[-7]) for line in lines], [float(line.split()[-2]) for line in lines]
    assert min(gaps) >= 0 and abs(sum(gaps) - elapsed[-1]) < 0.1 * len(lines)  # each rounded to 0.1 s


def test_train_rm_and_merge_leave_every_artifact(tiny_run):
    run_dir, out, merge_out = tiny_run
    assert "reward models in" in out
    for path in ["config.json", "tokenizer.tiktoken", "pretrain/model.pt", "sft/model.pt", "rm/probe.pt",
                 *[f"prefs/{s}.pt" for s in ("train", "val", "test", "ood")], *[f"rm/rm_{i}.pt" for i in range(4)]]:
        assert (run_dir / path).exists(), path
    assert len(list((run_dir / "sft").glob("step_*.pt"))) >= 3
    # K = 3 samples per training document, plus its reference and E = 3 one-fact edits of it, share their pairs;
    # the labeler abstains on ties
    cfg = config.preset("tiny")
    split = {s: prefs.Pairs(**checkpoint.load(run_dir / "prefs" / f"{s}.pt")) for s in ("train", "val")}
    for pairs in split.values():
        assert ((pairs.score_a - pairs.score_b).abs() > prefs.TIE).all()
    train = split["train"]
    per_doc = {i: {tuple(x) for j, a, b in zip(train.doc, train.a, train.b) if j == i for x in (a, b)} for i in set(train.doc)}
    assert all(len(s) <= cfg.rm.summaries_per_doc + 1 + cfg.rm.edited_per_doc for s in per_doc.values()) and len(train) > len(per_doc)
    best = collections.defaultdict(lambda: -math.inf)  # document -> its best summary's oracle quality
    for j, qa, qb in zip(train.doc, train.score_a.tolist(), train.score_b.tolist()):
        best[j] = max(best[j], qa, qb)
    assert len(best) == cfg.rm.train_docs and min(best.values()) > 0.99  # every document has its reference (quality 1)
    assert len(set(split["val"].doc)) == len(split["val"]) <= cfg.rm.val_pairs  # one pair per document at most
    for line in (run_dir / "metrics" / "sft.jsonl").read_text().splitlines():
        assert math.isfinite(json.loads(line)["loss"])

    # The curriculum: each document's reference above its E one-fact edits of one kind (they tie), no policy sample
    curriculum = prefs.Pairs(**checkpoint.load(run_dir / "prefs" / "curriculum.pt"))
    assert sorted(collections.Counter(curriculum.doc).values()) == [cfg.rm.curriculum_edits] * cfg.rm.curriculum_docs
    assert torch.maximum(curriculum.score_a, curriculum.score_b).min() > 0.99
    # the RMs: SFT + new blocks, each started from one of the curriculum's last snapshots (Baklava), RM 0 from its end
    sft_layers = checkpoint.load(run_dir / "sft" / "model.pt")["model_config"]["n_layer"]
    rms = [checkpoint.load(run_dir / "rm" / f"rm_{i}.pt") for i in range(cfg.rm.n_models)]
    starts = [str(p.relative_to(run_dir)) for p in sorted((run_dir / "rm" / "curriculum").glob("step_*.pt"))[-cfg.rm.baklava:]]
    assert all(r["model_config"]["n_layer"] == sft_layers + cfg.rm.head_layers for r in rms)
    assert {r["init"] for r in rms} <= set(starts)
    assert rms[0]["init"] == starts[-1] == f"rm/curriculum/step_{cfg.rm.curriculum_steps:06d}.pt"
    assert len(checkpoint.read_jsonl(run_dir / "metrics" / "rm_curriculum.jsonl")) == cfg.rm.curriculum_steps

    assert "pairwise accuracy" in merge_out and "greedy soup keeps" in merge_out
    rows = list(csv.DictReader(open(run_dir / "warm" / "accuracy.csv")))
    assert [r["model"] for r in rows][-2:] == ["ENS M=4", "WARM M=4"]
    assert "train (corrupted labels)" not in rows[0] and "nan" not in merge_out  # no flipped labels, no such column
    for r in rows:
        for column in ("val", "test", "ood"):
            assert 0.0 <= float(r[column]) <= 1.0
    lmc = list(csv.DictReader(open(run_dir / "warm" / "lmc.csv")))
    assert {r["pair"] for r in lmc} == {"same run", "data order", "learning rate", "Baklava init"}
    assert len(lmc) == 4 * 5

    # The merged checkpoint is an ordinary RM checkpoint whose weights are the top-2 average.
    warm = checkpoint.load(run_dir / "warm" / "warm_2.pt")
    summary = json.loads((run_dir / "warm" / "summary.json").read_text())
    ranked = summary["ranked"]
    assert set(summary["sft_loglik"]) == {"val", "test", "ood"} and all(0 <= v <= 1 for v in summary["sft_loglik"].values())
    assert "the SFT policy's own log-likelihood" in tiny_run[2]
    members = [checkpoint.load(run_dir / "rm" / f"rm_{i}.pt")["model"] for i in ranked[:2]]
    key = "head.weight"
    torch.testing.assert_close(warm["model"][key], (members[0][key] + members[1][key]) / 2)

    # The reward sources a policy trains against: one RM, ENS and WARM share the reward interface.
    idx, mask = torch.randint(0, 50, (3, 9)), torch.ones(3, 9, dtype=torch.bool)
    warm_model = rm_stage.load_reward_source("warm:2", run_dir)
    ens = rm_stage.load_reward_source("ens:2", run_dir)
    single = [rm_stage.load_reward_source(f"rm:{i}", run_dir) for i in ranked[:2]]
    with torch.no_grad():
        torch.testing.assert_close(ens(idx, mask), ((single[0](idx, mask) + single[1](idx, mask)) / 2 - ens.reward_mean) / ens.reward_std)
        assert warm_model(idx, mask).shape == (3,)
    with pytest.raises(ValueError, match="unknown reward source"):
        rm_stage.load_reward_source("oracle:1", run_dir)

    # Every source is normalised alike on the SFT samples of the validation pairs: ENS too, whose plain
    # mean has a smaller spread than its members'.
    cfg = config.preset("tiny")
    splits, enc = data.load_world(cfg), tokenizer.load(sft_stage.tokenizer_path(run_dir))
    val = prefs.Pairs(**checkpoint.load(run_dir / "prefs" / "val.pt"))
    for source in (ens, warm_model, single[0]):
        r = torch.cat(reward.score_pairs(source, enc, splits.val, val))
        assert r.mean().item() == pytest.approx(0.0, abs=1e-4) and r.std().item() == pytest.approx(1.0, abs=1e-4)
    assert ens.reward_std.item() < 1.0

    # Everything finished is skipped on a second run.
    assert "finished earlier" in run("train_rm.py", run_dir)


def test_without_curriculum_the_rms_start_from_sft_snapshots(tiny_run, tmp_path):
    """--rm.curriculum_steps 0: the RMs start from the last SFT snapshots, each with the same new blocks and probed head."""
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run[0], run_dir, ignore=shutil.ignore_patterns("rm", "warm", "rm_*.jsonl"))
    recorded = json.loads((run_dir / "config.json").read_text())
    recorded["rm"] |= {"curriculum_steps": 0, "n_models": 2, "baklava": 2}
    (run_dir / "config.json").write_text(json.dumps(recorded))
    run("train_rm.py", run_dir, "--rm.curriculum_steps", "0", "--rm.n_models", "2", "--rm.baklava", "2")
    snapshots = sorted((run_dir / "sft").glob("step_*.pt"))[-2:]
    assert sorted(p.name for p in (run_dir / "rm" / "start").iterdir()) == [p.name for p in snapshots]
    assert not (run_dir / "rm" / "curriculum").exists()
    assert checkpoint.load(run_dir / "rm" / "rm_0.pt")["init"] == f"rm/start/{snapshots[-1].name}"


LOGGED = ["objective/kl", "objective/proxy_reward", "objective/control_reward", "policy/entropy", "policy/clipfrac",
          "policy/approx_kl", "losses/policy_loss", "losses/value_loss", "val/explained_variance",
          "time/generation", "time/scoring", "time/reward_model", "time/update"]


def test_rlhf_writes_the_report(tiny_run):
    run_dir = tiny_run[0]
    out = run("rlhf.py", run_dir)
    assert "report:" in out
    cfg = config.preset("tiny")
    report_text = (run_dir / "report.md").read_text()
    for heading in ("Best-of-N", "PPO against each reward source", "Win rates", "Pairwise accuracy"):
        assert heading in report_text
    if report.pyplot() is not None:  # matplotlib is an optional extra
        for figure in ("lmc", "bon", "control_vs_kl", "ppo_control", "ppo_proxy", "win_rates"):
            assert (run_dir / "figures" / f"{figure}.png").exists() and f"figures/{figure}.png" in report_text, figure

    runs = sorted((run_dir / "rlhf").glob("*_kl*"))
    best = rm_stage.rm_index(rm_stage.ranked_reward_models(run_dir)[0])
    assert [r.name.split("_")[0] for r in runs] == ["ens4", f"rm{best}", "warm4"]
    for r in runs:
        lines = [json.loads(line) for line in (r / "train.jsonl").read_text().splitlines()]
        assert [x["iteration"] for x in lines] == list(range(1, cfg.ppo.iterations + 1))
        for x in lines:
            for key in LOGGED:
                assert math.isfinite(x[key]), (r.name, key)
            assert -1.0 <= x["objective/control_reward"] <= 1.0
            assert 0.0 <= x["policy/clipfrac"] <= 1.0 and x["time/reward_model"] <= x["time/scoring"]
        evals = [json.loads(line)["iteration"] for line in (r / "eval.jsonl").read_text().splitlines()]
        assert evals == [0, 3, 6]
        assert all((r / f"policy_{i:06d}.pt").exists() for i in evals)

    bon = list(csv.DictReader(open(run_dir / "rlhf" / "bon.csv")))
    assert {r["proxy"] for r in bon} >= {"RM 0", "ENS M=4", "WARM M=4", "oracle"}
    for r in bon:
        assert float(r["kl_bon"]) == pytest.approx(math.log(int(r["n"])) - (int(r["n"]) - 1) / int(r["n"]))
        assert -1.0 <= float(r["control"]) <= 1.0
    oracle = {int(r["n"]): float(r["control"]) for r in bon if r["proxy"] == "oracle"}
    assert list(oracle.values()) == sorted(oracle.values())  # the best of more samples is never worse
    for r in bon:  # no proxy picks better than the oracle picking by the control reward itself
        assert float(r["control"]) <= oracle[int(r["n"])] + 1e-6

    wins = list(csv.DictReader(open(run_dir / "rlhf" / "win_rates.csv")))
    assert {(w["a"], w["b"]) for w in wins} >= {("WARM M=4 final", "ENS M=4 final"), ("WARM M=4 best", "SFT"),
                                                 ("WARM M=4 KL≤1", "SFT")}
    assert {r["run"] for r in csv.DictReader(open(run_dir / "rlhf" / "ppo_time.csv"))} == {"ENS M=4", "WARM M=4", f"RM {best}"}
    for w in wins:
        assert 0.0 <= float(w["low"]) <= float(w["win_rate"]) <= float(w["high"]) <= 1.0

    assert "finished earlier" in run("rlhf.py", run_dir, "--no-bon")


def test_an_interrupted_ppo_run_resumes_to_the_same_policy(tiny_run, monkeypatch):
    run_dir = tiny_run[0]
    cfg = config.preset("tiny")
    cfg.ppo.iterations, cfg.rlhf.eval_every = 4, 2
    splits = data.load_world(cfg)
    enc = tokenizer.load(sft_stage.tokenizer_path(run_dir))
    out = rl_stage.train_policy(run_dir, cfg, "oracle", 0.05, splits, enc)
    expected = checkpoint.load(rl_stage.snapshot_path(out, 4))["model"]
    expected_log = checkpoint.read_jsonl(out / "train.jsonl")
    shutil.rmtree(out)

    step, calls = PPOTrainer.step, []

    def killed_at_the_fourth_step(self, *a):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return step(self, *a)

    monkeypatch.setattr(PPOTrainer, "step", killed_at_the_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        rl_stage.train_policy(run_dir, cfg, "oracle", 0.05, splits, enc)
    assert len(checkpoint.read_jsonl(out / "train.jsonl")) == 3  # iteration 3 was logged after the last checkpoint (2)
    monkeypatch.setattr(PPOTrainer, "step", step)
    assert rl_stage.train_policy(run_dir, cfg, "oracle", 0.05, splits, enc) == out
    for k, v in checkpoint.load(rl_stage.snapshot_path(out, 4))["model"].items():
        assert torch.equal(v, expected[k]), k
    got_log = checkpoint.read_jsonl(out / "train.jsonl")
    assert [r["iteration"] for r in got_log] == [1, 2, 3, 4]
    for a, b in zip(got_log, expected_log):
        assert {k: v for k, v in a.items() if not k.startswith("time/")} == {k: v for k, v in b.items() if not k.startswith("time/")}


def test_ppo_can_start_from_an_earlier_sft_snapshot(tiny_run):
    run_dir = tiny_run[0]
    cfg = config.preset("tiny")
    cfg.ppo.iterations, cfg.rlhf.eval_every, cfg.rlhf.init_step = 1, 1, 20
    splits = data.load_world(cfg)
    out = rl_stage.train_policy(run_dir, cfg, "oracle", 0.05, splits, tokenizer.load(sft_stage.tokenizer_path(run_dir)))
    from_final = dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, init_step=0))
    assert out != rl_stage.ppo_dir(run_dir, from_final, "oracle", 0.05)  # a folder of its own
    start = checkpoint.load(rl_stage.snapshot_path(out, 0))["model"]  # iteration 0: the policy PPO starts from
    snapshot = checkpoint.load(run_dir / "sft" / "step_000020.pt")["model"]
    assert all(torch.equal(start[k], v) for k, v in snapshot.items())
    out = subprocess.run([sys.executable, "rlhf.py", "--preset", "tiny", "--run-dir", str(run_dir), "--rlhf.init_step", "50"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)  # tiny SFT has 40 steps: no snapshot 50
    assert out.returncode == 2 and out.stderr.strip().startswith("error: --rlhf.init_step 50"), out.stderr


def test_a_ppo_seed_reruns_ppo_alone(tiny_run):
    run_dir = tiny_run[0]
    cfg = config.preset("tiny")
    cfg.ppo.iterations, cfg.rlhf.eval_every = 1, 1
    splits, enc = data.load_world(cfg), tokenizer.load(sft_stage.tokenizer_path(run_dir))
    with_seed = lambda s: dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, ppo_seed=s))
    assert rl_stage.ppo_dir(run_dir, with_seed(cfg.seed), "oracle", 0.05) == rl_stage.ppo_dir(run_dir, cfg, "oracle", 0.05)  # = --seed
    a, b = (rl_stage.train_policy(run_dir, c, "oracle", 0.05, splits, enc) for c in (cfg, with_seed(cfg.seed + 1)))
    assert a != b  # a folder of its own
    evals, trains = ([checkpoint.read_jsonl(out / log) for out in (a, b)] for log in ("eval.jsonl", "train.jsonl"))
    assert evals[0][0] == evals[1][0]  # iteration 0: the same SFT policy, judged on the same held-out draws
    assert trains[0][0]["objective/control_reward"] != trains[1][0]["objective/control_reward"]  # other prompts, samples


def test_two_processes_share_out_the_ppo_runs_and_write_what_one_writes(tiny_run, tmp_path):
    """Under torchrun each process trains its own PPO runs (rank 0 WARM, rank 1 ENS), bit for bit as one process
    trains them all at the same thread count, and rank 0 then writes the report. (That the runs went side by side is
    not asserted: under load one process's set-up can outlast the other's whole tiny run.)"""
    flags = ["--preset", "tiny", "--reward", "warm:4,ens:4", "--ppo.iterations", "2", "--rlhf.eval_every", "1", "--no-bon"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = {1: [sys.executable], 2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]}
    runs = {}
    for nproc, cmd in launch.items():
        run_dir = tmp_path / f"n{nproc}"
        shutil.copytree(tiny_run[0], run_dir, ignore=shutil.ignore_patterns("rlhf", "report.md", "figures"))
        out = subprocess.run([*cmd, "rlhf.py", *flags, "--run-dir", str(run_dir)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0 and (run_dir / "report.md").exists(), out.stdout + out.stderr
        runs[nproc] = sorted((run_dir / "rlhf").glob("*_kl*"))
    assert [r.name for r in runs[1]] == [r.name for r in runs[2]] and [r.name[:4] for r in runs[2]] == ["ens4", "warm"]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]
    for one, two in zip(runs[1], runs[2]):
        for log in ("eval.jsonl", "train.jsonl"):
            assert strip(checkpoint.read_jsonl(one / log)) == strip(checkpoint.read_jsonl(two / log)), (one.name, log)
        a, b = (checkpoint.load(rl_stage.snapshot_path(r, 2))["model"] for r in (one, two))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_oracle_reward_is_the_normalised_control_reward(tiny_run):
    run_dir = tiny_run[0]
    cfg = config.preset("tiny")
    splits = data.load_world(cfg)
    enc = tokenizer.load(sft_stage.tokenizer_path(run_dir))
    oracle = rm_stage.load_reward_source("oracle", run_dir, enc=enc, prompts=reward.doc_of_prompt(enc, splits.train))
    docs = splits.train[:5]
    summaries = [tokenizer.encode_with_specials(enc, d.reference + world.EOT) for d in docs[:3]] + [[], enc.encode("the")]
    got = reward.score_summaries(oracle, enc, docs, summaries)
    control = torch.tensor(reward.control_scores(enc, docs, summaries))
    assert control[:3].tolist() == [1.0, 1.0, 1.0] and (control[3:] < 1).all()
    torch.testing.assert_close(got, (control - oracle.mean) / oracle.std)


EDITS_ONLY = ["--edits-only", "--edit-kinds", "role,place", "--rm.edited_per_doc", "2"]


@pytest.mark.parametrize("name, extra", [("t", []), ("top", ["--rm.head_layers", "1", "--freeze-sft"]), ("edits", EDITS_ONLY)])
def test_rm_curves_logs_accuracy_against_pairs_seen(tiny_run, name, extra):
    """scripts/rm_curves.py, the experiment behind the cpu preset's reward-model recipe, on the tiny run's SFT."""
    run_dir = tiny_run[0]
    out = subprocess.run([sys.executable, "scripts/rm_curves.py", "--run-dir", str(run_dir), "--name", name, "--rm_train.steps", "4",
                          "--eval-every", "2", "--rm.corrupt", "0.25", "--eval-pairs", "50", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    if "--freeze-sft" in extra:  # one new block on top; the frozen SFT backbone is the SFT's, to the bit
        sft = checkpoint.load(run_dir / "sft" / "model.pt")["model"]
        rm = checkpoint.load(run_dir / "curves" / "tmp" / name / "model.pt")["model"]
        n = config.preset("tiny").model.n_layer
        assert {k.split(".")[2] for k in rm if k.startswith("backbone.blocks.")} == {str(i) for i in range(n + 1)}
        assert all(torch.equal(rm[f"backbone.{k}"], v) for k, v in sft.items() if k.startswith(("blocks.", "tok_emb.")))
    evals = [r for r in checkpoint.read_jsonl(run_dir / "curves" / f"{name}.jsonl") if "val/accuracy" in r]
    assert [r["step"] for r in evals] == [2, 4]
    train_file = {"edits": "train_k0_e2_one_kinds-role-place_*.pt"}.get(name, "train_k3_*.pt")
    train = prefs.Pairs(**checkpoint.load(next((run_dir / "curves" / "prefs").glob(train_file))))
    pairs_per_step = config.preset("tiny").rm_train.batch_size * len(train) / len(set(train.doc))  # untied pairs per document
    assert [r["pairs_seen"] for r in evals] == pytest.approx([2 * pairs_per_step, 4 * pairs_per_step])
    for r in evals:
        assert all(0.0 <= r[k] <= 1.0 for k in ("val/accuracy", "ood/accuracy", "train/accuracy", "train/flipped_agreement"))
        assert {k for k in r if k.startswith("edits/")} == {f"edits/{k}" for k in world.KEY_FACTS}
    if name == "edits":  # one kind per document: its two edits tie, so each pair is the reference against one edit
        splits = data.load_world(config.preset("tiny"))
        enc = tokenizer.load(sft_stage.tokenizer_path(run_dir))
        assert sorted(collections.Counter(train.doc).values()) == [2] * len(set(train.doc))
        for d, a, b, a_better in zip(train.doc, train.a, train.b, (train.score_a > train.score_b).tolist()):
            better, worse = (tokenizer.decode(enc, x) for x in ((a, b) if a_better else (b, a)))
            facts = {f for f in world.KEY_FACTS if world.fact_credit(splits.train[d], worse).get(f) != 1}
            assert world.quality(splits.train[d], better) == pytest.approx(1.0) and facts in ({"role"}, {"place"})


def test_rm_curves_init_goes_on_from_an_earlier_recipes_model(tiny_run):
    """--init (a curriculum) starts from the given model, head and new block included: at lr 1e-12 it ends where it began."""
    run_dir = tiny_run[0]
    common = [sys.executable, "scripts/rm_curves.py", "--run-dir", str(run_dir), "--rm_train.steps", "2", "--eval-every", "2",
              "--eval-pairs", "20", "--edit-probe", "0", "--rm.head_layers", "1"]
    for extra in (["--name", "first"], ["--name", "then", "--init", "curves/tmp/first/model.pt", "--rm_train.lr", "1e-12"]):
        out = subprocess.run(common + extra, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
    first, then = (checkpoint.load(run_dir / "curves" / "tmp" / n / "model.pt")["model"] for n in ("first", "then"))
    sft = checkpoint.load(run_dir / "sft" / "model.pt")["model"]
    assert not torch.equal(first["backbone.blocks.0.attn.qkv.weight"], sft["blocks.0.attn.qkv.weight"])  # it trained
    assert first.keys() == then.keys() and all(torch.allclose(first[k], then[k], rtol=0, atol=1e-9) for k in first)


def test_rm_errors_groups_pairs_by_the_facts_that_differ(tiny_run):
    """scripts/rm_errors.py, the diagnostic that found the name blind spot."""
    run_dir = tiny_run[0]
    # weights only, as rm_curves.py leaves its models: the run's model_config fills in
    checkpoint.save({"model": checkpoint.load(run_dir / "rm" / "rm_0.pt")["model"]}, run_dir / "weights_only.pt")
    shape = checkpoint.load(run_dir / "rm" / "rm_0.pt")["model_config"]
    deeper = reward.RewardModel(config.ModelConfig(**{**shape, "n_layer": shape["n_layer"] + 1}))
    checkpoint.save({"model": deeper.state_dict()}, run_dir / "deeper.pt")  # as rm_curves.py --rm.head_layers 1 leaves one
    out = subprocess.run([sys.executable, "scripts/rm_errors.py", "--run-dir", str(run_dir), "rm/rm_0.pt", "warm/warm_2.pt",
                          "weights_only.pt", "sft", "deeper.pt", "sft:1", "--groups", "1000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    n_val = len(prefs.Pairs(**checkpoint.load(run_dir / "prefs" / "val.pt")))
    heads = [line for line in out.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split(": ")[0] for h in heads] == ["rm/rm_0.pt", "warm/warm_2.pt", "weights_only.pt", "sft", "deeper.pt", "sft:1"]
    assert all(f"of {n_val} val pairs" in h for h in heads)
    assert heads[0].split(":")[1] == heads[2].split(":")[1]  # the same model, the same accuracy
    probes = [line for line in out.stdout.splitlines() if line.startswith("  reference above a one-fact edit")]
    groups = [line.split() for line in out.stdout.splitlines() if line.startswith(" ") and line not in probes]
    assert sum(int(g[1]) for g in groups) == 6 * n_val  # every pair in one group, for each model
    assert len(probes) == 6 and probes[0] == probes[2]
    shares = dict(re.findall(r"(\w+) ([01]\.\d\d)", probes[0].split(":")[1]))
    assert set(shares) == set(world.KEY_FACTS) and all(0 <= float(v) <= 1 for v in shares.values())
    out = subprocess.run([sys.executable, "scripts/rm_errors.py", "--run-dir", str(run_dir), "rm/rm_0.pt", "--by", "invented",
                          "--groups", "1000"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0] == heads[0]  # the same accuracy, grouped another way
    invented = [line.split() for line in out.stdout.splitlines()[1:] if not line.startswith("  reference above")]
    assert sum(int(g[1]) for g in invented) == n_val
    assert all(g[0] == "none" or set(g[0].split("+")) <= {"PERSON", "ROLE", "ACTION", "NUM", "OBJ", "PLACE", "TIME"} for g in invented)


def test_log_likelihood_is_the_policys_own_summed_logprob_of_the_summary():
    """merge.py's and `rm_errors.py ... sft`'s reference orders pairs by log pi(y | x): checked against one
    unpadded forward pass per row."""
    torch.manual_seed(0)
    policy = GPT(config.ModelConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)).eval()
    sep, rows, expected = 3, [[7, 8, 9, 3, 11, 12, 13], [20, 3, 21, 22]], []
    idx, mask = data.left_pad(rows, pad_id=0)
    with torch.no_grad():
        got = reward_models.LogLikelihood(policy, sep)(idx, mask)
        for row in rows:
            logp = policy(torch.tensor([row]))[0][0].log_softmax(-1)  # (T, V)
            start = row.index(sep)  # position start predicts the first summary token
            expected.append(sum(logp[t, row[t + 1]].item() for t in range(start, len(row) - 1)))
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=0)


def test_memorisation_script_shares_the_sft_and_changes_only_the_reward_models_data(tiny_run, tmp_path):
    """scripts/memorisation.sh, the paper's Fig. 4 where reward models can memorise, on a copy of the tiny run."""
    base = tmp_path / "base"
    shutil.copytree(tiny_run[0], base)
    out = subprocess.run(["bash", "scripts/memorisation.sh", str(base)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHON": sys.executable, "TRAIN_DOCS": "50"})
    assert out.returncode == 0, out.stdout + out.stderr
    mem = tmp_path / "base-mem50"
    recorded, changed = (json.loads((d / "config.json").read_text()) for d in (base, mem))
    assert {k for k in recorded if recorded[k] != changed[k]} == {"rm"}
    assert {k for k in recorded["rm"] if recorded["rm"][k] != changed["rm"][k]} == {"corrupt", "train_docs"}
    assert changed["rm"]["corrupt"] == 0.25 and changed["rm"]["train_docs"] == 50
    assert (mem / "sft" / "model.pt").samefile(base / "sft" / "model.pt")  # hard links: the same SFT
    assert len(set(prefs.Pairs(**checkpoint.load(mem / "prefs" / "train.pt")).doc)) <= 50
    unseen = prefs.Pairs(**checkpoint.load(mem / "warm" / "heldout_train.pt"))  # the baseline: documents no RM saw
    assert unseen.doc and min(unseen.doc) >= 50 and max(unseen.doc) < 100
    flipped = {row["model"]: row["train (corrupted labels)"] for row in report.read_csv(mem / "warm" / "accuracy.csv")}
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.stdout.splitlines() if line.startswith("| RM ")
            or line.startswith("| ENS ") or line.startswith("| WARM ")}
    assert rows.keys() == flipped.keys()
    for model, cells in rows.items():  # flipped agreement as merge.py measured it; "flipped, memorised" = it - (1 - unseen)
        agreement, _, unseen_acc, memorised, _ = map(float, cells)
        assert agreement == pytest.approx(flipped[model], abs=5e-4)
        assert memorised == pytest.approx(agreement - (1 - unseen_acc), abs=2e-3)


def test_control_parts_charges_an_edit_to_its_own_fact_and_the_oracle_picks_the_best_of_n(tiny_run):
    """scripts/control_parts.py: a one-fact edit loses that fact's credit and invents one fact of its class, nothing else;
    with --bon, no proxy's pick beats the oracle's."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import control_parts

    docs = world.generate_documents(5, seed=3)
    part, credit, invented = control_parts.parts(docs, [d.reference + world.EOT for d in docs])
    assert part["coverage"] == pytest.approx(1.0) and not invented
    assert all(credit[f] == pytest.approx(1.0) for f in world.KEY_FACTS)
    rng = random.Random(0)
    for kind in world.KEY_FACTS:
        _, credit, invented = control_parts.parts(docs, [world.edited_summary(d, kind, rng) + world.EOT for d in docs])
        assert credit[kind] < 1 and all(credit[f] == pytest.approx(1.0) for f in world.KEY_FACTS if f != kind), kind
        assert dict(invented) == pytest.approx({control_parts.INVENTED_CLASS[kind]: 1.0}), kind
    out = subprocess.run([sys.executable, "scripts/control_parts.py", "--run-dir", str(tiny_run[0]), "sft:10", "sft"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| sft")]
    assert len(rows) == 4 and rows[1].split(" | ")[2] == "0.00"  # two tables; the final SFT is the reference here: KL 0
    out = subprocess.run([sys.executable, "scripts/control_parts.py", "--run-dir", str(tiny_run[0]), "--bon", "4", "rm:0", "oracle"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    control = {line.split(" | ")[0][2:]: float(line.split(" | ")[1]) for line in out.stdout.splitlines()[4:7]}
    assert list(control) == ["one sample", "rm:0, best of 4", "oracle, best of 4"]
    assert control["oracle, best of 4"] >= max(control.values())  # the oracle's pick is each document's best sample


def test_edit_surprise_finds_the_edited_tokens_and_reports_every_fact(tiny_run):
    """scripts/edit_surprise.py: where the SFT policy notices a one-fact edit."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import edit_surprise

    assert edit_surprise.edited_span([1, 2, 3, 4, 5], [1, 2, 9, 9, 4, 5]) == (2, 3, 4)  # one token became two
    assert edit_surprise.edited_span([1, 2, 3, 5], [1, 7, 3, 5]) == (1, 2, 2)
    assert edit_surprise.edited_span([4, 4, 5], [4, 5]) == (1, 2, 1)  # a repeated token removed: the shared suffix stops at the start
    out = subprocess.run([sys.executable, "scripts/edit_surprise.py", "--run-dir", str(tiny_run[0]), "--docs", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == list(world.KEY_FACTS)
    assert all(float(r[1]) >= 1 for r in rows)  # an edit changes at least one token

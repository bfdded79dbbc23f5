import json
import subprocess
import sys
from pathlib import Path

import pytest

from warm_mini import config
from warm_pipeline import cli


def parse(*argv):
    return cli.resolve(cli.build_parser("test").parse_args(list(argv)))


def test_every_field_is_overridable_and_typed():
    cfg, run_dir = parse("--preset", "tiny", "--model.n_layer", "3", "--sft.lr", "0.5", "--pretrain.compile", "true", "--seed", "7")
    assert (cfg.model.n_layer, cfg.sft.lr, cfg.pretrain.compile, cfg.seed) == (3, 0.5, True, 7)
    assert run_dir.as_posix() == "runs/tiny"
    assert config.preset("tiny").model.n_layer == 2  # the preset itself is untouched


def test_presets_differ_in_size_and_unknown_preset_is_refused():
    sizes = [config.preset(p).model.n_embd for p in config.PRESETS]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    with pytest.raises(ValueError, match="unknown preset"):
        config.preset("huge")


def test_help_lists_field_docs(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser("test").parse_args(["--help"])
    assert "transformer blocks" in capsys.readouterr().out  # ModelConfig.n_layer's docstring


def test_config_round_trips_through_json():
    cfg, _ = parse("--preset", "cpu", "--world.n_docs", "123")
    assert config.from_dict(json.loads(config.dumps(cfg))) == cfg


def test_run_dir_refuses_an_incompatible_config(tmp_path):
    cfg, _ = parse("--preset", "tiny")
    cli.record_config(tmp_path, cfg)
    cli.record_config(tmp_path, cfg)  # the same config resumes
    cfg.device = "cuda"  # the device may change between a run and its resumption
    cli.record_config(tmp_path, cfg)
    cfg.model.n_layer += 1
    with pytest.raises(SystemExit, match="model.n_layer: recorded 2, now 3"):
        cli.record_config(tmp_path, cfg)


def test_a_run_directory_remembers_its_config(tmp_path):
    cfg, _ = parse("--preset", "tiny", "--run-dir", str(tmp_path), "--rm.corrupt", "0.25")
    cli.record_config(tmp_path, cfg)
    later, _ = parse("--run-dir", str(tmp_path))  # a later stage names only the run directory
    assert later == cfg
    with pytest.raises(SystemExit, match="holds a tiny run"):
        parse("--preset", "cpu", "--run-dir", str(tmp_path))


def test_rl_settings_may_change_in_a_finished_run_and_old_configs_gain_new_sections(tmp_path):
    cfg, _ = parse("--preset", "tiny", "--run-dir", str(tmp_path))
    recorded = config.to_dict(cfg)
    del recorded["ppo"], recorded["rlhf"]  # a run directory from before the RL stage existed
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    later, _ = parse("--run-dir", str(tmp_path), "--ppo.kl_coef", "0.5")
    assert later.ppo.kl_coef == 0.5 and later.ppo.iterations == config.preset("tiny").ppo.iterations
    cli.record_config(tmp_path, later)  # PPO runs are named by their own settings: nothing to refuse


def test_a_field_added_since_a_run_began_takes_the_preset_value(tmp_path):
    cfg, _ = parse("--preset", "gpu", "--run-dir", str(tmp_path))
    recorded = config.to_dict(cfg)
    del recorded["dtype"], recorded["sft"]["compile"]  # a run directory from before these fields existed
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    later, _ = parse("--run-dir", str(tmp_path))
    assert (later.dtype, later.sft.compile) == ("bfloat16", True)  # the gpu preset's, not the dataclass defaults
    cli.record_config(tmp_path, later)  # the same run: accepted
    later.dtype = "float32"
    with pytest.raises(SystemExit, match="dtype: recorded 'bfloat16', now 'float32'"):
        cli.record_config(tmp_path, later)


# One bad value per rule of cli._rules, and a piece of the message it must give.
BAD = {
    "seed": ("-1", "≥ 0"),
    "device": ("cuda:99", "cuda[:N]"),
    "world.n_docs": ("10", "≥ 100"),
    "world.val_frac": ("0.5", "< 0.5"),
    "world.test_frac": ("0.96", "val_frac + world.test_frac < 1"),
    "world.label_tau": ("-0.1", "≥ 0"),
    "tokenizer.vocab_size": ("100", "≥ 260"),
    "tokenizer.train_chars": ("0", "> 0"),
    "model.block_size": ("32", "≥ 64"),
    "model.n_layer": ("0", "≥ 1"),
    "model.n_head": ("0", "≥ 1"),
    "model.n_embd": ("30", "RoPE"),
    "model.dropout": ("1.0", "< 1"),
    "rm.n_models": ("0", "≥ 1"),
    "rm.train_docs": ("0", "≥ 1"),
    "rm.summaries_per_doc": ("1", "≥ 2"),
    "rm.edited_per_doc": ("8", "from 0 to 7"),
    "rm.val_pairs": ("0", "≥ 1"),
    "rm.test_pairs": ("0", "≥ 1"),
    "rm.ood_pairs": ("0", "≥ 1"),
    "rm.corrupt": ("1.5", "< 0.5"),
    "rm.lr_multipliers": ("1,a", "positive numbers"),
    "rm.dropout_choices": ("0.1,1.5", "< 1"),
    "rm.head_layers": ("-1", "≥ 0"),
    "rm.curriculum_steps": ("-1", "≥ 0"),
    "rm.curriculum_docs": ("0", "≥ 1"),
    "rm.curriculum_edits": ("0", "from 1 to 7"),
    "rm.baklava": ("0", "≥ 1"),
    "rm.probe_steps": ("-1", "≥ 0"),
    "ppo.iterations": ("0", "≥ 1"),
    "ppo.batch_size": ("0", "≥ 1"),
    "ppo.minibatch_size": ("100", "≤ ppo.batch_size"),
    "ppo.epochs": ("0", "≥ 1"),
    "ppo.lr": ("0", "> 0"),
    "ppo.warmup_iterations": ("-1", "≥ 0"),
    "ppo.weight_decay": ("-1", "≥ 0"),
    "ppo.kl_coef": ("-1", "≥ 0"),
    "ppo.temperature": ("0", "> 0"),
    "ppo.max_new_tokens": ("0", "≥ 1"),
    "ppo.gamma": ("1.5", "≤ 1"),
    "ppo.lam": ("-0.5", "≥ 0"),
    "ppo.cliprange": ("0", "> 0"),
    "ppo.cliprange_value": ("0", "> 0"),
    "ppo.vf_coef": ("-1", "≥ 0"),
    "ppo.grad_clip": ("-1", "≥ 0"),
    "rlhf.rewards": ("warm:9", "1 ≤ M ≤ rm.n_models"),
    "rlhf.kl_coefs": ("0.1,-1", "numbers ≥ 0"),
    "rlhf.eval_every": ("0", "≥ 1"),
    "rlhf.eval_docs": ("0", "≥ 1"),
    "rlhf.test_docs": ("0", "≥ 1"),
    "rlhf.bon_docs": ("0", "≥ 1"),
    "rlhf.bon_n": ("0", "≥ 1"),
    "rlhf.bon_temperature": ("0", "> 0"),
    "rlhf.kl_budget": ("0", "> 0"),
    "rlhf.init_step": ("15", "a multiple of sft.snapshot_every"),
    "rlhf.ppo_seed": ("-2", "≥ -1"),
    **{f"{s}.{k}": v for s in ("pretrain", "sft", "rm_train") for k, v in {
        "steps": ("0", "≥ 1"), "batch_size": ("0", "≥ 1"), "grad_accum": ("0", "≥ 1"), "lr": ("-0.001", "> 0"),
        "min_lr_frac": ("2", "≤ 1"), "warmup_steps": ("-1", "≥ 0"), "weight_decay": ("-1", "≥ 0"), "beta2": ("1", "< 1"),
        "grad_clip": ("-1", "≥ 0"), "eval_every": ("0", "≥ 1"), "ckpt_every": ("0", "≥ 1"),
        "snapshot_every": ("-1", "≥ 0")}.items()},
}


def test_every_rule_has_a_bad_value_below():
    assert {flag for flag, _, _ in cli._rules(config.preset("tiny"))} == set(BAD)


@pytest.mark.parametrize("preset", config.PRESETS)
def test_every_preset_passes_the_rules(preset):
    cfg = config.preset(preset)
    cfg.device = "cpu"  # the gpu preset's cuda is checked against this machine
    cli.validate(cfg)


@pytest.mark.parametrize("flag", sorted(BAD))
def test_a_bad_setting_is_one_line_naming_the_flag_and_exit_status_2(flag, capsys):
    value, allowed = BAD[flag]
    with pytest.raises(SystemExit) as exit:
        parse("--preset", "tiny", "--run-dir", "unused", f"--{flag}", value)
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --{flag} ") and allowed in err and "\n" not in err, err


def test_a_bad_setting_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "train_rm.py", "--preset", "tiny", "--run-dir", str(run_dir), "--rm.corrupt", "1.5"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == "error: --rm.corrupt 1.5: must be ≥ 0 and < 0.5"
    assert not run_dir.exists()


@pytest.mark.parametrize("failure", [cli.RunError("rm_0 diverged at step 5"), PermissionError(13, "Permission denied", "runs/x")])
def test_expected_failures_are_one_line_without_a_traceback(failure, capsys):
    def main():
        raise failure

    with pytest.raises(SystemExit) as exit:
        cli.run_script(main)
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err

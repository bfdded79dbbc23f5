import json

import pytest

from warm_mini import checkpoint, config


def parse(*argv):
    return config.resolve(config.build_parser("test").parse_args(list(argv)))


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
        config.build_parser("test").parse_args(["--help"])
    assert "transformer blocks" in capsys.readouterr().out  # ModelConfig.n_layer's docstring


def test_config_round_trips_through_json():
    cfg, _ = parse("--preset", "cpu", "--world.n_docs", "123")
    assert config.from_dict(json.loads(config.dumps(cfg))) == cfg


def test_run_dir_refuses_an_incompatible_config(tmp_path):
    cfg, _ = parse("--preset", "tiny")
    checkpoint.record_config(tmp_path, cfg)
    checkpoint.record_config(tmp_path, cfg)  # the same config resumes
    cfg.device = "cuda"  # the device may change between a run and its resumption
    checkpoint.record_config(tmp_path, cfg)
    cfg.model.n_layer += 1
    with pytest.raises(SystemExit, match="model.n_layer: recorded 2, now 3"):
        checkpoint.record_config(tmp_path, cfg)


def test_a_run_directory_remembers_its_config(tmp_path):
    cfg, _ = parse("--preset", "tiny", "--run-dir", str(tmp_path), "--rm.corrupt", "0.25")
    checkpoint.record_config(tmp_path, cfg)
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
    checkpoint.record_config(tmp_path, later)  # PPO runs are named by their own settings: nothing to refuse


def test_a_field_added_since_a_run_began_takes_the_preset_value(tmp_path):
    cfg, _ = parse("--preset", "gpu", "--run-dir", str(tmp_path))
    recorded = config.to_dict(cfg)
    del recorded["dtype"], recorded["sft"]["compile"]  # a run directory from before these fields existed
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    later, _ = parse("--run-dir", str(tmp_path))
    assert (later.dtype, later.sft.compile) == ("bfloat16", True)  # the gpu preset's, not the dataclass defaults
    checkpoint.record_config(tmp_path, later)  # the same run: accepted
    later.dtype = "float32"
    with pytest.raises(SystemExit, match="dtype: recorded 'bfloat16', now 'float32'"):
        checkpoint.record_config(tmp_path, later)

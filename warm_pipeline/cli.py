"""The command line every script shares: one flag per setting, the rules a setting must meet, the config a
run directory records, one-line errors.

Every field of every section of warm_mini/config.py can be overridden as `--section.field VALUE`,
e.g. `python train_rm.py --preset cpu --model.n_layer 6`. The scripts add their own flags beside these.
"""

import argparse
import dataclasses
import functools
import json
import re
import sys
from pathlib import Path

from warm_mini import checkpoint
from warm_mini.checkpoint import RunError
from warm_mini.config import DTYPES, PRESETS, Config, dumps, from_dict, preset, sections, to_dict
from warm_mini.world import KEY_FACTS


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def default_preset() -> str:
    """gpu when CUDA is available, else cpu."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def build_parser(description: str) -> argparse.ArgumentParser:
    """The flags every script shares: --preset, --run-dir, --seed, and one --section.field per config field."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default=None, help="size of the run (default: gpu if CUDA is available, else cpu)")
    parser.add_argument("--run-dir", type=Path, default=None, help="where every stage reads and writes (default: runs/<preset>)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the whole run (default: 0)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="autocast dtype of training and PPO (default: the preset's)")
    presets = {name: preset(name) for name in PRESETS}
    for section_name, section in sections(Config()):
        group = parser.add_argument_group(f"{section_name} overrides", section.__doc__)
        for f in dataclasses.fields(section):
            kind = _parse_bool if f.type in (bool, "bool") else type(getattr(section, f.name))
            values = {name: getattr(getattr(c, section_name), f.name) for name, c in presets.items()}
            shown = f"{values['cpu']!r}" if len(set(values.values())) == 1 else ", ".join(f"{k} {v!r}" for k, v in values.items())
            # SUPPRESS: a flag not given is absent from the namespace, and the help shows the presets' values
            group.add_argument(f"--{section_name}.{f.name}", dest=f"{section_name}.{f.name}", type=kind, default=argparse.SUPPRESS,
                               metavar=f.name.upper(), help=f"{_field_docs(type(section)).get(f.name, '')} [{shown}]".replace("%", "%%"))
    return parser


@functools.cache
def _field_docs(cls) -> dict[str, str]:
    """{field: the docstring line written under it}, read from the source (so it is written once); once per class,
    since parsing the source is slow."""
    import inspect

    lines = inspect.getsource(cls).splitlines()
    return {line.strip().split(":")[0]: lines[i + 1].strip().strip('"') for i, line in enumerate(lines[:-1])
            if line.strip().split(":")[0].isidentifier() and lines[i + 1].strip().startswith('"""')}


def resolve(args: argparse.Namespace) -> tuple[Config, Path]:
    """The config and run directory the command line asks for.

    A run directory that already holds a config.json starts from that config (so later stages and
    resumed runs need no flags but --run-dir); otherwise the preset's defaults. The command line's
    overrides apply on top either way; record_config refuses ones that change a finished run.
    """
    import torch

    name = args.preset or default_preset()
    run_dir = args.run_dir or Path("runs") / name
    recorded = Path(run_dir) / "config.json"
    cfg = from_dict(json.loads(recorded.read_text())) if recorded.exists() else preset(name)
    if args.preset is not None and args.preset != cfg.preset:
        raise SystemExit(f"error: {run_dir} holds a {cfg.preset} run, not {args.preset}; choose another --run-dir")
    if args.seed is not None:
        cfg.seed = args.seed
    if args.dtype is not None:
        cfg.dtype = args.dtype
    if args.device is not None:
        cfg.device = args.device
    elif cfg.device == "cuda" and not torch.cuda.is_available():
        cfg.device = "cpu"
    for section_name, section in sections(cfg):
        for f in dataclasses.fields(section):
            value = getattr(args, f"{section_name}.{f.name}", None)
            if value is not None:
                setattr(section, f.name, value)
    validate(cfg)
    return cfg, Path(run_dir)


REWARD_SOURCE = re.compile(r"rm:(\d+|best)|(ens|warm):\d+|oracle")  # the syntax of one reward source


def _numbers(text: str) -> list[float] | None:
    """The comma-separated numbers in `text`, or None when one does not parse."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return None


def _source_ok(spec: str, n_models: int) -> bool:
    if not REWARD_SOURCE.fullmatch(spec):
        return False
    kind, _, arg = spec.partition(":")
    return not arg.isdigit() or (int(arg) < n_models if kind == "rm" else 1 <= int(arg) <= n_models)


def _device_ok(device: str) -> bool:
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return True
    if kind != "cuda" or not torch.cuda.is_available() or (index and not index.isdigit()):
        return False
    return int(index or 0) < torch.cuda.device_count()


def _rules(cfg: Config) -> list[tuple[str, object, str]]:
    """(flag, predicate of the flag's value, what is allowed) for every setting a run can get wrong."""
    positive, at_least_0 = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, "≥ 0")
    count = (lambda v: v >= 1, "an integer ≥ 1")
    fraction = lambda hi: (lambda v: 0 <= v < hi, f"≥ 0 and < {hi:g}")
    head_size = 2 * cfg.model.n_head
    rules = [
        ("seed", *at_least_0),
        ("device", _device_ok, "cpu, or cuda[:N] on a machine with CUDA"),
        ("world.n_docs", lambda v: v >= 100, "≥ 100"),
        ("world.val_frac", lambda v: 0 < v < 0.5, "> 0 and < 0.5"),
        ("world.test_frac", lambda v: 0 < v and v + cfg.world.val_frac < 1, "> 0, with world.val_frac + world.test_frac < 1"),
        ("world.label_tau", *at_least_0),
        ("tokenizer.vocab_size", lambda v: v >= 260, "≥ 260 (256 bytes, 3 special tokens, a merge)"),
        ("tokenizer.train_chars", *positive),
        ("model.block_size", lambda v: v >= 64, "≥ 64"),
        ("model.n_layer", *count),
        ("model.n_head", *count),
        ("model.n_embd", lambda v: v % head_size == 0 and v > 0,
         f"a positive multiple of 2 x model.n_head = {head_size} (RoPE rotates pairs of channels in each head)"),
        ("model.dropout", *fraction(1)),
        ("rm.n_models", *count),
        ("rm.train_docs", *count),
        ("rm.summaries_per_doc", lambda v: v >= 2, "an integer ≥ 2"),
        ("rm.edited_per_doc", lambda v: 0 <= v <= len(KEY_FACTS), f"an integer from 0 to {len(KEY_FACTS)} (one edit per key fact)"),
        ("rm.val_pairs", *count),
        ("rm.test_pairs", *count),
        ("rm.ood_pairs", *count),
        ("rm.corrupt", *fraction(0.5)),
        ("rm.lr_multipliers", lambda v: bool(_numbers(v)) and min(_numbers(v)) > 0, "positive numbers, comma separated"),
        ("rm.dropout_choices", lambda v: bool(_numbers(v)) and all(0 <= x < 1 for x in _numbers(v)),
         "numbers ≥ 0 and < 1, comma separated"),
        ("rm.head_layers", *at_least_0),
        ("rm.curriculum_steps", *at_least_0),
        ("rm.curriculum_docs", *count),
        ("rm.curriculum_edits", lambda v: 1 <= v <= len(KEY_FACTS), f"an integer from 1 to {len(KEY_FACTS)}"),
        ("rm.baklava", *count),
        ("rm.probe_steps", *at_least_0),
        ("ppo.iterations", *count),
        ("ppo.batch_size", *count),
        ("ppo.minibatch_size", lambda v: 1 <= v <= cfg.ppo.batch_size, "an integer ≥ 1 and ≤ ppo.batch_size"),
        ("ppo.epochs", *count),
        ("ppo.lr", *positive),
        ("ppo.warmup_iterations", *at_least_0),
        ("ppo.weight_decay", *at_least_0),
        ("ppo.kl_coef", *at_least_0),
        ("ppo.temperature", *positive),
        ("ppo.max_new_tokens", *count),
        ("ppo.gamma", lambda v: 0 <= v <= 1, "≥ 0 and ≤ 1"),
        ("ppo.lam", lambda v: 0 <= v <= 1, "≥ 0 and ≤ 1"),
        ("ppo.cliprange", *positive),
        ("ppo.cliprange_value", *positive),
        ("ppo.vf_coef", *at_least_0),
        ("ppo.grad_clip", *at_least_0),
        ("rlhf.rewards", lambda v: all(_source_ok(x.strip(), cfg.rm.n_models) for x in v.split(",") if x.strip()),
         f"reward sources rm:I (I < rm.n_models = {cfg.rm.n_models}), rm:best, ens:M, warm:M (1 ≤ M ≤ rm.n_models) "
         "or oracle, comma separated"),
        ("rlhf.kl_coefs", lambda v: _numbers(v) is not None and all(x >= 0 for x in _numbers(v)), "numbers ≥ 0, comma separated"),
        ("rlhf.eval_every", *count),
        ("rlhf.eval_docs", *count),
        ("rlhf.test_docs", *count),
        ("rlhf.bon_docs", *count),
        ("rlhf.bon_n", *count),
        ("rlhf.bon_temperature", *positive),
        ("rlhf.kl_budget", *positive),
        ("rlhf.ppo_seed", lambda v: v >= -1, "≥ -1 (-1: the run's --seed)"),
        ("rlhf.init_step", lambda v: v == 0 or (cfg.sft.snapshot_every > 0 and v % cfg.sft.snapshot_every == 0 and 0 < v <= cfg.sft.steps),
         "0, or the step of an SFT snapshot: a multiple of sft.snapshot_every up to sft.steps"),
    ]
    for name in ("pretrain", "sft", "rm_train"):
        rules += [
            (f"{name}.steps", *count),
            (f"{name}.batch_size", *count),
            (f"{name}.grad_accum", *count),
            (f"{name}.lr", *positive),
            (f"{name}.min_lr_frac", lambda v: 0 <= v <= 1, "≥ 0 and ≤ 1"),
            (f"{name}.warmup_steps", *at_least_0),
            (f"{name}.weight_decay", *at_least_0),
            (f"{name}.beta2", *fraction(1)),
            (f"{name}.grad_clip", *at_least_0),
            (f"{name}.eval_every", *count),
            (f"{name}.ckpt_every", *count),
            (f"{name}.snapshot_every", *at_least_0),
        ]
    return rules


def run_script(main) -> None:
    """Call a script's `main()`; a RunError or an OSError (a read-only directory, a full disk) prints one line
    `error: ...` on stderr and exits with status 1."""
    try:
        main()
    except (RunError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def validate(cfg: Config) -> None:
    """Refuse a bad setting before any work: `error: --flag value: must be ...` on stderr, exit status 2."""
    for flag, holds, allowed in _rules(cfg):
        section, _, name = flag.rpartition(".")
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if not holds(value):
            print(f"error: --{flag} {value!r}: must be {allowed}", file=sys.stderr)
            raise SystemExit(2)


# Fields (or whole sections) that may change between a run and its resumption without changing a finished
# stage: the device; and the RL stage's settings, since each PPO run is named by its own (see rl_stage.ppo_dir).
RESUMABLE_FIELDS = {"device", "ppo", "rlhf"}


def record_config(run_dir: Path, cfg: Config) -> None:
    """Write config.json, or check that the run directory's recorded config agrees with `cfg`.

    Resuming a run under a different configuration would silently mix two experiments, so any
    difference outside RESUMABLE_FIELDS stops the run with the list of differing fields.
    """
    path = Path(run_dir) / "config.json"
    new = to_dict(cfg)
    if path.exists():
        old = to_dict(from_dict(json.loads(path.read_text())))  # fields added since: the preset's
        diffs = list(_differences(old, new))
        if diffs:
            lines = "\n".join(f"  {k}: recorded {a!r}, now {b!r}" for k, a, b in diffs)
            raise SystemExit(
                f"error: {path} was written by an incompatible configuration:\n{lines}\n"
                f"Use the same settings to resume, or a new --run-dir for a new run."
            )
        return
    checkpoint.atomic_write_text(path, dumps(cfg) + "\n")


def _differences(old: dict, new: dict, prefix: str = ""):
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, prefix=f"{name}.")
        elif a != b and name not in RESUMABLE_FIELDS and name.split(".")[0] not in RESUMABLE_FIELDS:
            yield name, a, b

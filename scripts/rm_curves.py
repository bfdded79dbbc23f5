"""Learning curves of one reward-model recipe: validation and OOD accuracy against pairs seen and seconds.

The experiment that chose the cpu preset's reward-model recipe (see docs/notebook.md). It trains one RM from
the final SFT weights of a finished run (train_rm.py --until sft) with any --rm.* / --rm_train.* override,
on pairs of its own (cached in <run-dir>/curves/prefs/), and logs every --eval-every steps:

    python scripts/rm_curves.py --run-dir runs/exp/l2 --name kwise4 --rm.summaries_per_doc 4
    python scripts/rm_curves.py --run-dir runs/exp/l2 --name role --edits-only --edit-kinds role   # one check alone
    # the cpu preset's two phases by hand: its curriculum (one-fact edits alone), then the mix from where it ended
    python scripts/rm_curves.py --run-dir runs/exp/l2 --name cur --edits-only \\
        --rm.edited_per_doc 7 --rm.train_docs 9000 --rm_train.steps 1000
    python scripts/rm_curves.py --run-dir runs/exp/l2 --name cur_mix --init curves/tmp/cur/model.pt
    python scripts/rm_curves.py --plot runs/exp/l2/curves/*.jsonl --out docs/rm_curves.png [--metrics edits/role ...]

Each record of <run-dir>/curves/<name>.jsonl: step, pairs_seen, seconds (training only), loss and, at
evaluations, val/accuracy, ood/accuracy and train/accuracy (on up to --eval-pairs training pairs, and with
--rm.corrupt, train/flipped_agreement: agreement with the flipped labels among them), and edits/<kind>: the share
of --edit-probe validation documents whose reference it scores above a one-fact edit of that kind.
"""

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import checkpoint, data, prefs, reward, tokenizer, world  # noqa: E402
from warm_eval import reward_models  # noqa: E402
from warm_eval.report import pyplot, save_figure  # noqa: E402
from warm_mini.train import train  # noqa: E402
from warm_pipeline import cli, pairs_stage, sft_stage  # noqa: E402


def cached_pairs(run_dir: Path, cfg, splits, enc, split: str, args) -> prefs.Pairs:
    """The split's pairs for this recipe's settings, made once per (split, K, edits, documents, corruption, label noise)."""
    n, k = pairs_stage.split_size(cfg, split)
    edits = ""
    if split == "train":
        k = 0 if args.edits_only else k
        edits = f"_e{cfg.rm.edited_per_doc}" + ("_one" if cfg.rm.one_kind_per_doc else "")
        edits += "" if args.edit_kinds == list(world.KEY_FACTS) else "_kinds-" + "-".join(args.edit_kinds)
    path = run_dir / "curves" / "prefs" / f"{split}_k{k}{edits}_n{n}_c{cfg.rm.corrupt:g}_tau{cfg.world.label_tau:g}.pt"
    if path.exists():
        return prefs.Pairs(**checkpoint.load(path))
    if split == "train" and args.edits_only:  # no policy sample: each document's reference and its edits alone
        docs, summaries = splits.train[:n], [[] for _ in range(n)]
        prefs.add_edits(cfg, docs, summaries, cfg.rm.edited_per_doc, args.edit_kinds)
        pairs = prefs.labeled_pairs(cfg, split, docs, summaries, enc)
    else:
        pairs = pairs_stage.make_pairs(run_dir, cfg, splits, enc, split, args.edit_kinds)
    checkpoint.save(pairs.__dict__, path)
    return pairs


def reward_model(args, cfg, sft: dict) -> reward.RewardModel:
    """The RM a recipe starts from: the SFT backbone, --rm.head_layers new blocks (reward.sft_reward_model) and a
    fresh head; --head-init and --freeze-sft try other starts for the new blocks."""
    model = reward.sft_reward_model(sft, cfg.rm.head_layers, cfg.seed, args.dropout)
    n = sft["model_config"]["n_layer"]
    if args.head_init == "copy":  # the SFT's own blocks again, in order: trained attention patterns, silenced
        for j, block in enumerate(model.backbone.blocks[n:]):
            block.load_state_dict(model.backbone.blocks[j % n].state_dict())
            for proj in (block.attn.proj, block.mlp.proj):
                torch.nn.init.zeros_(proj.weight)
    if args.freeze_sft:  # a deep probe: only the new blocks, the final norm and the head learn
        for module in [model.backbone.tok_emb, *model.backbone.blocks[:n]]:
            module.requires_grad_(False)
    return model


def run(args, cfg, run_dir: Path) -> None:
    data_seed = cfg.seed if args.data_seed is None else args.data_seed
    torch.manual_seed(data_seed)
    splits = data.load_world(cfg)
    enc = tokenizer.load(sft_stage.tokenizer_path(run_dir))
    pairs = {s: cached_pairs(run_dir, cfg, splits, enc, s, args) for s in ("train", "val", "ood")}
    docs = {"train": splits.train, "val": splits.val, "ood": splits.test}
    sft = checkpoint.load(sft_stage.sft_snapshots(run_dir)[-1])
    model = reward_model(args, cfg, sft)
    if args.init:  # a curriculum: go on from an earlier recipe's reward model (its head included: no probe)
        model.load_state_dict(checkpoint.load(run_dir / args.init)["model"])
    elif args.probe:
        model.head.load_state_dict(reward.linear_probe(model, enc, splits.train, pairs["train"], splits.val, pairs["val"],
                                                       cfg.rm.probe_steps, cfg.device))
    pairs_per_step = cfg.rm_train.batch_size * len(pairs["train"]) / len(set(pairs["train"].doc))
    train_eval = pairs["train"].head(args.eval_pairs)
    clock = {"start": time.perf_counter(), "eval": 0.0, "step": 0}

    def evaluate(m) -> dict:
        t0 = time.perf_counter()
        acc = {}
        for s, p in (("val", pairs["val"]), ("ood", pairs["ood"]), ("train", train_eval)):
            ra, rb = reward.score_pairs(m, enc, docs[s], p, device=cfg.device)
            acc[f"{s}/accuracy"] = reward.pair_accuracy(ra, rb, p.label)
            if s == "train" and p.flipped.any():  # memorisation: agreement with the flipped labels (Fig. 4)
                acc["train/flipped_agreement"] = reward.pair_accuracy(ra[p.flipped], rb[p.flipped], p.label[p.flipped])
        if args.edit_probe:  # which facts it checks: the reference above its one-fact edit, per kind
            probe = reward_models.edit_probe(m, enc, splits.val[: args.edit_probe], cfg.device)
            acc |= {f"edits/{k}": v for k, v in probe.items()}
        m.train()
        seconds = t0 - clock["start"] - clock["eval"]
        clock["eval"] += time.perf_counter() - t0
        print(f"{args.name} step {clock['step']}: {seconds:.0f} s, " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()), flush=True)
        return {**acc, "seconds": seconds, "pairs_seen": clock["step"] * pairs_per_step}

    out, work = run_dir / "curves" / f"{args.name}.jsonl", run_dir / "curves" / "tmp" / args.name
    out.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)  # a recipe run again starts afresh (else train() would resume its last state)
    checkpoint.atomic_write_text(run_dir / "curves" / "meta" / f"{args.name}.json", json.dumps({
        "name": args.name, "argv": sys.argv[1:], "probe": args.probe, "dropout": args.dropout, "data_seed": data_seed,
        "rm": dataclasses.asdict(cfg.rm), "rm_train": dataclasses.asdict(cfg.rm_train), "model": dataclasses.asdict(model.backbone.config),
        "train_pairs": len(pairs["train"]), "train_docs": len(set(pairs["train"].doc))}) + "\n")
    tcfg = dataclasses.replace(cfg.rm_train, eval_every=args.eval_every, ckpt_every=10**9, snapshot_every=0)
    comparisons = reward.comparison_batches(enc, splits.train, pairs["train"], tcfg.batch_size, 1, data_seed)

    def batches(step: int, *args) -> dict:
        clock["step"] = step + 1  # the step this batch ends, for the evaluation that follows it
        return comparisons(step, *args)

    train(model, tcfg, batches, reward.rm_loss, work, device=cfg.device,
          eval_fn=evaluate, metrics_path=out, desc=args.name)


def plot(paths: list[Path], out: Path, metrics: list[str]) -> None:
    """Each metric (a row) against pairs seen and against seconds, one line per recipe."""
    plt = pyplot()
    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.5 * len(metrics)), sharey="row", squeeze=False)
    for path in paths:
        evals = [r for r in checkpoint.read_jsonl(path) if "val/accuracy" in r]
        for row, metric in enumerate(metrics):
            for col, x in enumerate(("pairs_seen", "seconds")):
                label = f"{Path(path).parents[1].name}: {Path(path).stem}"  # run directory: recipe
                points = [(r[x], r[metric]) for r in evals if metric in r]
                axes[row][col].plot(*zip(*points), "o-", ms=3, label=label)
    for row, metric in enumerate(metrics):
        axes[row][0].set_ylabel(metric)
        for col, x in enumerate(("labeled pairs seen (thousands)", "training seconds (as logged: jobs may share the cores)")):
            axes[row][col].set_xlabel(x)
            axes[row][col].grid(alpha=0.3)
        axes[row][0].xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}")  # whole counts overlap
    axes[0][0].legend(fontsize=8)
    save_figure(fig, out)
    print(f"wrote {out}")


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--name", help="the recipe's name: curves/<name>.jsonl")
    parser.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                        help="start from the linear probe's head (else a fresh N(0, 1/sqrt(d+1)) head)")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout of the RM backbone")
    parser.add_argument("--head-init", choices=("fresh", "copy"), default="fresh",
                        help="the new blocks' weights: a fresh init, or copies of the SFT's blocks (output projections zero either way)")
    parser.add_argument("--freeze-sft", action="store_true", help="train only the new blocks, the final norm and the head")
    parser.add_argument("--init", type=Path, help="start from this rm_curves.py model (relative to --run-dir, of the same "
                        "--rm.head_layers) instead of the SFT weights and the probe's head: a curriculum, one recipe after another")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the training pairs' order (default: the run's seed): replicates of one recipe on the same pairs")
    parser.add_argument("--edit-kinds", type=lambda s: s.split(","), default=list(world.KEY_FACTS), metavar="KIND[,KIND...]",
                        help=f"the kinds the reference's one-fact edits are drawn from (default: all of {','.join(world.KEY_FACTS)})")
    parser.add_argument("--edits-only", action="store_true",
                        help="train on the reference and its edits alone, no policy samples: can a reward model learn those checks at all?")
    parser.add_argument("--edit-probe", type=int, default=200,
                        help="validation documents of the one-fact edit probe at each evaluation (edits/<kind>; 0: none)")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between evaluations")
    parser.add_argument("--eval-pairs", type=int, default=1000, help="training pairs scored at each evaluation")
    parser.add_argument("--plot", nargs="+", type=Path, help="plot these curves files instead of training")
    parser.add_argument("--metrics", nargs="+", default=["val/accuracy", "ood/accuracy"],
                        help="what --plot draws, a row each (any evaluation key: train/accuracy, edits/place, ...)")
    parser.add_argument("--out", type=Path, default=Path("rm_curves.png"), help="where --plot writes")
    args = parser.parse_args(argv)
    if args.plot:
        return plot(args.plot, args.out, args.metrics)
    if not set(args.edit_kinds) <= set(world.KEY_FACTS):
        parser.error(f"--edit-kinds: kinds are {','.join(world.KEY_FACTS)}, not {','.join(args.edit_kinds)}")
    cfg, run_dir = cli.resolve(args)
    if not cfg.rm.one_kind_per_doc and cfg.rm.edited_per_doc > len(args.edit_kinds):
        parser.error(f"{cfg.rm.edited_per_doc} edits of different kinds from {len(args.edit_kinds)} kinds: set --rm.one_kind_per_doc true")
    if not sft_stage.sft_snapshots(run_dir):
        raise SystemExit(f"error: no SFT snapshots in {run_dir}; run train_rm.py --until sft first")
    run(args, cfg, run_dir)


if __name__ == "__main__":
    cli.run_script(main)

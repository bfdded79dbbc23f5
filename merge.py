"""Stage 2 of warm-mini: WARM (weight average) and ENS (prediction average) of the reward models.

Ranks the M reward models by validation accuracy and merges the top M' for M' in --ms (uniformly, or
greedily as a model soup with --soup), writes warm/warm_<M'>.pt (ordinary RM checkpoints), and prints
and saves the paper's two analyses: accuracy by split for every RM, ENS and WARM (Fig. 4, with
corrupted and clean training labels), and linear mode connectivity (Fig. 3).
"""

import json

from warm_eval import report, reward_models
from warm_mini import averaging, checkpoint, data, lm, prefs, tokenizer, world
from warm_mini.reward import normalise, pair_accuracy, rm_from_checkpoint
from warm_pipeline import cli, pairs_stage, rm_stage, sft_stage
from warm_pipeline.rm_stage import ranked_reward_models, rm_index


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--ms", default="2,6,10", help="sizes M of the WARM and ENS averages (capped at the RMs trained)")
    parser.add_argument("--soup", action="store_true", help="also merge greedily: add the next-best RM only if validation accuracy rises")
    parser.add_argument("--eval-pairs", type=int, default=1000, help="pairs per split in the accuracy table (a subset keeps it fast)")
    parser.add_argument("--no-lmc", action="store_true", help="skip the linear-mode-connectivity curves")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    if not (run_dir / "config.json").exists():
        raise SystemExit(f"error: no run in {run_dir}; run train_rm.py with the same --preset/--run-dir first")
    cli.record_config(run_dir, cfg)

    rm_paths = sorted((run_dir / "rm").glob("rm_*.pt"), key=rm_index)
    if len(rm_paths) < cfg.rm.n_models:
        raise SystemExit(f"error: {len(rm_paths)} of {cfg.rm.n_models} reward models in {run_dir / 'rm'}; finish train_rm.py first")
    splits = data.load_world(cfg)
    enc = tokenizer.load(sft_stage.tokenizer_path(run_dir))
    pairs = {s: pairs_stage.load_or_make(run_dir, cfg, splits, enc, s) for s in prefs.SPLITS}
    scorer = reward_models.Scorer(enc, splits, pairs, cfg.device, args.eval_pairs)

    reference, val_acc = checkpoint.load(rm_paths[0]), []
    for path in rm_paths:  # every RM read (its checksums verified) and checked before anything is scored or written
        ckpt = checkpoint.load(path)
        averaging.check_compatible(reference, ckpt, str(path))
        val_acc.append(ckpt["val_accuracy"])
    ranked = [rm_index(p) for p in ranked_reward_models(run_dir)]
    print("reward models by validation accuracy: " + ", ".join(f"RM {i} {val_acc[i]:.3f}" for i in ranked))
    ms = sorted({min(int(m), len(rm_paths)) for m in args.ms.split(",")})

    warm_dir = run_dir / "warm"
    rows, built = reward_models.accuracy_table(rm_paths, ranked, ms, scorer)
    for name, ckpt in built.items():  # WARM: the merged RM of the top M; ENS: its members and normaliser
        checkpoint.save(ckpt, warm_dir / name)
    report.write_csv(rows, warm_dir / "accuracy.csv")
    print("\npairwise accuracy (Fig. 4); ENS and WARM average the top-M RMs by validation accuracy:")
    print(report.markdown_table(rows))
    ceiling = {s: world_ceiling(cfg, pairs[s]) for s in ("val", "test", "ood")}
    print("labeler's own agreement with the noise-free oracle (the ceiling): "
          + ", ".join(f"{s} {v:.3f}" for s, v in ceiling.items()))
    sft = lm.load_model(sft_stage.sft_snapshots(run_dir)[-1], cfg.device).eval()
    loglik = reward_models.LogLikelihood(sft, enc.encode_single_token(world.SEP))
    sft_loglik = {s: pair_accuracy(*r, scorer.subset(s).label) for s, r in scorer.score(loglik, tuple(ceiling)).items()}
    print("the SFT policy's own log-likelihood log pi(y | x), not a reward model (what every RM's backbone knows): "
          + ", ".join(f"{s} {v:.3f}" for s, v in sft_loglik.items()))

    if args.soup:
        def val_accuracy(ckpt):  # the accuracy that ranks the RMs, of a candidate soup
            return rm_stage.val_accuracy(rm_from_checkpoint(ckpt, cfg.device), enc, splits, pairs)

        soup, kept = averaging.greedy_soup([rm_paths[i] for i in ranked], val_accuracy)
        model = rm_from_checkpoint(soup, cfg.device)
        normalise(model, enc, splits.val, pairs["val"], cfg.device)
        checkpoint.save({**soup, "model": model.state_dict()}, warm_dir / "soup.pt")
        print(f"greedy soup keeps RMs {[ranked[k] for k in kept]}: val accuracy {val_accuracy(soup):.3f}")

    if not args.no_lmc:
        lams = [0.0, 0.25, 0.5, 0.75, 1.0]
        lmc = reward_models.lmc_curves(rm_paths, run_dir, scorer, lams)
        report.write_csv(lmc, warm_dir / "lmc.csv")
        if reward_models.plot_lmc(lmc, run_dir / "figures" / "lmc.png"):
            print(f"\nLMC plot: {run_dir / 'figures' / 'lmc.png'}")
        print("\nlinear mode connectivity (Fig. 3), validation accuracy at λ = 0, 0.5, 1:")
        for name in dict.fromkeys(r["pair"] for r in lmc):
            pts = {r["lambda"]: r for r in lmc if r["pair"] == name}
            mid, diag = pts[0.5], reward_models.diagonal(pts, 0.5)
            print(f"  {name:14s} WA {pts[0.0]['WA']:.3f} -> {mid['WA']:.3f} -> {pts[1.0]['WA']:.3f} "
                  f"(diagonal {diag:.3f}, ENS at 0.5 {mid['ENS']:.3f})")
    summary = {"ranked": ranked, "val_accuracy": val_acc, "ms": ms, "ceiling": ceiling, "sft_loglik": sft_loglik}
    checkpoint.atomic_write_text(warm_dir / "summary.json", json.dumps(summary) + "\n")
    print(f"\nwrote {warm_dir}/warm_*.pt, accuracy.csv{', lmc.csv' if not args.no_lmc else ''}; "
          f"next: python rlhf.py --preset {cfg.preset} --run-dir {run_dir}")


def world_ceiling(cfg, pairs) -> float:
    return world.Labeler(cfg.world.label_tau).agreement(pairs.score_a.numpy(), pairs.score_b.numpy())


if __name__ == "__main__":
    cli.run_script(main)

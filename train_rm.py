"""Stage 1 of warm-mini: world -> tokenizer -> pretraining -> SFT -> preference pairs -> curriculum -> M reward models.

Every stage writes into the run directory and is skipped when it has finished, so a killed run
resumes where it stopped. Under torchrun --nproc_per_node=N train_rm.py ..., pretraining, SFT and the
curriculum are data-parallel, and the preference splits are sampled and the reward models trained N at a
time, one per process.
"""

import json

from warm_eval import policies
from warm_mini import checkpoint, data, prefs, train
from warm_pipeline import cli, pairs_stage, rm_stage, sft_stage


def main(argv=None):
    parser = cli.build_parser(__doc__)
    parser.add_argument("--until", choices=("sft", "rm"), default="rm", help="the last stage to run")
    args = parser.parse_args(argv)
    cfg, run_dir = cli.resolve(args)
    cfg.device = train.init_distributed(cfg.device)
    rank, n_procs = train.dist_info()
    say = print if rank == 0 else (lambda *a, **k: None)

    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        cli.record_config(run_dir, cfg)
    train.barrier()
    say(f"run directory: {run_dir} (preset {cfg.preset}, seed {cfg.seed}, device {cfg.device})")

    splits = data.load_world(cfg)
    say(f"world: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test documents")
    enc = train.rank_zero_first(lambda: sft_stage.load_or_train_tokenizer(run_dir, cfg, splits))
    say(f"tokenizer: {enc.n_vocab} tokens in {sft_stage.tokenizer_path(run_dir)}")

    sft_stage.pretrain(run_dir, cfg, splits, enc)
    model = sft_stage.sft(run_dir, cfg, splits, enc)

    if rank == 0:
        report_path = run_dir / "sft" / "quality.json"
        if not report_path.exists():
            quality = policies.quality_report(model.to(cfg.device), enc, splits.test, cfg.seed, cfg.device)
            checkpoint.atomic_write_text(report_path, json.dumps(quality) + "\n")
        quality = json.loads(report_path.read_text())
        say(f"SFT on {len(splits.test)} test documents: oracle score greedy {quality['greedy']:.3f}, "
            f"sampled (T=1) {quality['sampled']:.3f}, reference {quality['reference']:.3f} "
            f"(greedy / reference = {quality['greedy_over_reference']:.0%})")
        say("oracle scores of T=1 samples:\n" + policies.histogram(quality["sampled_scores"]))
    if args.until == "sft":
        return

    names = (*prefs.SPLITS, "curriculum") if cfg.rm.curriculum_steps else prefs.SPLITS
    for split in names[rank::n_procs]:  # under torchrun each process samples its share of the splits
        pairs_stage.load_or_make(run_dir, cfg, splits, enc, split)
    train.barrier()
    pairs = {split: pairs_stage.load_or_make(run_dir, cfg, splits, enc, split) for split in names}
    train_pairs = pairs["train"]
    say(f"preference pairs: {', '.join(f'{s} {len(p)}' for s, p in pairs.items())} (train: {len(set(train_pairs.doc))} documents "
        f"x {cfg.rm.summaries_per_doc} samples, the reference and {cfg.rm.edited_per_doc} one-fact edits of it"
        + (f"; curriculum: {cfg.rm.curriculum_docs} references x {cfg.rm.curriculum_edits} edits" if cfg.rm.curriculum_steps else "")
        + f"); {train_pairs.flipped.float().mean():.0%} of training labels flipped")
    rm_stage.train_reward_models(run_dir, cfg, splits, enc, pairs)
    say(f"reward models in {run_dir / 'rm'}; next: python merge.py --preset {cfg.preset} --run-dir {run_dir}")


if __name__ == "__main__":
    cli.run_script(main)

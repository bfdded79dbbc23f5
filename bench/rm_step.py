"""Reward-model training step: K summaries of a document packed in one row, against one row per summary.

The baseline is the layout warm-mini used before K-wise comparisons: each pair as two left-padded rows
[document | chosen] and [document | rejected]. Packed rows [document | summary 1 | ... | summary K]
(reward.packed_rows) pay for the document once and score K(K-1)/2 pairs from K summaries. Both layouts,
for each K, are measured in one run, on the same model, documents and summaries (world documents, summaries in
random templates), each step a forward, backward and fused AdamW step:

    python bench/rm_step.py                 # cpu preset's model, 16 documents per step
    python bench/rm_step.py --steps 40 --k 2,4,6
"""

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from warm_mini import config, data, prefs, reward, world  # noqa: E402
from warm_mini import tokenizer as tok  # noqa: E402
from warm_mini.train import make_optimizer  # noqa: E402


def separate_rows_loss(model, batch):
    """The baseline: chosen rows, then rejected rows, each [document | summary] left-padded."""
    r = model(batch["idx"], batch["mask"])
    n = r.size(0) // 2
    return reward.bradley_terry_loss(r[:n], r[n:])


def time_steps(model, loss_fn, batches, steps: int) -> float:
    """Seconds per step (forward, backward, AdamW), after 2 warm-up steps."""
    opt = make_optimizer(model, config.preset("cpu").rm_train)
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        loss = loss_fn(model, batches[i % len(batches)])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per layout")
    parser.add_argument("--docs", type=int, default=16, help="documents per step")
    parser.add_argument("--k", default="2,4", help="summaries per document of the packed layouts, comma separated")
    args = parser.parse_args()

    cfg = config.preset("cpu")
    docs = world.generate_documents(args.docs * 8, seed=0)
    enc = tok.build_encoding(tok.train_bpe(world.world_text(docs), cfg.tokenizer.vocab_size))
    cfg.model.vocab_size = enc.n_vocab
    eot, pad = enc.encode_single_token(world.EOT), enc.encode_single_token(tok.PAD)
    rng = random.Random(0)
    ks = [int(k) for k in args.k.split(",")]
    summaries = [[tok.encode(enc, world.reference_summary(d, rng)) + [eot] for _ in range(max(ks))] for d in docs]
    print(f"cpu preset model ({cfg.model.n_layer} layers x {cfg.model.n_embd}), {args.docs} documents per step, "
          f"{torch.get_num_threads()} threads, {args.steps} steps each")

    results = []
    for k in ks:
        pairs = prefs.all_pairs(len(docs), k)
        n = len(pairs)
        as_pairs = prefs.Pairs(doc=[i for i, _, _ in pairs], a=[summaries[i][s] for i, s, _ in pairs],
                               b=[summaries[i][t] for i, _, t in pairs], score_a=torch.zeros(n), score_b=torch.zeros(n),
                               label=torch.ones(n, dtype=torch.bool), clean=None, flipped=None)
        # both layouts see the same documents and pairs per step
        packed = reward.comparison_batches(enc, docs, as_pairs, args.docs, 1, seed=0)
        packed_batches = [packed(step, 0, 0, 1) for step in range(8)]
        separate_batches = []
        for b in packed_batches:
            ids = b["pair"].tolist()  # every label says a: chosen rows are the a's, rejected rows the b's
            seqs = [data.prompt_ids(enc, docs[as_pairs.doc[i]]) + side[i] for side in (as_pairs.a, as_pairs.b) for i in ids]
            idx, mask = data.left_pad(seqs, pad)
            separate_batches.append({"idx": idx, "mask": mask})
        pairs_per_step = len(packed_batches[0]["chosen"])
        for layout, loss_fn, batches in (("separate rows", separate_rows_loss, separate_batches),
                                          (f"packed, K = {k}", reward.rm_loss, packed_batches)):
            torch.manual_seed(0)
            model = reward.RewardModel(cfg.model)
            seconds = time_steps(model, loss_fn, batches, args.steps)
            results.append((k, layout, pairs_per_step, seconds))
    print(f"\n{'K':>2} {'layout':16s} {'pairs/step':>10s} {'s/step':>8s} {'pairs/s':>9s} {'vs separate rows':>17s}")
    for k, layout, n, s in results:
        base = next(r[3] for r in results if r[0] == k and r[1] == "separate rows")
        print(f"{k:>2} {layout:16s} {n:>10d} {s:>8.3f} {n / s:>9.0f} {base / s:>16.2f}x")


if __name__ == "__main__":
    main()

"""How many summaries per second the oracle scores on one core.

The oracle is the control reward of every RL and Best-of-N run, so it must stay far cheaper than
sampling the summaries it scores. Typical summaries are mimicked by the documents' references, half of
them damaged the way a weak policy would (a fact swapped for another document's, a missing end marker).
"""

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere without installing

from warm_mini.world import EOT, generate_documents, reference_summary, score


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--docs", type=int, default=500, help="documents to score summaries of")
    parser.add_argument("--calls", type=int, default=20_000, help="score calls per timed run")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs; the best one is reported, as other processes only slow runs down")
    parser.add_argument("--seed", type=int, default=0, help="seed of the world and of the summaries")
    args = parser.parse_args()

    docs = generate_documents(args.docs, args.seed)
    rng = random.Random(args.seed)
    pairs = []
    for i in range(args.calls):
        doc = docs[i % len(docs)]
        summary = reference_summary(doc, rng) + EOT
        if rng.random() < 0.5:  # a flawed summary: another document's fact, or no end marker
            summary = summary.replace(doc.facts.place, rng.choice(docs).facts.place) if rng.random() < 0.5 else summary[: -len(EOT)]
        pairs.append((doc, summary))
    for doc in docs:  # the per-document lookup is built once per document and cached: keep it out of the timing
        score(doc, EOT)

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        total = sum(score(doc, summary) for doc, summary in pairs)
        times.append(time.perf_counter() - start)
    best, median = min(times), sorted(times)[len(times) // 2]
    print(f"{args.calls / best:,.0f} scores/s best of {args.repeat} runs ({args.calls / median:,.0f} median; "
          f"{best / args.calls * 1e6:.1f} us per call; mean score {total / args.calls:+.3f})")


if __name__ == "__main__":
    main()

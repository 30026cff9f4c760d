"""Time the retrieval metrics on a COCO 5K-sized score matrix (5,000 images x 25,000 captions).

Run: PYTHONPATH=src python benchmarks/retrieval_metrics.py [--images 5000]
Prints seconds for 5K (all pairs) and for 1K (5 folds) evaluation, and the peak extra memory
the ranking needs beyond the matrix itself.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

import numpy as np

from vlmt.cli import at_least
from vlmt.errors import reports_errors
from vlmt.metrics.retrieval import fold_metrics, retrieval_metrics


@reports_errors
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=at_least(1), default=5000)
    p.add_argument("--captions-per-image", type=at_least(1), default=5)
    args = p.parse_args(argv)
    n, c = args.images, args.captions_per_image
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((n, n * c), dtype=np.float32)
    for i in range(n):                       # make it a plausible model: own captions score higher
        scores[i, i * c:(i + 1) * c] += 2.5
    print(f"matrix {n} x {n * c} float32 ({scores.nbytes / 2**20:.0f} MiB)")
    tracemalloc.start()
    t = time.perf_counter()
    m = retrieval_metrics(scores, c)
    t5k = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"all pairs: {t5k:.2f} s, peak extra memory {peak / 2**20:.0f} MiB, rsum {m.rsum:.1f}")
    if n % 5 == 0:
        t = time.perf_counter()
        m1 = fold_metrics(scores, c, 5)
        print(f"5 folds:   {time.perf_counter() - t:.2f} s, rsum {m1.rsum:.1f}")


if __name__ == "__main__":
    sys.exit(main())

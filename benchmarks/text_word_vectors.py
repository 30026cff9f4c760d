"""Word-vector loading: throughput and peak memory against file size.

Writes a synthetic GloVe text file and a word2vec binary file of N words x D dimensions into a
temporary folder, then loads the rows of K requested words from each (half of them present,
half absent) and reports seconds, lines per second, and the peak of traced Python/numpy memory
(in a second, traced load), which should stay near K x D x 4 bytes however large the file is.

    PYTHONPATH=src python benchmarks/text_word_vectors.py --words 50000 --dim 300 --request 10000
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vlmt.cli import at_least
from vlmt.data.text import load_word_vectors
from vlmt.errors import reports_errors


def write_files(folder: Path, n: int, dim: int, seed: int) -> tuple[Path, Path, list[str]]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n)]
    glove, w2v = folder / "vectors.txt", folder / "vectors.bin"
    with open(glove, "wb") as ft, open(w2v, "wb") as fb:
        fb.write(f"{n} {dim}\n".encode())
        for start in range(0, n, 5000):
            chunk = rng.standard_normal((min(5000, n - start), dim)).astype(np.float32)
            buf = io.BytesIO()
            np.savetxt(buf, chunk, fmt="%.5f")
            lines = buf.getvalue().splitlines()
            ft.write(b"".join(words[start + i].encode() + b" " + line + b"\n" for i, line in enumerate(lines)))
            for i, row in enumerate(chunk):
                fb.write(words[start + i].encode() + b" " + row.astype("<f4").tobytes() + b"\n")
    return glove, w2v, words


def measure(path: Path, request: list[str], dim: int, rows: int) -> dict:
    """Time one load of the file's `rows` rows, then trace memory in a second load (tracing slows
    the loop down)."""
    t0 = time.perf_counter()
    load_word_vectors(path, request, dim=dim)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    wv = load_word_vectors(path, request, dim=dim)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "file": path.name,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "seconds": round(seconds, 2),
        "file_rows_per_s": round(rows / seconds),  # of the unrounded time: a small file loads in < 5 ms
        "peak_traced_mb": round(peak / 2**20, 1),
        "result_mb": round(wv.vectors.nbytes / 2**20, 1),
        "coverage": round(wv.coverage, 3),
    }


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=at_least(1), default=50000, help="rows in the file")
    parser.add_argument("--dim", type=at_least(1), default=300)
    parser.add_argument("--request", type=at_least(1), default=10000, help="words to load (half absent)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        glove, w2v, words = write_files(Path(tmp), args.words, args.dim, args.seed)
        rng = np.random.default_rng(args.seed)
        present = list(rng.choice(words, size=min(args.request // 2, len(words)), replace=False))
        request = present + [f"absent{i}" for i in range(args.request - len(present))]
        results = []
        for path in (glove, w2v):
            results.append(measure(path, request, args.dim, args.words))
    print(json.dumps({"words": args.words, "dim": args.dim, "request": args.request, "results": results}, indent=2))


if __name__ == "__main__":
    sys.exit(main())

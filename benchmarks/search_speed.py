"""Top-10 Hamming search speed: FAISS's ``IndexBinaryFlat`` against hashbench's packed-code kernel.

For each database size (default 1 million and 10 million random 64-bit codes) and backend,
prints the build time, queries per second for top-10 (exact, both in hashbench's order:
Hamming distance, then database index; FAISS's raw ``search``, which orders ties as it
likes, is timed too), the index's bytes and the process's peak resident memory so far.
Both backends' results are checked to be identical on every timed query.

    python benchmarks/search_speed.py [--sizes 1000000,10000000] [--bits 64] [--queries 200] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from hashbench.deploy.index import BinaryIndex, faiss_available, pack_bytes
from hashbench.eval.threads import set_kernel_threads


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - t0


def random_codes(rng: np.random.Generator, count: int, bits: int) -> np.ndarray:
    """Uniform random bool codes, drawn as bytes (10 M x 64 bits: 640 MB, no float temporaries)."""
    packed = rng.integers(0, 256, (count, -(-bits // 8)), dtype=np.uint8)
    return np.unpackbits(packed, axis=1, count=bits).view(bool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="kernel and FAISS threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        set_kernel_threads(args.threads)
        if faiss_available():
            import faiss

            faiss.omp_set_num_threads(args.threads)
    backends = ["kernel", *(["faiss"] if faiss_available() else [])]
    print(f"{args.bits}-bit codes, {args.queries} queries, top-{args.topk}; FAISS "
          f"{'installed' if faiss_available() else 'not installed'}")
    print(f"{'codes':>12} {'backend':<22} {'build s':>8} {'queries/s':>10} {'index MB':>9} {'peak RSS MB':>12}")
    rng = np.random.default_rng(0)
    for size in (int(s) for s in args.sizes.split(",")):
        database = random_codes(rng, size, args.bits)
        queries = random_codes(rng, args.queries, args.bits)
        results = {}
        for backend in backends:
            index, build_s = timed(BinaryIndex, database, backend=backend)
            index.search(queries[:2], args.topk)  # compile / warm up
            found, search_s = timed(index.search, queries, args.topk)
            results[backend] = found
            print(f"{size:>12,} {backend + ' (exact order)':<22} {build_s:>8.2f} {args.queries / search_s:>10.1f} "
                  f"{index.nbytes / 1e6:>9.1f} {peak_rss_mb():>12.0f}")
            if backend == "faiss":
                _, raw_s = timed(index._faiss.search, pack_bytes(queries), args.topk)
                print(f"{size:>12,} {'faiss (raw search)':<22} {'':>8} {args.queries / raw_s:>10.1f} "
                      f"{index.nbytes / 1e6:>9.1f} {peak_rss_mb():>12.0f}")
            del index
        if len(results) == 2:
            same = all(np.array_equal(getattr(results["kernel"], f), getattr(results["faiss"], f))
                       for f in ("distances", "indices"))
            print(f"{size:>12,} kernel and FAISS results identical: {same}")
        del database


if __name__ == "__main__":
    main()

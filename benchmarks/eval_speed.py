"""Retrieval-evaluation speed at dataset scale: hashbench against a per-query argsort.

Prints, for ImageNet-100 scale (5,000 x 128,503, 100 classes, mAP@1000) and COCO scale
(5,000 x 117,218, 80-label multi-hot, mAP@5000) at 16/32/64 bits: the wall time and peak
extra memory of ``hashbench.eval.evaluate`` with ``ties="index"`` and ``ties="expected"``,
and of the reference (a full stable argsort per query in a Python loop, as the older
hashing repositories do), run on ``--reference-queries`` queries and scaled to all, with
a check that both give the same mAP on those queries. Codes are random but clustered by
label, so distances have the ties and skew of trained codes.

    python benchmarks/eval_speed.py [--device cpu|cuda] [--reference-queries 500]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import tracemalloc

import numpy as np
import torch

from hashbench.eval import evaluate


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak extra memory: resident memory above the level at entry, sampled every
    millisecond, and the peak of the numpy allocations (tracemalloc) made inside; the
    larger is reported (freed memory the allocator reuses does not raise the RSS)."""

    def __enter__(self) -> PeakMemory:
        tracemalloc.start()
        self.base = rss_bytes()
        self.peak = self.base
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

    @property
    def extra_mib(self) -> float:
        return max(self.peak - self.base, self.traced_peak) / 2**20


def make_case(n_query: int, n_db: int, n_classes: int, bits: int, multi_label: bool, seed: int = 0):
    """Codes = a class prototype with 20% of its bits flipped: realistic ties and skew."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((n_classes, bits)) < 0.5

    def sample(n):
        if multi_label:
            labels = rng.random((n, n_classes)) < 3 / n_classes
            labels[labels.sum(1) == 0, rng.integers(0, n_classes)] = True
            first = labels.argmax(1)
        else:
            first = rng.integers(0, n_classes, n)
            labels = np.eye(n_classes, dtype=bool)[first]
        codes = prototypes[first] ^ (rng.random((n, bits)) < 0.2)
        return codes, labels

    return (*sample(n_query), *sample(n_db))


def reference_map(q_codes, q_labels, d_codes, d_labels, topk: int) -> float:
    """The older repositories' evaluation: a full argsort per query in a Python loop."""
    q = q_codes.astype(np.float32) * 2 - 1
    d = d_codes.astype(np.float32) * 2 - 1
    bits = q.shape[1]
    aps = []
    for i in range(len(q)):
        distance = 0.5 * (bits - d @ q[i])
        order = np.argsort(distance, kind="stable")[:topk]
        relevant = (d_labels[order] & q_labels[i]).any(1)
        found = relevant.sum()
        if found == 0:
            aps.append(0.0)
            continue
        precision = np.cumsum(relevant) / np.arange(1, topk + 1)
        aps.append(float(precision[relevant].sum() / found))
    return float(np.mean(aps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reference-queries", type=int, default=500)
    parser.add_argument("--bits", default="16,32,64")
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = [("ImageNet-100", 5000, 128_503, 100, 1000, False), ("COCO", 5000, 117_218, 80, 5000, True)]
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else os.cpu_count()} "
          f"{'GPU' if device.type == 'cuda' else 'CPU cores'}); torch {torch.__version__}")
    evaluate(np.ones((2, 16)), np.ones((5, 16)), [0, 1], [0, 1, 0, 1, 1], topks=(3,))  # compile once
    header = f"{'scale':<13}{'bits':>5}{'ties':>10}{'time s':>9}{'extra MiB':>11}{'mAP':>9}"
    print(header + f"{'argsort s (all)':>17}{'speed-up':>10}{'same mAP':>10}")
    for name, n_query, n_db, n_classes, topk, multi in cases:
        for bits in map(int, args.bits.split(",")):
            q, ql, d, dl = make_case(n_query, n_db, n_classes, bits, multi)
            q_in = torch.from_numpy(q).to(device) if device.type == "cuda" else q
            d_in = torch.from_numpy(d).to(device) if device.type == "cuda" else d
            n_ref = min(args.reference_queries, n_query)
            t0 = time.perf_counter()
            ref = reference_map(q[:n_ref], ql[:n_ref], d, dl, topk)
            ref_all = (time.perf_counter() - t0) * n_query / n_ref
            check = evaluate(q[:n_ref], d, ql[:n_ref], dl, topks=(topk,)).maps[topk]
            for ties in ("index", "expected"):
                with PeakMemory() as memory:
                    t0 = time.perf_counter()
                    result = evaluate(q_in, d_in, ql, dl, topks=(topk,), ties=ties)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    seconds = time.perf_counter() - t0
                row = f"{name:<13}{bits:>5}{ties:>10}{seconds:>9.3f}{memory.extra_mib:>11.1f}{result.maps[topk]:>9.4f}"
                if ties == "index":
                    row += f"{ref_all:>17.1f}{ref_all / seconds:>9.0f}x{abs(ref - check) < 1e-9!s:>10}"
                print(row, flush=True)


if __name__ == "__main__":
    main()

"""Running the CPU kernels on several threads.

Every kernel is a serial numba function over a range of rows (queries) that releases the
GIL (``nogil=True``); :func:`over_rows` splits the rows into chunks and runs them on a
thread pool. Numba's own ``parallel=True`` / ``prange`` would do the same, but it more than
doubles the one-time compilation every fresh environment pays (18 s instead of 8 s on one
core for the ranking kernel), and its OpenMP layer shares libgomp with torch, whose thread
count it then changed for every later training run in the process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba

#: Chunks per thread: enough to balance queries of uneven cost, few enough to be cheap.
CHUNKS_PER_THREAD = 8

_threads: int | None = None


def kernel_threads() -> int:
    """Threads the kernels use: :func:`set_kernel_threads`, else ``NUMBA_NUM_THREADS`` as numba
    reads it (by default, the cores this process may run on)."""
    return _threads or numba.config.NUMBA_NUM_THREADS or os.cpu_count() or 1


def set_kernel_threads(threads: int | None) -> None:
    """Use ``threads`` threads from now on (``None``: back to the default)."""
    global _threads
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1; got {threads}")
    _threads = threads


def over_rows(kernel: Callable[..., Any], n_rows: int, *args: Any) -> None:
    """Call ``kernel(start, stop, *args)`` over rows ``[0, n_rows)`` in chunks, in parallel.

    The kernel writes its results into arrays among ``args``, each row independently."""
    threads = min(kernel_threads(), n_rows)
    if threads <= 1:
        kernel(0, n_rows, *args)
        return
    chunk = -(-n_rows // (threads * CHUNKS_PER_THREAD))
    with ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(kernel, start, min(start + chunk, n_rows), *args) for start in range(0, n_rows, chunk)]
        for job in jobs:
            job.result()

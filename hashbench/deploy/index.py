"""Binary indexes over packed codes and exact top-k Hamming search.

Results are ordered by Hamming distance, then by database index (the stable order, the
one ``map@K`` uses), whatever the backend, so both backends return the same items:

* ``kernel``: the project's packed-code kernel (64-bit words, XOR + popcount, numba, chunks
  of queries on parallel threads); one pass per query over the database fills a distance
  histogram, which gives the k-th distance, and a second pass collects the items up to it
  in index order.
* ``faiss``: FAISS's ``IndexBinaryFlat`` (``pip install 'hashbench[search]'``). FAISS orders
  ties as it likes and may cut a tie at the k-th place anywhere, so its k-th distance is taken
  from ``search`` and every item up to it from ``range_search``, then sorted by
  (distance, index) and cut at k.

``auto`` uses FAISS when it is installed and the kernel otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from hashbench.eval.codes import pack_rows
from hashbench.eval.retrieval import hamming_distances
from hashbench.eval.threads import over_rows
from hashbench.validation import HashbenchError

BACKENDS = ("auto", "kernel", "faiss")
#: The file ``hashbench index`` writes by default, in the run folder: the database codes as
#: :func:`hashbench.results.save_arrays` writes them (``codes``: packed bytes, ``codes_bits``).
INDEX = "index.npz"


@njit(cache=True, nogil=True)
def _topk_rows(start, stop, queries, columns, k, bits, out_dist, out_index):
    """For queries ``start:stop``, the k nearest database items ordered by (distance, index)."""
    n_db = columns.shape[1]
    dist = np.empty(n_db, dtype=np.uint16)
    for q in range(start, stop):
        hamming_distances(queries[q], columns, dist)
        hist = np.zeros(bits + 1, dtype=np.int64)
        for i in range(n_db):
            hist[dist[i]] += 1
        # the k-th distance, and where each distance's items start in the output
        slot = np.zeros(bits + 2, dtype=np.int64)
        for d in range(bits + 1):
            slot[d + 1] = slot[d] + hist[d]
        cutoff = 0
        while slot[cutoff + 1] < k:
            cutoff += 1
        for i in range(n_db):  # index order within each distance: a stable counting sort
            d = dist[i]
            if d <= cutoff and slot[d] < k:
                out_dist[q, slot[d]] = d
                out_index[q, slot[d]] = i
                slot[d] += 1


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_available() -> bool:
    return _faiss() is not None


@dataclass
class SearchResult:
    """Top-k of each query: ``distances`` and database positions ``indices``, both (Q, k)."""

    distances: np.ndarray
    indices: np.ndarray


class BinaryIndex:
    """Exact Hamming top-k over a fixed set of codes (bool (N, bits))."""

    def __init__(self, codes: np.ndarray, *, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise HashbenchError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        if backend == "faiss" and not faiss_available():
            raise HashbenchError("backend faiss needs faiss-cpu: pip install 'hashbench[search]'")
        self.backend = "faiss" if backend == "faiss" or (backend == "auto" and faiss_available()) else "kernel"
        self.bits = int(codes.shape[1])
        self.size = int(codes.shape[0])
        if self.backend == "kernel":
            self._columns = np.ascontiguousarray(pack_rows(codes).T)  # word-major: one column per 64-bit word
        else:
            faiss = _faiss()
            self._faiss = faiss.IndexBinaryFlat(_byte_bits(self.bits))
            self._faiss.add(pack_bytes(codes))

    @property
    def nbytes(self) -> int:
        """Memory the codes take in the index."""
        return int(self._columns.nbytes) if self.backend == "kernel" else self.size * _byte_bits(self.bits) // 8

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` nearest items of each query (bool (Q, bits)), by (distance, database index)."""
        if queries.ndim != 2 or queries.shape[1] != self.bits:
            raise HashbenchError(f"queries must be (Q, {self.bits}) codes; got shape {queries.shape}")
        k = min(int(k), self.size)
        if self.backend == "kernel":
            distances = np.zeros((len(queries), k), dtype=np.int32)
            indices = np.zeros((len(queries), k), dtype=np.int64)
            over_rows(_topk_rows, len(queries), pack_rows(queries), self._columns, k, self.bits, distances, indices)
            return SearchResult(distances, indices)
        return self._search_faiss(pack_bytes(queries), k)

    def _search_faiss(self, packed: np.ndarray, k: int) -> SearchResult:
        kth = self._faiss.search(packed, k)[0][:, -1].astype(np.int64)
        # one range search for all queries, out to the largest k-th distance (radius is exclusive)
        limits, found_dist, found_ids = self._faiss.range_search(packed, int(kth.max()) + 1)
        distances = np.zeros((len(packed), k), dtype=np.int32)
        indices = np.zeros((len(packed), k), dtype=np.int64)
        for q in range(len(packed)):  # every item up to the k-th distance, then the stable order
            dist, ids = found_dist[limits[q] : limits[q + 1]], found_ids[limits[q] : limits[q + 1]]
            order = np.lexsort((ids, dist))[:k]
            distances[q], indices[q] = dist[order], ids[order]
        return SearchResult(distances, indices)


def _byte_bits(bits: int) -> int:
    return -(-bits // 8) * 8


def pack_bytes(codes: np.ndarray) -> np.ndarray:
    """Bool (N, bits) codes as uint8 bytes, zero-padded to whole bytes (FAISS's binary vectors)."""
    return np.ascontiguousarray(np.packbits(codes, axis=1))

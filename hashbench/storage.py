"""Atomic file writes (a crash at any moment leaves the old file or the new one, never a
torn one), no replacing of a file unless asked, an exclusive lock between processes, and
file digests."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hashbench.validation import HashbenchError


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent, never removed: removing
    it would let two processes lock two different files); other holders wait."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def refuse_to_replace(path: Path, force: bool) -> None:
    """Replace an existing file only when asked (``--force``): a file the user keeps under
    that name would be lost without a word."""
    if path.exists() and not force:
        raise HashbenchError(f"{path} exists; --force replaces it")


@functools.lru_cache(maxsize=64)
def _file_sha256(resolved_path: str, mtime_ns: int, size: int) -> str:
    """Hash a file once per process; mtime and size in the cache key catch a rewritten file."""
    digest = hashlib.sha256()
    with open(resolved_path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content (read in blocks), the same whichever path names it."""
    resolved = path.resolve()
    stat = resolved.stat()
    return _file_sha256(str(resolved), stat.st_mtime_ns, stat.st_size)

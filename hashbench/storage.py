"""Atomic file writes (a crash at any moment leaves the old file or the new one, never a
torn one), no replacing of a file unless asked, an exclusive lock between processes, and
file digests."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hashbench.validation import HashbenchError


class DiskFullError(HashbenchError):
    """A write ran out of space: said in plain words, whatever layer (Python, torch) hit it."""


def _disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a full disk: ENOSPC, or torch's stream writer failing on it (``file write failed``)."""
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    return isinstance(err, RuntimeError) and "file write failed" in str(err)


def _umask() -> int:
    """The process's umask, read by setting it and putting it back (a thread that creates a file
    in between gets the common 022, not an open 000)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The suffix of :func:`atomic_write`'s temporary files.
TEMPORARY_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` (``.<name>.*.tmp``, :func:`remove_orphan_temporaries`),
    fsync it, then rename it over ``path``. The file gets the permissions a plain ``open`` would give
    it (``mkstemp`` makes it 0600); a full disk is a :class:`DiskFullError` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, mode) as handle:
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _disk_full(err):
            raise DiskFullError(f"no space left on device: cannot write {path}") from err
        raise


def remove_orphan_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left in ``folder`` (call it only
    while no other process writes there, e.g. holding the run's claim); returns them."""
    orphans = sorted(folder.glob(f".*{TEMPORARY_SUFFIX}"))
    for path in orphans:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return orphans


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

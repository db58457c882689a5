"""Run claims: at most one process trains a run at a time, whoever starts it.

A claim is ``claim.json`` in the run's folder, created with ``O_CREAT | O_EXCL`` (atomic
on local and NFSv3+ file systems) and holding its owner (host, pid, start time). While
the run trains, a thread touches the file every ``HEARTBEAT_S`` seconds. A claim whose
owner is a dead process on this host, or whose heartbeat is older than ``STALE_S``, is
stale: it is taken over by renaming it away (only one taker's rename succeeds) and
claiming afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

CLAIM = "claim.json"
HEARTBEAT_S = 10.0
STALE_S = 120.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(path: Path) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return age > 5.0  # being written right now, or torn long ago
    if owner.get("host") == socket.gethostname() and not _pid_alive(int(owner.get("pid", -1))):
        return True
    return age > STALE_S


class Claim:
    """``with Claim(folder) as claim:`` ... ``claim.acquired`` says whether this process owns the run."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CLAIM
        self.acquired = False
        self.recovered = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try_create(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, handle)
        return True

    def __enter__(self) -> Claim:
        self.acquired = self._try_create()
        if not self.acquired and _is_stale(self.path):
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.path, self.path.with_name(f"{CLAIM}.stale-{os.getpid()}"))
                os.unlink(self.path.with_name(f"{CLAIM}.stale-{os.getpid()}"))
            self.acquired = self.recovered = self._try_create()
        if self.acquired:
            self._thread = threading.Thread(target=self._heartbeat, daemon=True)
            self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def __exit__(self, *exc: object) -> None:
        if not self.acquired:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

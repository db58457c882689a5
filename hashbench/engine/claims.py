"""Run claims: at most one process trains a run at a time, whoever starts it.

A claim is ``claim.json`` in the run's folder, created with ``O_CREAT | O_EXCL`` (atomic
on local and NFSv3+ file systems) and holding its owner (host, pid, start time). While
the run trains, a thread touches the file every ``HEARTBEAT_S`` seconds. A claim whose
owner is a dead process on this host, or whose heartbeat is older than ``STALE_S``, is
stale. Taking one over is check-and-replace, so it happens under an exclusive
``flock`` on ``claim.lock`` beside it: a second taker waits, re-checks, and finds the
first taker's fresh claim live. The lock file is never removed (removing it would let two
processes lock two different files).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

from hashbench.storage import exclusive_lock

CLAIM = "claim.json"
TAKEOVER_LOCK = "claim.lock"
HEARTBEAT_S = 10.0
STALE_S = 120.0
TORN_GRACE_S = 5.0


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
    except FileNotFoundError:
        return True
    except OSError:
        return False  # cannot inspect it: respect it rather than risk two owners
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return age > TORN_GRACE_S  # being written right now, or torn long ago
    if not isinstance(owner, dict):
        return age > TORN_GRACE_S
    try:
        pid = int(owner.get("pid", -1))
    except (TypeError, ValueError):
        pid = -1
    if pid > 0 and owner.get("host") == socket.gethostname() and not _pid_alive(pid):
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

    def _take_over_if_stale(self) -> None:
        with exclusive_lock(self.path.parent / TAKEOVER_LOCK):
            if not _is_stale(self.path):
                return
            try:
                self.path.unlink()
                replaced = True
            except FileNotFoundError:  # its owner released it meanwhile
                replaced = False
            self.acquired = self._try_create()
            self.recovered = self.acquired and replaced

    def __enter__(self) -> Claim:
        self.acquired = self._try_create()
        if not self.acquired:
            self._take_over_if_stale()
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

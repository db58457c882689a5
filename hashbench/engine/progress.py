"""Progress output that suits where it goes: a live tqdm bar on a terminal, and a few plain
lines in a log file (CI, Slurm, ``> log``), where tqdm's carriage-return redraws become
thousands of lines.

Off a terminal, a stage prints at most one line every ``min_interval_s`` seconds and one
when it ends, each with done/total, rate and ETA.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class PlainProgress:
    """tqdm's ``update``/``set_postfix``/``close`` as occasional whole lines."""

    def __init__(self, total: int, *, desc: str, unit: str, initial: int, stream: TextIO,
                 min_interval_s: float) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.min_interval_s = min_interval_s
        self.done = self._initial = initial
        self._postfix: dict[str, object] = {}
        self._started = self._last_line = time.monotonic()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_line >= self.min_interval_s and self.done < self.total:
            self._write(now)

    def set_postfix(self, **values: object) -> None:
        self._postfix = values

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self._last_line = now
        elapsed = now - self._started
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.done}/{self.total} {self.unit}", f"{rate:.3g} {self.unit}/s",
                 f"elapsed {_clock(elapsed)}"]
        if self.done < self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        parts += [f"{name}={value}" for name, value in self._postfix.items()]
        self.stream.write(", ".join(parts) + "\n")
        self.stream.flush()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int, *, desc: str, unit: str, initial: int = 0, enabled: bool = True,
             stream: TextIO | None = None, min_interval_s: float = 30.0) -> tqdm | PlainProgress:
    """A progress reporter for ``total`` units (``initial`` of them done already) written to
    ``stream`` (stderr by default): tqdm on a terminal, :class:`PlainProgress` elsewhere, and
    a silent one when not ``enabled``. All three have ``update(n)``, ``set_postfix(**values)``,
    ``close()`` and work as context managers."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(total=total, disable=True)
    if stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, dynamic_ncols=True)
    return PlainProgress(total, desc=desc, unit=unit, initial=initial, stream=stream, min_interval_s=min_interval_s)

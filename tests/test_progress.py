"""Progress output off a terminal: a few whole lines with rate and ETA, never carriage returns."""

from __future__ import annotations

import io

from tqdm import tqdm

from hashbench.engine import progress as progress_module
from hashbench.engine.progress import PlainProgress, progress


def test_non_tty_stream_gets_a_few_plain_lines():
    stream = io.StringIO()
    with progress(1000, desc="features small_cnn", unit="img", stream=stream) as bar:
        assert isinstance(bar, PlainProgress)
        for _ in range(1000):
            bar.update(1)
    text = stream.getvalue()
    assert "\r" not in text
    assert text.count("\n") == 1  # well under the default interval: the end line only
    assert text.startswith("features small_cnn: 1000/1000 img, ") and " img/s" in text


def test_periodic_lines_carry_rate_eta_and_postfix(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    bar = progress(10, desc="csq digits 16b s0", unit="ep", initial=2, stream=stream, min_interval_s=30.0)
    for _ in range(8):
        now[0] += 10.0  # one epoch every 10 s: a line every third epoch
        bar.set_postfix(loss="0.1234")
        bar.update(1)
    bar.close()
    bar.close()  # closing twice writes the end line once
    lines = stream.getvalue().splitlines()
    assert lines[0] == "csq digits 16b s0: 5/10 ep, 0.1 ep/s, elapsed 00:30, ETA 00:50, loss=0.1234"
    assert len(lines) == 3 and lines[-1].startswith("csq digits 16b s0: 10/10 ep, 0.1 ep/s, elapsed 01:20, loss=")


def test_disabled_progress_writes_nothing():
    stream = io.StringIO()
    with progress(5, desc="x", unit="it", enabled=False, stream=stream) as bar:
        bar.update(5)
    assert stream.getvalue() == ""


def test_terminal_gets_a_live_tqdm_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with progress(3, desc="x", unit="it", stream=Terminal()) as bar:
        assert isinstance(bar, tqdm)

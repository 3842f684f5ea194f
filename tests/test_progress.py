"""The progress helper: a bar on a terminal, throttled plain lines in a log, nothing when quiet."""

from __future__ import annotations

import io

import pytest

from sodakit.progress import INTERVAL_ENV, Progress, log_interval


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_plain_line_per_interval_and_a_last_line():
    clock, log = FakeClock(), io.StringIO()
    bar = Progress("train", total=100, unit="step", interval=10, file=log, clock=clock)
    for _ in range(100):  # one step every 0.5 s: 50 s in all
        clock.now += 0.5
        bar.update(1, loss=2.5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    # lines at 10, 20, 30, 40, 50 s and the closing one
    assert len(lines) == 6
    assert lines[0] == "train:  20% 20/100 [00:10<00:40,  2.00step/s, loss=2.5]"
    assert lines[-1].startswith("train: 100% 100/100 [00:50<00:00")
    bar.close()  # closing twice prints nothing more
    assert len(log.getvalue().splitlines()) == 6


def test_resumed_counts_rate_from_where_the_job_started_and_unknown_totals_have_no_eta():
    clock, log = FakeClock(), io.StringIO()
    with Progress("train", total=100, unit="step", initial=60, interval=5, file=log, clock=clock) as bar:
        clock.now += 5
        bar.update(10)
    assert log.getvalue().splitlines()[0] == "train:  70% 70/100 [00:05<00:15,  2.00step/s]"
    log = io.StringIO()
    with Progress("pack", unit="doc", interval=1, file=log, clock=clock) as bar:
        clock.now += 2
        bar.update(40)
    assert log.getvalue().splitlines()[0] == "pack: 40doc [00:02, 20.00doc/s]"


def test_quiet_prints_messages_only_and_an_idle_job_prints_nothing():
    log = io.StringIO()
    with Progress("eval", total=3, quiet=True, file=log, interval=0.001) as bar:
        bar.update(3)
        bar.write("val_loss 2.1")
    assert log.getvalue() == "val_loss 2.1\n"
    log = io.StringIO()
    with Progress("eval", total=3, file=log):
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_a_live_bar_and_messages_above_it():
    term = Terminal()
    with Progress("tokenize", total=4, unit="utt", file=term) as bar:
        assert bar.mode == "bar"
        bar.update(2, hours=0.5)
        bar.write("shard 0 done")
        bar.update(2)
    out = term.getvalue()
    assert "\r" in out and "shard 0 done\n" in out and "4/4" in out and "hours=0.5" in out


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.25")
    assert log_interval() == 0.25 and Progress("x", file=io.StringIO()).interval == 0.25
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(INTERVAL_ENV, bad)
        with pytest.raises(ValueError, match=INTERVAL_ENV):
            log_interval()
    monkeypatch.delenv(INTERVAL_ENV)
    assert log_interval() == 30.0

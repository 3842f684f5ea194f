"""Progress of long jobs, the same way in every command: a live bar on a terminal, a status line now
and then in a log, nothing when asked to be quiet.

    with Progress("pack", unit="doc", quiet=cfg.quiet) as bar:
        for doc in documents:
            ...
            bar.update(1, shards=n)             # the count, and status fields shown after it
        bar.write("pack: shard 3 written")      # a message line that does not break the bar

Where the output goes is decided once, from the stream (stderr unless another is given):

- a terminal: a tqdm bar redrawn in place (count, rate, ETA and the status fields);
- anything else (a file, a pipe, a scheduler's log): the same text as one plain line at most once every
  `interval` seconds (default 30, or the SODAKIT_PROGRESS_SECONDS environment variable), plus a last line
  when the job ends. A redirected day-long run logs a few thousand lines instead of one carriage-return
  redraw per step;
- quiet: no progress output. `write` messages are still printed: they are results (a validation loss,
  a file written), not progress.

This is a shared utility: every stage may use it, and it imports no stage.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

DEFAULT_INTERVAL_S = 30.0
INTERVAL_ENV = "SODAKIT_PROGRESS_SECONDS"


def log_interval() -> float:
    """Seconds between two status lines in a log: $SODAKIT_PROGRESS_SECONDS, else 30."""
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds > 0")
    return value


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _fmt_status(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """One job's progress (see the module docstring). `total` None: a count without percentage or ETA."""

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "it",
        *,
        initial: int = 0,
        quiet: bool = False,
        interval: float | None = None,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.n = self.start = initial
        self.file = file if file is not None else sys.stderr
        self.interval = log_interval() if interval is None else float(interval)
        self.clock = clock
        self.t0 = self.last_line = clock()
        self.status: dict[str, Any] = {}
        self.mode = "quiet" if quiet else ("bar" if _is_terminal(self.file) else "log")
        self.bar: tqdm | None = None
        if self.mode == "bar":
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.file, dynamic_ncols=True)
        self.closed = False

    @property
    def quiet(self) -> bool:
        return self.mode == "quiet"

    def update(self, n: int = 1, **status: Any) -> None:
        """Count `n` more units done; keyword arguments replace status fields shown after the count."""
        self.n += n
        self.status.update(status)
        if self.bar is not None:
            if status:
                self.bar.set_postfix({k: _fmt_status(v) for k, v in self.status.items()}, refresh=False)
            self.bar.update(n)
        elif self.mode == "log":
            now = self.clock()
            if now - self.last_line >= self.interval:
                self.last_line = now
                self._print(self.line(now))

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """Yield the items, counting each one once the loop body is done with it (`continue` included)."""
        for item in items:
            yield item
            self.update(1)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def line(self, now: float | None = None) -> str:
        """The status as one line: `desc:  20% 40/200 [00:12<00:49,  3.25step/s, loss=2.31]`."""
        elapsed = max((self.clock() if now is None else now) - self.t0, 0.0)
        done = self.n - self.start
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        postfix = ", ".join(f"{k}={_fmt_status(v)}" for k, v in self.status.items()) or None
        return tqdm.format_meter(self.n, self.total, elapsed, ncols=0, prefix=self.desc, unit=self.unit, rate=rate,
                                 postfix=postfix)

    def write(self, message: str) -> None:
        """Print a message line (also when quiet); on a terminal the bar is redrawn below it."""
        if self.bar is not None:
            self.bar.write(message, file=self.file)
        else:
            self._print(message)

    def close(self) -> None:
        """End the job's progress: the bar stays on the terminal, a log gets the last status line (when
        anything was done)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.n > self.start:
            self._print(self.line())

    def _print(self, text: str) -> None:
        print(text, file=self.file, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def library_bars_off_in_logs() -> Iterator[None]:
    """Hugging Face libraries draw their own tqdm bars (transformers' "Loading weights"), redrawn with
    carriage returns: turned off for the duration when stderr is not a terminal."""
    if _is_terminal(sys.stderr):
        yield
        return
    from transformers.utils import logging as hf_logging  # only where a caller loads a transformers model

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()

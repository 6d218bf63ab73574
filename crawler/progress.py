"""What the terminal shows while a long command runs, and where a crawl's full log goes.

A person at a terminal wants to know how far a crawl has got, not Scrapy's start-up
report (versions, every middleware, every setting). cron and systemd want a short
mail: warnings, errors and the summary. Both get what they need from one rule:

- The full log (Scrapy's and ours, at ``--log-level``) always goes to a log file next
  to the archive, ``<archive>.log`` (``archive.db.log``), rotated by size
  (``PRESSARCHIVE_LOG_MAX_BYTES``, ``PRESSARCHIVE_LOG_BACKUPS`` old files kept).
- When stderr is a terminal, a live table (rich) shows each source's state and counts,
  redrawn four times a second from the crawl's own numbers
  (:mod:`crawler.middlewares.progress`); warnings and errors are printed above it.
- Without a terminal, only warnings and errors reach stderr, one line each.
- ``--verbose`` puts the full log back on stderr, as Scrapy prints it, and no table.

``export`` and ``reextract`` show a progress bar in a terminal (:func:`progress_bar`)
and nothing more without one. Rich is imported only when something is drawn.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from logging.handlers import RotatingFileHandler
from pathlib import Path

REFRESH_SECONDS = 0.25  # four redraws a second: live enough, and costs the crawl nothing measurable
SHORT_FORMAT = "%(levelname)s: %(message)s"  # one line per warning on the terminal; the file has the rest
NUMBERS = ("requests", "new", "changed", "removed", "errors")  # the table's columns after source and state
STATE_STYLES = {"waiting": "dim", "crawling": "cyan", "done": "green", "failed": "bold red"}


@dataclass
class CrawlOutput:
    """Where a crawl's output goes (:func:`crawler.runner.run_crawl`)."""

    log_path: Path | None  # the full log; None: no file
    verbose: bool = False  # the full log on stderr too, and no live table
    console: object = None  # a rich Console (:func:`terminal`): the live table is drawn there


def terminal():
    """A rich Console on stderr when stderr is a terminal that can redraw, else None."""
    stream = sys.stderr
    if not (getattr(stream, "isatty", None) and stream.isatty()) or os.environ.get("TERM") in ("dumb", "unknown"):
        return None
    from rich.console import Console

    return Console(stderr=True)


def default_log_path(db_path) -> Path:
    """``archive.db`` -> ``archive.db.log``: beside the archive, as its ``.lock`` is; never the archive itself."""
    path = Path(db_path)
    return path.with_name(path.name + ".log")


# -- where the log goes ------------------------------------------------------------------


class ConsoleHandler(logging.Handler):
    """Log records printed through a rich Console: above a live display, never through it."""

    def __init__(self, console, level=logging.NOTSET):
        super().__init__(level)
        self.console = console

    def emit(self, record):
        from rich.text import Text

        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never stop the crawl
            self.handleError(record)


class LogFile(RotatingFileHandler):
    """The rotated log file. A write that fails (a full disk: the log sits next to the archive)
    is one warning line on stderr, not a traceback per record; the file is left alone after it."""

    failed = False

    def emit(self, record):
        if not self.failed:
            super().emit(record)

    def handleError(self, record):
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self._failed(error)
        else:
            super().handleError(record)

    def flush(self):
        try:
            super().flush()
        except OSError as error:
            self._failed(error)

    def close(self):
        try:
            super().close()
        except OSError as error:  # the last buffered lines, on a disk still full
            self._failed(error)

    def _failed(self, error: OSError):
        if not self.failed:
            self.failed = True
            print(f"Warning: cannot write the log file {self.baseFilename}: {error.strerror or error}; "
                  "from here on only warnings and errors are kept (on stderr)", file=sys.stderr)


def route_logs(settings, log_path: Path | None, console=None, verbose: bool = False) -> list[logging.Handler]:
    """Install the crawl's log handlers on the root logger (in place of Scrapy's); return them.

    The file gets every record at ``LOG_LEVEL`` with Scrapy's format. The terminal gets the
    same with ``verbose``, else warnings and errors only, one short line each (through
    ``console`` when a live display is drawn there). A log file that cannot be opened is one
    warning line; the crawl goes on without it.
    """
    level = logging.getLevelName(settings.get("LOG_LEVEL", "INFO"))
    full = logging.Formatter(settings.get("LOG_FORMAT"), settings.get("LOG_DATEFORMAT"))
    handlers = []
    if log_path is not None:
        try:
            file_handler = LogFile(
                log_path, maxBytes=settings.getint("PRESSARCHIVE_LOG_MAX_BYTES"),
                backupCount=settings.getint("PRESSARCHIVE_LOG_BACKUPS"), encoding="utf-8")
        except OSError as exc:
            print(f"Warning: cannot write the log file {log_path}: {exc.strerror or exc}; "
                  "only warnings and errors are kept (on stderr)", file=sys.stderr)
        else:
            file_handler.setLevel(level)
            file_handler.setFormatter(full)
            handlers.append(file_handler)
    if verbose:
        terminal_handler = logging.StreamHandler(sys.stderr)
        terminal_handler.setLevel(level)
        terminal_handler.setFormatter(full)
    else:
        terminal_handler = ConsoleHandler(console) if console is not None else logging.StreamHandler(sys.stderr)
        terminal_handler.setLevel(max(level, logging.WARNING))
        terminal_handler.setFormatter(logging.Formatter(SHORT_FORMAT))
    handlers.append(terminal_handler)
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    return handlers


def unroute_logs(handlers) -> None:
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()


# -- the crawl's live table --------------------------------------------------------------


class CrawlDisplay:
    """The live table of a crawl: one row per source, redrawn from the reactor four times a second.

    Drawn in the reactor's thread (a Twisted ``LoopingCall``), so it reads the crawl's
    counts between two callbacks, never while they change; rich's own refresh thread is off.
    """

    def __init__(self, console, db_path, log_path: Path | None, batch_size: int):
        self.console = console
        self.db_path = db_path
        self.log_path = log_path
        self.batch_size = batch_size
        self.started = time.monotonic()
        self.stopping = False  # a first Ctrl-C/SIGTERM: what is in flight is being finished
        self.tracker = None
        self.source_ids: list[str] = []
        self.live = None
        self.loop = None
        self._last_frame = None

    def attach(self, crawler, source_ids) -> None:
        from scrapy import signals

        from crawler.middlewares.progress import tracker_of

        self.tracker = tracker_of(crawler)
        self.source_ids = list(source_ids)
        crawler.signals.connect(self._engine_started, signal=signals.engine_started)
        crawler.signals.connect(self._engine_stopped, signal=signals.engine_stopped)

    def start(self) -> None:
        from rich.live import Live

        self.started = time.monotonic()
        self.live = Live(self.render([]), console=self.console, auto_refresh=False, transient=True,
                         vertical_overflow="crop")
        self._last_frame = None
        self.live.start(refresh=True)

    def stop(self) -> None:
        """The last frame, with the final counts (the crawl's runs are closed by now), then away:
        the summary lines take its place."""
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.live is not None:
            try:
                self.refresh()
            finally:
                self.live.stop()
                self.live = None

    def _engine_started(self):
        from twisted.internet.task import LoopingCall

        self.loop = LoopingCall(self.refresh)
        self.loop.start(REFRESH_SECONDS, now=True)

    def _engine_stopped(self):
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def refresh(self) -> None:
        """Redraw, when a number, a state or the clock's second has changed since the last frame."""
        if self.live is None or self.tracker is None:
            return
        rows = self.tracker.states(self.source_ids)
        frame = (self.elapsed(), self.stopping, [tuple(vars(row).values()) for row in rows])
        if frame != self._last_frame:
            self._last_frame = frame
            self.live.update(self.render(rows), refresh=True)

    def elapsed(self) -> str:
        return str(timedelta(seconds=int(time.monotonic() - self.started)))

    def render(self, rows):
        """The frame: a header, one line per source, a total line and a note.

        Plain lines padded to their columns' widths, not a rich Table: a table measures
        every cell again on every frame (15 ms for 20 sources, in the reactor's thread);
        these take well under a millisecond."""
        from rich.text import Text

        finished = sum(row.state in ("done", "failed") for row in rows)
        total = len(rows) or len(self.source_ids)
        frame = Text.assemble(("pressarchive crawl", "bold"), f" into {self.db_path}   {self.elapsed()}   ",
                              (f"{finished} of {total} sources done", "bold"), no_wrap=True, overflow="ellipsis")
        if self.stopping:
            frame.append("\nstopping: finishing what is in flight (Ctrl-C again stops now, after storing what was "
                         "fetched)", style="yellow")
        shown, hidden = self._fit(rows)
        sums = [sum(getattr(row, key) for row in rows) for key in NUMBERS]
        name_width = max([len("all sources"), *(len(row.source_id) for row in shown)])
        widths = [max(len(key), len(str(n))) for key, n in zip(NUMBERS, sums)]
        state_width = max(len(state) for state in STATE_STYLES)

        def numbers(values) -> str:
            return "  ".join(str(v).rjust(w) for v, w in zip(values, widths))

        frame.append("\n" + "source".ljust(name_width) + "  " + "state".ljust(state_width) + "  "
                     + "  ".join(key.rjust(w) for key, w in zip(NUMBERS, widths)), style="bold")
        for row in shown:
            frame.append("\n" + row.source_id.ljust(name_width) + "  ")
            frame.append(row.state.ljust(state_width), style=STATE_STYLES[row.state])
            frame.append("  " + numbers(getattr(row, key) for key in NUMBERS))
        if hidden:
            counts = {state: sum(row.state == state for row in hidden) for state in STATE_STYLES}
            frame.append(f"\n… {len(hidden)} more: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
                         style="dim")
        if len(rows) > 1:
            frame.append("\n" + "all sources".ljust(name_width) + "  " + " " * state_width + "  " + numbers(sums),
                         style="bold")
        note = f"new, changed, removed: as written to the archive (in batches of {self.batch_size})"
        if self.log_path is not None:
            note += f"   full log: {self.log_path}"
        frame.append("\n" + note, style="dim")
        return frame

    def _fit(self, rows):
        """The rows that fit the terminal: crawling, then failed, waiting and done ones."""
        room = max(3, self.console.size.height - 7)
        if len(rows) <= room:
            return rows, []
        rank = {"crawling": 0, "failed": 1, "waiting": 2, "done": 3}
        keep = set(sorted(range(len(rows)), key=lambda i: (rank[rows[i].state], i))[:room - 1])
        return [r for i, r in enumerate(rows) if i in keep], [r for i, r in enumerate(rows) if i not in keep]


# -- export and reextract -----------------------------------------------------------------


@contextmanager
def progress_bar(description: str):
    """In a terminal: progress bars, yielding ``update(done, total=None, what=None)``; each
    ``what`` (default ``description``) is a line of its own, kept until the end (export: one
    per table). Without a terminal: yields None, and nothing is printed."""
    console = terminal()
    if console is None:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, refresh_per_second=4) as bar:
        tasks = {}

        def update(done: int, total: int | None = None, what: str | None = None):
            what = what or description
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield update

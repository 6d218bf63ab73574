"""The terminal is a room too: what ``crawl``, ``export`` and ``reextract`` print (issue 22).

In a terminal (a real pseudo-terminal here, 120x40): a live table of the sources with
their state and counts, warnings and errors above it, no Scrapy start-up report; the
summary lines after it. Without one (pipes, as under cron): warnings and errors on
stderr and the summary lines on stdout, nothing else. The full log is in
``<archive>.log`` either way; ``--verbose`` puts it back on stderr.
Real crawls of the fixture sites, in a child process, as a user runs them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import sqlite_utils
from conftest import child_env

SCRAPY_START_UP = ("Scrapy 2.", "Enabled downloader middlewares", "Overridden settings", "Enabled extensions")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ROW = re.compile(r"^(?P<source>[a-z][a-z0-9-]+)\s+(?P<state>waiting|crawling|done|failed)"
                 r"\s+(?P<requests>\d+)\s+(?P<new>\d+)\s+(?P<changed>\d+)\s+(?P<removed>\d+)\s+(?P<errors>\d+)\s*$")
DEAD = """
[[sources]]
id = "dead"
name = "Unreachable"
country = "CA"
kind = "government"
languages = ["en"]
feeds = ["http://127.0.0.1:9/feed.xml"]
article_pattern = 'x'
delay = 0
"""


def in_terminal(args, cwd, timeout=180) -> tuple[int, str]:
    """``python -m crawler ARGS`` with stdin, stdout and stderr on a 120x40 pseudo-terminal;
    returns the exit code and everything written to the terminal (escape sequences and all)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = child_env(TERM="xterm-256color")
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES"):
        env.pop(name, None)
    child = subprocess.Popen([sys.executable, "-m", "crawler", *map(str, args)], cwd=cwd, env=env,
                             stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has closed it
                    break
                if not chunk:
                    break
                output += chunk
            elif child.poll() is not None:
                break
        code = child.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return code, output.decode("utf-8", "replace")


def piped(args, cwd, timeout=180) -> subprocess.CompletedProcess:
    env = child_env()
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "crawler", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def screen_lines(output: str) -> list[str]:
    """The lines drawn on the terminal, escape sequences taken out (every frame of the table included)."""
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", ANSI.sub("", output))]


def summary_line(row) -> str:
    return (f"{row['source_id']}: {row['status']} ({row['new']} new, {row['changed']} changed, "
            f"{row['unchanged']} unchanged, {row['removed']} removed, {row['errors']} errors, "
            f"{row['requests']} requests)")


def last_run(db_path) -> dict[str, dict]:
    db = sqlite_utils.Database(db_path)
    return {r["source_id"]: r for r in db.query(
        "select * from crawl_runs where run_id = (select max(run_id) from crawl_runs) order by id")}


def test_a_crawl_in_a_terminal_shows_progress_and_no_scrapy_start_up(tmp_path, fixture_sources):
    sources = tmp_path / "with-dead.toml"
    sources.write_text(fixture_sources.read_text(encoding="utf-8") + DEAD, encoding="utf-8")
    code, output = in_terminal(["crawl", "--sources", sources, "--db", "archive.db"], tmp_path)
    assert code == 1, output[-3000:]  # the dead source failed
    runs = last_run(tmp_path / "archive.db")
    assert len(runs) == 5
    for marker in SCRAPY_START_UP:
        assert marker not in output, f"Scrapy's start-up report on the terminal: {marker!r}"
    lines = screen_lines(output)
    assert "[scrapy" not in output and "INFO" not in output and "DEBUG" not in output
    # The live table: a header with the sources done of all, one row per source.
    assert any(line.startswith("pressarchive crawl into archive.db") and "of 5 sources done" in line
               for line in lines), output[-3000:]
    assert any("source" in line and "state" in line and "requests" in line and "removed" in line for line in lines)
    frames = [m.groupdict() for line in lines if (m := ROW.match(line))]
    assert {f["source"] for f in frames} == set(runs)
    # Its last frame holds the final numbers: those crawl_runs got, each source done or failed.
    last = {f["source"]: f for f in frames}
    for source_id, run in runs.items():
        shown = last[source_id]
        assert {k: int(shown[k]) for k in ("requests", "new", "changed", "removed", "errors")} == \
            {k: run[k] for k in ("requests", "new", "changed", "removed", "errors")}, (source_id, shown, run)
        assert shown["state"] == ("failed" if run["status"] == "failed" else "done"), (shown, run)
    assert runs["dead"]["status"] == "failed" and runs["fixture-feed"]["new"] > 0
    assert any(line.startswith("pressarchive crawl into archive.db") and "5 of 5 sources done" in line
               for line in lines)
    # Errors are printed above the table, one line each, naming the source and the URL.
    assert [line for line in lines if line.startswith("ERROR: source 'dead'")], output[-3000:]
    # After the table: the summary lines, exactly as crawl_runs has them, and where the log is.
    tail = lines[lines.index("Archive: archive.db") - len(runs):]
    assert tail[:len(runs)] == [summary_line(run) for run in runs.values()]
    assert tail[len(runs) + 1].startswith("Log: archive.db.log (the full log; the crawl took ")
    log = (tmp_path / "archive.db.log").read_text(encoding="utf-8")
    assert all(marker in log for marker in SCRAPY_START_UP)


def test_without_a_terminal_the_output_is_the_summary_and_the_log_file_holds_the_rest(
        tmp_path, fixture_servers, fixture_sources, expected):
    result = piped(["crawl", "--sources", fixture_sources, "--db", "archive.db"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = last_run(tmp_path / "archive.db")
    assert result.stdout.splitlines() == [summary_line(run) for run in runs.values()] + ["Archive: archive.db"]
    # stderr: the fixture listing's 404 and its page without text, one line each; nothing else.
    missing = expected["listing_site"]["missing"][0]
    errors = result.stderr.splitlines()
    assert len(errors) == 2, result.stderr
    assert errors[0].startswith("ERROR: source 'fixture-listing': could not fetch release ") and missing in errors[0]
    assert errors[1].startswith("WARNING: source 'fixture-listing': no main text in ")
    for marker in SCRAPY_START_UP:
        assert marker not in result.stderr
    # The full log is next to the archive: Scrapy's start-up report, every level, the stats dump.
    log = (tmp_path / "archive.db.log").read_text(encoding="utf-8")
    for marker in (*SCRAPY_START_UP, "[scrapy.core.engine] INFO: Spider opened", "Dumping Scrapy stats",
                   "[crawler.runner] INFO: pressarchive crawl: run ", missing, "no main text in "):
        assert marker in log, marker
    assert sum("HTTP 404" in line and missing in line for line in log.splitlines()) == 1


def test_verbose_brings_the_full_log_back_to_stderr(tmp_path, fixture_sources):
    result = piped(["crawl", "fixture-feed", "--sources", fixture_sources, "--db", "archive.db", "--verbose"],
                   tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for marker in (*SCRAPY_START_UP, "[scrapy.core.engine] INFO: Spider opened", "Dumping Scrapy stats"):
        assert marker in result.stderr, marker
    run = last_run(tmp_path / "archive.db")["fixture-feed"]
    assert result.stdout.splitlines() == [summary_line(run), "Archive: archive.db"]
    assert "Enabled downloader middlewares" in (tmp_path / "archive.db.log").read_text(encoding="utf-8")


def test_log_file_option_and_an_unwritable_log_file(tmp_path, fixture_sources):
    (tmp_path / "logs").mkdir()
    result = piped(["crawl", "fixture-feed", "--sources", fixture_sources, "--db", "archive.db",
                    "--log-file", "logs/crawl.log", "--log-level", "WARNING"], tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
    assert not (tmp_path / "archive.db.log").exists()
    assert (tmp_path / "logs" / "crawl.log").is_file()  # at WARNING: no start-up report
    assert "Enabled downloader middlewares" not in (tmp_path / "logs" / "crawl.log").read_text(encoding="utf-8")
    # A log file that cannot be written: one line saying so, and the crawl goes on.
    result = piped(["crawl", "fixture-feed", "--sources", fixture_sources, "--db", "archive.db",
                    "--log-file", "nowhere/crawl.log"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = result.stderr.splitlines()
    assert line.startswith("Warning: cannot write the log file nowhere/crawl.log: No such file or directory")
    assert result.stdout.splitlines()[-1] == "Archive: archive.db"


def test_the_log_file_is_rotated(tmp_path):
    from scrapy.settings import Settings

    from crawler.progress import route_logs, unroute_logs

    settings = Settings()
    settings.setmodule("crawler.settings")
    settings.set("PRESSARCHIVE_LOG_MAX_BYTES", 2000)
    log = tmp_path / "archive.db.log"
    handlers = route_logs(settings, log, verbose=False)
    try:
        for n in range(400):
            logging.getLogger("crawler.test").info("line %d of a long crawl's log", n)
    finally:
        unroute_logs(handlers)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["archive.db.log", *(f"archive.db.log.{n}" for n in range(1, 6))]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert "line 399 of a long crawl's log" in log.read_text(encoding="utf-8")


def crawled(tmp_path, fixture_sources) -> Path:
    result = piped(["crawl", "--sources", fixture_sources, "--db", "archive.db"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "archive.db"


def test_export_and_reextract_show_a_progress_bar_in_a_terminal_only(tmp_path, fixture_sources):
    db = crawled(tmp_path, fixture_sources)
    releases = sqlite_utils.Database(db)["releases"].count
    code, output = in_terminal(["export", "--db", db, "--out", "exports"], tmp_path)
    assert code == 0, output[-3000:]
    lines = screen_lines(output)
    assert any(line.startswith("exporting releases") and f"{releases}/{releases}" in line for line in lines), lines
    assert f"exported {releases} releases" in output
    result = piped(["export", "--db", db, "--out", "exports"], tmp_path)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(
        f"exported {releases} releases")
    assert result.stdout.splitlines() == [result.stdout.strip()] and result.stdout.startswith("exports/")

    code, output = in_terminal(["reextract", "--db", db], tmp_path)
    assert code == 0, output[-3000:]
    lines = screen_lines(output)
    assert any(line.startswith("re-extracting releases") and f"{releases}/{releases}" in line for line in lines)
    assert f"{releases} releases re-extracted" in output
    result = piped(["reextract", "--db", db], tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    summary = (f"{releases} releases re-extracted: 0 new text (new versions), 0 new metadata, "
               f"{releases} unchanged, 0 without a readable capture")
    assert result.stdout.splitlines() == [summary]


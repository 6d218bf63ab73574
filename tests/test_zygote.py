"""tests/zygote.py, the fork server behind ``run_cli``: a fork is the process a real start gives
(same output, exit code and archive), its sockets are guarded, timeouts kill it, and what a
fork cannot reproduce (another PYTHONPATH) starts a real ``python``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import netguard
import pytest
from conftest import _zygote, child_env, run_child, run_cli
from zygote import python_argv


@pytest.fixture(autouse=True)
def forking(monkeypatch):
    """These tests are about the forks: on even when the suite runs with PRESSARCHIVE_TEST_FORK=0."""
    monkeypatch.setenv("PRESSARCHIVE_TEST_FORK", "1")


def rows(db) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select source_id, url, title, text, published from releases order by url").fetchall()


def test_a_forked_crawl_is_the_crawl_a_new_process_makes(tmp_path, fixture_sources):
    assert _zygote(child_env()) is not None
    forked = run_cli(["crawl", "--sources", fixture_sources, "--db", "forked.db", "fixture-feed"], tmp_path)
    real = subprocess.run([sys.executable, "-m", "crawler", "crawl", "--sources", str(fixture_sources), "--db",
                           "real.db", "fixture-feed"], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=180, check=False)
    assert forked.returncode == real.returncode == 0, forked.stderr + real.stderr
    assert forked.stdout.replace("forked.db", "X") == real.stdout.replace("real.db", "X")
    stored = rows(tmp_path / "forked.db")
    assert len(stored) >= 3 and stored == rows(tmp_path / "real.db")
    # The exit status of a failing command comes back too, with its message.
    missing = run_cli(["status", "--db", "nothing-here.db"], tmp_path)
    assert missing.returncode != 0 and "nothing-here.db" in missing.stdout + missing.stderr


def test_a_fork_sends_nothing_outside_loopback(tmp_path):
    (tmp_path / "sources.toml").write_text(
        '[[sources]]\nid = "outside"\nname = "A public address"\ncountry = "US"\nkind = "government"\n'
        'languages = ["en"]\nfeeds = ["http://8.8.8.8/news.rss"]\nsitemaps = []\nlistings = []\n'
        "article_pattern = '/news/'\ndelay = 0\n", encoding="utf-8")
    before = len(netguard.violations)
    done = run_cli(["crawl", "--sources", "sources.toml", "--db", "archive.db", "--no-warc"], tmp_path, timeout=120)
    refused = netguard.violations[before:]
    del netguard.violations[before:]  # expected here: the test fails on them otherwise
    assert refused and all(call.startswith("child ") and "8.8.8.8" in str(address) for call, address in refused), \
        (refused, done.stderr[-2000:])


def test_a_fork_past_its_timeout_is_killed(tmp_path, fixture_sources):
    run_cli(["crawl", "--sources", fixture_sources, "--db", "archive.db", "fixture-feed"], tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli(["serve", "--db", "archive.db", "--port", "0"], tmp_path, timeout=3)
    # Killed, not left serving: the fork server's next child runs at once.
    assert run_cli(["status", "--db", "archive.db"], tmp_path, timeout=60).returncode == 0


def test_what_changes_how_python_starts_gets_a_real_process(tmp_path):
    assert _zygote(child_env(PYTHONPATH=str(tmp_path))) is None
    assert _zygote(child_env(PYTHONIOENCODING="latin-1")) is None
    assert _zygote(child_env(PRESSARCHIVE_NOW="2026-01-01T00:00:00Z")) is not None
    (tmp_path / "sitecustomize.py").write_text("print('started by a real python')\n", encoding="utf-8")
    done = run_cli(["--help"], tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.startswith("started by a real python")


def test_python_c_and_console_scripts_fork_too(tmp_path):
    code = "import sys, os; print(sys.argv, sys.path[0] == '', os.getcwd()); sys.exit(3)"
    forked = run_child([sys.executable, "-c", code, "a", "b"], tmp_path, child_env())
    real = subprocess.run([sys.executable, "-c", code, "a", "b"], cwd=tmp_path, env=child_env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert (forked.returncode, forked.stdout) == (real.returncode, real.stdout) == (3, f"['-c', 'a', 'b'] True {tmp_path}\n")
    script = Path(sys.executable).with_name("pressarchive")
    assert python_argv([script, "--version"]) == [str(script), "--version"]
    forked = run_child([script, "--version"], tmp_path, child_env())
    real = subprocess.run([script, "--version"], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert forked.returncode == real.returncode == 0 and forked.stdout == real.stdout and "pressarchive" in real.stdout
    # Not Python, or another Python: a real process.
    assert python_argv(["/bin/echo", "hello"]) is None
    assert python_argv([sys.executable, "script.py"]) is None
    other_venv = tmp_path / "venv" / "bin"
    other_venv.mkdir(parents=True)
    (other_venv / "pressarchive").write_text(f"#!{other_venv / 'python3'}\nprint('elsewhere')\n", encoding="utf-8")
    assert python_argv([other_venv / "pressarchive"]) is None
    # An uncaught exception: the traceback and status 1, as Python gives them.
    failed = run_child([sys.executable, "-c", "raise ValueError('boom')"], tmp_path, child_env())
    assert failed.returncode == 1 and failed.stderr.rstrip().endswith("ValueError: boom")


def test_a_started_fork_is_a_popen(tmp_path):
    """start_child: pipes, exit status, a signal to a running child, a new session and a timeout, as
    subprocess.Popen gives them."""
    import os
    import signal
    import time

    from conftest import start_child
    from zygote import ForkedProcess

    code = ("import sys, os, time; print(sys.stdin.readline().strip().upper(), os.getsid(0) == os.getpid()); "
            "print('to stderr', file=sys.stderr); sys.stdout.flush(); time.sleep(float(sys.argv[1])); sys.exit(4)")
    child = start_child([sys.executable, "-c", code, "0"], tmp_path, child_env(), stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert isinstance(child, ForkedProcess)
    out, err = child.communicate("hello\n", timeout=60)
    assert (child.returncode, out, err) == (4, "HELLO False\n", "to stderr\n")
    # A new session, killed by a signal while it runs: -N, as Popen reports it.
    with open(tmp_path / "log", "w") as log:
        child = start_child([sys.executable, "-c", code, "60"], tmp_path, child_env(), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    assert child.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.5)
    deadline = time.monotonic() + 30
    while " True" not in (tmp_path / "log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(30) == -signal.SIGTERM
    assert sorted((tmp_path / "log").read_text().splitlines()) == [" True", "to stderr"]
    # What the fork server cannot give (another PYTHONPATH): a real Popen.
    real = start_child([sys.executable, "-c", "print(1)"], tmp_path, child_env(PYTHONPATH=str(tmp_path)),
                       stdout=subprocess.PIPE)
    assert isinstance(real, subprocess.Popen) and real.communicate(timeout=60)[0] == b"1\n"


def test_a_forks_process_pool_starts_from_a_spare(tmp_path):
    """multiprocessing's forkserver (the cleaning pool's) in a fork is one of the fork's spares, with
    the libraries imported, in the fork's folder and environment; in a real process it is a new python."""
    code = ("import multiprocessing, os; from concurrent.futures import ProcessPoolExecutor\n"
            "context = multiprocessing.get_context('forkserver'); context.set_forkserver_preload(['json'])\n"
            "os.environ['SET_LATER'] = 'yes'\n"
            "with ProcessPoolExecutor(2, mp_context=context) as pool:\n"
            "    print(pool.submit(eval, \"'trafilatura' in __import__('sys').modules\").result(),\n"
            "          pool.submit(eval, \"__import__('os').getcwd()\").result(),\n"
            "          pool.submit(eval, \"__import__('os').environ.get('SET_LATER')\").result(),\n"
            "          sorted(pool.map(abs, [-1, -2, -3])))\n")
    forked = run_child([sys.executable, "-c", code], tmp_path, child_env())
    real = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert forked.returncode == real.returncode == 0, forked.stderr + real.stderr
    assert forked.stdout == f"True {tmp_path} yes [1, 2, 3]\n"
    assert real.stdout == f"False {tmp_path} yes [1, 2, 3]\n"

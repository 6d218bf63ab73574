"""Careless operators: a wrong ``--db``, a read-only archive, a moved ``warc/`` folder, an unknown
source id, a file that is not a page, an export killed half-way, a page in two encodings.

Every command runs as a user runs it: ``pressarchive`` (this venv's console script) in a child
process, against real archives made by real crawls of local sites (``pressarchive demo``, the
``generated_archive`` fixture). A usage error must be one line on stderr, exit code 2, no
traceback, and must leave the file it was given as it was (bytes and mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import child_env, run_child, start_child

from archive.export import SNAPSHOT_NAME, TMP_PREFIX
from pipelines.encoding import DecodeNote, decode_html, decode_notes

PRESSARCHIVE = Path(sys.executable).with_name("pressarchive")
ROOT = Path(__file__).resolve().parent.parent
PAGES = Path(__file__).parent / "pages"
MIXED_PAGE = PAGES / "zh_gb2312_mixed_utf8_junk.html"
NOBODY = 65534

# A registry that is valid but never contacted: every crawl below stops at its --db first.
TINY_SOURCES = """[[sources]]
id = "tiny"
name = "Never contacted"
country = "CA"
kind = "government"
languages = ["en"]
listings = ["http://127.0.0.1:9/news/"]
article_pattern = '/news/\\d+\\.html$'
delay = 0
"""


def run(*args, cwd, timeout=180, user=None):
    env = child_env()
    extra = {"user": user, "group": user, "extra_groups": []} if user is not None else {}
    if user is not None:
        env["HOME"] = str(cwd)
    return run_child([PRESSARCHIVE, *args], cwd, env, timeout, **extra)


def assert_one_line_error(result, code=2, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr[-3000:]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("Error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def fingerprint(path: Path):
    """Bytes and mtime of a file: what "left untouched" means."""
    info = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns, info.st_size


# --- archives made by real crawls ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory) -> Path:
    """A real archive (20 releases of the demo sites, WARC capture on) made by `pressarchive demo`."""
    folder = tmp_path_factory.mktemp("demo")
    result = run("demo", "--db", "archive.db", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "archive.db"


@pytest.fixture
def archive_copy(demo_archive, tmp_path) -> Path:
    """A copy of the demo archive and its warc/ folder, for a test that may change them."""
    folder = tmp_path / "copy"
    shutil.copytree(demo_archive.parent, folder, ignore=shutil.ignore_patterns("*.lock"))
    return folder / "archive.db"


@pytest.fixture
def tiny_sources(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SOURCES, encoding="utf-8")
    return path


def command_args(command: str, db, sources: Path) -> list:
    """The command line of ``command`` on archive ``db`` (nothing else would stop it)."""
    return {
        "crawl": ["crawl", "--sources", sources, "--db", db],
        "demo": ["demo", "--db", db],
        "status": ["status", "--db", db],
        "export": ["export", "--db", db, "--out", sources.parent / "exports"],
        "reextract": ["reextract", "--db", db],
        "ingest": ["ingest", "--redis", "redis://127.0.0.1:9/0", "--idle-exit", "1", "--db", db],
    }[command]


# --- a wrong --db ----------------------------------------------------------------------------

WRITERS = ("crawl", "demo", "reextract", "ingest")
EVERY_COMMAND = ("crawl", "demo", "status", "export", "reextract", "ingest")


def make_junk(tmp_path) -> Path:
    path = tmp_path / "junk.db"
    path.write_bytes(os.urandom(8192))
    return path


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_random_bytes_as_db_one_line_and_untouched(command, tmp_path, tiny_sources):
    junk = make_junk(tmp_path)
    os.utime(junk, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = fingerprint(junk)
    result = run(*command_args(command, junk, tiny_sources), cwd=tmp_path)
    assert_one_line_error(result, 2, str(junk), "not a SQLite database")
    assert fingerprint(junk) == before
    siblings = {p.name for p in tmp_path.iterdir()}
    assert siblings <= {"junk.db", "tiny.toml"}, "no lock, WAL, warc/ or export made beside it"


WRONG_DBS = {
    # name: (how to make it, what the one line says)
    "text file": (lambda d: _write(d / "notes.db", b"my notes, not an archive\n"), "not a SQLite database"),
    "other SQLite database": (lambda d: _sqlite_with_table(d / "other.db"), "SQLite database of something else"),
    "folder": (lambda d: _mkdir(d / "archive-folder"), "is a folder"),
    "missing folder": (lambda d: d / "no-such-folder" / "archive.db", "does not exist"),
    "/proc file": (lambda d: Path("/proc/version"), "not a SQLite database"),
    "new file under /proc": (lambda d: Path("/proc/self/archive.db"), "/proc/self"),
    "device": (lambda d: Path("/dev/null"), "not a regular file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _sqlite_with_table(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("create table bookmarks (url text)")
    conn.execute("insert into bookmarks values ('https://example.org/')")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", ["crawl", "status"])
@pytest.mark.parametrize("kind", sorted(WRONG_DBS))
def test_wrong_db_one_line_exit_2(kind, command, tmp_path, tiny_sources):
    if kind.endswith("/proc file") and not Path("/proc/version").is_file():
        pytest.skip("no /proc on this system")
    make, message = WRONG_DBS[kind]
    db = make(tmp_path)
    before = fingerprint(db) if db.is_file() and not str(db).startswith("/proc") else None
    result = run(*command_args(command, db, tiny_sources), cwd=tmp_path)
    if kind == "new file under /proc" and command == "status":
        message = "archive not found"
    assert_one_line_error(result, 2, str(db), message)
    if before:
        assert fingerprint(db) == before
    assert not Path(f"{db}.lock").exists() and not Path(f"{db}-wal").exists()


# --- a read-only archive -----------------------------------------------------------------------


@contextmanager
def _chattr_immutable(path: Path):
    if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode:
        pytest.skip("chattr +i is not possible here (needs CAP_LINUX_IMMUTABLE and ext4/xfs/btrfs)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextmanager
def unwritable(archive: Path, method: str):
    """``archive`` (and its folder) made really unwritable for the user the commands run as.

    Yields the uid to run the commands as (None: this test's own). ``chmod`` does not bind
    root, so as root: the immutable attribute, or running the commands as another user.
    """
    if method == "chmod":
        if os.geteuid() == 0:
            pytest.skip("running as root: chmod does not bind root (the other methods cover it)")
        archive.chmod(0o444)
        try:
            yield None
        finally:
            archive.chmod(0o644)
    elif method == "immutable":
        if os.geteuid() != 0:
            pytest.skip("chattr +i needs root (chmod covers this user)")
        with _chattr_immutable(archive):
            yield None
    else:  # another user: the archive stays root's, read-only, in a folder only root may write
        if os.geteuid() != 0:
            pytest.skip("running commands as another user needs root (chmod covers this user)")
        try:
            probe = subprocess.run([str(PRESSARCHIVE), "--version"], check=False, user=NOBODY, group=NOBODY,
                                   extra_groups=[], capture_output=True, text=True)
            failure = probe.stderr[-200:] if probe.returncode else None
        except OSError as exc:  # e.g. the venv's Python lives under /root
            failure = str(exc)
        if failure:
            pytest.skip(f"uid {NOBODY} cannot run this venv's pressarchive: {failure}")
        archive.chmod(0o444)
        yield NOBODY


@pytest.fixture
def shared_archive(demo_archive):
    """A copy of the demo archive in a folder every user may read (for the other-user method)."""
    folder = Path(tempfile.mkdtemp(prefix="pressarchive-ro-"))
    try:
        shutil.copytree(demo_archive.parent, folder / "a", ignore=shutil.ignore_patterns("*.lock"))
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield folder / "a" / "archive.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("method", ["chmod", "immutable", "other user"])
def test_read_only_archive_refused_by_writers_read_by_readers(method, shared_archive):
    archive = shared_archive
    folder = archive.parent
    sources = folder / "tiny.toml"
    sources.write_text(TINY_SOURCES, encoding="utf-8")
    before = fingerprint(archive)
    with unwritable(archive, method) as user:
        check = run("status", "--db", "/nonexistent", cwd=folder, user=user)  # the user can run the CLI
        assert "archive not found" in check.stderr, check.stderr[-2000:]
        append = ["sh", "-c", ': >> "$0"', str(archive)]  # open for writing, write nothing
        denied = subprocess.run(append, check=False, capture_output=True, text=True,
                                **({"user": user, "group": user, "extra_groups": []} if user else {}))
        assert denied.returncode != 0, "the method must really bind"
        for command in WRITERS:
            result = run(*command_args(command, archive, sources), cwd=folder, user=user)
            assert_one_line_error(result, 2, str(archive), "read-only")
        # Readers still work on it: status (exit 0 or 1 = broken sources) and export.
        status = run("status", "--db", archive, cwd=folder, user=user)
        assert status.returncode in (0, 1) and "demo-gac" in status.stdout, status.stderr[-2000:]
        out = Path(tempfile.mkdtemp(prefix="pressarchive-export-"))
        out.chmod(0o777)
        try:
            exported = run("export", "--db", archive, "--out", out, cwd=folder, user=user)
            assert exported.returncode == 0, exported.stderr[-2000:]
            assert "exported 20 releases" in exported.stderr
        finally:
            shutil.rmtree(out, ignore_errors=True)
    archive.chmod(0o644)
    assert fingerprint(archive) == before


def test_sqlite_refusing_writes_is_one_line(archive_copy, tiny_sources):
    """A file SQLite opens read-only although the OS lets us write it (its header says a newer
    format version wrote it): SQLite's "attempt to write a readonly database" becomes one line."""
    with open(archive_copy, "r+b") as handle:
        handle.seek(18)  # file format write version: > 2 makes SQLite treat the file as read-only
        handle.write(b"\x03")
    before = fingerprint(archive_copy)
    for command in ("crawl", "demo", "reextract"):
        result = run(*command_args(command, archive_copy, tiny_sources), cwd=archive_copy.parent)
        assert_one_line_error(result, 2, str(archive_copy), "attempt to write a readonly database")
    assert fingerprint(archive_copy) == before


# --- reextract -------------------------------------------------------------------------------


def test_reextract_unknown_source_id(archive_copy):
    before = fingerprint(archive_copy)
    result = run("reextract", "--db", archive_copy, "demo-gac", "demo-nope", cwd=archive_copy.parent)
    line = assert_one_line_error(result, 2, "'demo-nope'", str(archive_copy))
    assert "'demo-gac'" not in line and "demo-cn-embassy-en" in line, "names the unknown id, lists the known"
    assert result.stdout == "" and fingerprint(archive_copy) == before


def test_reextract_without_warc_folder_one_line(archive_copy):
    warc = archive_copy.parent / "warc"
    shutil.move(warc, archive_copy.parent / "warc-moved")
    before = fingerprint(archive_copy)
    result = run("reextract", "--db", archive_copy, cwd=archive_copy.parent)
    assert_one_line_error(result, 2, str(warc), "20 releases", "--warc-dir")
    assert fingerprint(archive_copy) == before
    moved = run("reextract", "--db", archive_copy, "--warc-dir", "warc-moved", cwd=archive_copy.parent)
    assert moved.returncode == 0 and "20 releases re-extracted" in moved.stdout, moved.stderr[-2000:]


def test_reextract_with_some_warc_files_missing(tmp_path, demo_sources):
    """Two crawls, two WARC files; one is lost: one line names it, the rest is re-extracted, exit 1."""
    first = run("crawl", "demo-gac", "--sources", demo_sources, "--db", "archive.db", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (gac_file,) = (tmp_path / "warc").glob("*.warc.gz")
    second = run("crawl", "demo-cn-embassy-en", "demo-cn-embassy-zh", "--sources", demo_sources,
                 "--db", "archive.db", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(list((tmp_path / "warc").glob("*.warc.gz"))) == 2
    gac_file.unlink()
    result = run("reextract", "--db", "archive.db", cwd=tmp_path)
    line = assert_one_line_error_or_log(result, 1)
    assert gac_file.name in line and "8 releases" in line and str(tmp_path / "warc") in line
    assert "20 releases re-extracted" in result.stdout and "8 without a readable capture" in result.stdout
    embassies = run("reextract", "--db", "archive.db", "demo-cn-embassy-en", "demo-cn-embassy-zh", cwd=tmp_path)
    assert embassies.returncode == 0 and embassies.stderr == "", embassies.stderr[-2000:]
    assert "12 releases re-extracted" in embassies.stdout and "0 without" in embassies.stdout


def assert_one_line_error_or_log(result, code):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


# --- extract ---------------------------------------------------------------------------------


def test_extract_refuses_what_is_not_a_page(tmp_path):
    random = _write(tmp_path / "random.bin", os.urandom(4096))
    empty = _write(tmp_path / "empty.html", b"  \n")
    cases = ((random, "binary data"), (empty, "is empty"), (tmp_path / "nope.html", "file not found"),
             (tmp_path, "is a folder"), (Path("/dev/zero"), "not a regular file"))
    for path, message in cases:
        result = run("extract", path, cwd=tmp_path)
        assert_one_line_error(result, 2, str(path), message)
        assert result.stdout == ""


def test_extract_page_without_text_says_so(tmp_path):
    shell = _write(tmp_path / "shell.html", b"<html><head><title>Newsroom</title></head><body>"
                   b"<div id='app'></div><script src='/app.js'></script></body></html>")
    result = run("extract", shell, cwd=tmp_path)
    assert_one_line_error(result, 1, str(shell), "no main text")
    assert json.loads(result.stdout)["title"] == "Newsroom", "the JSON is still printed"


def test_extract_real_page_prints_json(tmp_path):
    result = run("extract", PAGES / "govuk_news.html", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["title"] == "UK and China agree to strengthen cooperation on cyber security"
    assert "cyber-enabled theft of intellectual property" in data["text"]


# --- sources --json, .gitignore ----------------------------------------------------------------


def test_sources_json_has_real_lists(tmp_path, demo_sources):
    result = run("sources", "--json", "--sources", demo_sources, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    gac = next(row for row in rows if row["id"] == "demo-gac")
    assert gac["languages"] == ["en"] and isinstance(gac["feeds"], list) and isinstance(gac["listings"], list)
    assert isinstance(gac["selectors"], dict) and isinstance(gac["json_api"], list) and gac["enabled"] is True
    assert not [v for row in rows for v in row.values() if isinstance(v, str) and v.startswith(("[", "{"))]


def test_lock_files_are_git_ignored():
    patterns = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "*.db.lock" in patterns and "archive.db.lock" in patterns
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "archive.db.lock", "data/crawl.db.lock"],
                                 check=False, cwd=ROOT, capture_output=True, text=True)
        assert ignored.stdout.split() == ["archive.db.lock", "data/crawl.db.lock"]


# --- export killed half-way ----------------------------------------------------------------------


def start_export(archive, out: Path, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return start_child([str(PRESSARCHIVE), "export", "--db", str(archive), "--out", str(out)], cwd, env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_tmp_folder(process: subprocess.Popen, out: Path, timeout=60) -> Path | None:
    """The export's temp folder, once it has started writing its data (None: it finished first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.is_dir():
            for entry in out.iterdir():
                if (entry.name.startswith(TMP_PREFIX) and entry.name.endswith(f"-{process.pid}")
                        and (entry / "releases.csv").is_file()):
                    return entry
        if process.poll() is not None:
            return None
        time.sleep(0.001)
    raise AssertionError("the export never started writing")


def verify_snapshot(folder: Path, releases: int) -> None:
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=folder, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert next(f for f in manifest["files"] if f.get("table") == "releases")["rows"] == releases
    assert not any(p.name.startswith(".lock") for p in folder.iterdir())


def snapshots(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if SNAPSHOT_NAME.match(p.name))


def test_export_killed_midway_is_cleaned_by_the_next(generated_archive, tmp_path):
    releases = sqlite3.connect(generated_archive.path).execute("select count(*) from releases").fetchone()[0]
    out = tmp_path / "exports"
    for _attempt in range(5):
        victim = start_export(generated_archive.path, out, tmp_path)
        stale = wait_for_tmp_folder(victim, out)
        if stale is not None:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            break
        _stdout, stderr = victim.communicate()
        assert victim.returncode == 0, stderr[-3000:]
        shutil.rmtree(out, ignore_errors=True)
    else:
        pytest.fail("every export finished before it could be killed")
    assert stale.is_dir() and snapshots(out) == [], "killed half-way: only the hidden temp folder"
    size = sum(p.stat().st_size for p in stale.rglob("*"))
    assert size > 0

    after = subprocess.run([str(PRESSARCHIVE), "export", "--db", str(generated_archive.path), "--out", str(out)],
                           check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert after.returncode == 0, after.stderr[-3000:]
    assert not stale.exists()
    removal = [line for line in after.stderr.splitlines() if "removed" in line]
    assert len(removal) == 1 and stale.name in removal[0] and "did not finish" in removal[0]
    (snapshot,) = snapshots(out)
    verify_snapshot(snapshot, releases)
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_running_export_keeps_its_temp_folder(generated_archive, tmp_path):
    releases = sqlite3.connect(generated_archive.path).execute("select count(*) from releases").fetchone()[0]
    out = tmp_path / "exports"
    for _attempt in range(5):
        running = start_export(generated_archive.path, out, tmp_path)
        folder = wait_for_tmp_folder(running, out)
        if folder is not None:
            running.send_signal(signal.SIGSTOP)  # alive, mid-way, holding its lock
            break
        _stdout, stderr = running.communicate()
        assert running.returncode == 0, stderr[-3000:]
        shutil.rmtree(out, ignore_errors=True)
    else:
        pytest.fail("every export finished before it could be paused")
    try:
        other = subprocess.run([str(PRESSARCHIVE), "export", "--db", str(generated_archive.path), "--out", str(out)],
                               check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert other.returncode == 0, other.stderr[-3000:]
        assert folder.is_dir() and (folder / ".lock").is_file(), "a running export's folder is never removed"
        assert "removed" not in other.stderr
    finally:
        running.send_signal(signal.SIGCONT)
    _stdout, stderr = running.communicate(timeout=300)
    assert running.returncode == 0, stderr[-3000:]
    assert not folder.exists()
    done = snapshots(out)
    assert len(done) == 2
    for snapshot in done:
        verify_snapshot(snapshot, releases)


# --- a page in two encodings -------------------------------------------------------------------

GBK_SENTENCES = (
    "问：近日，有媒体报道称两国边境贸易出现新的困难，请问使馆对此有何评论？",
    "中方始终主张通过平等协商妥善处理经贸领域的分歧，愿同加方一道，为两国企业创造公平、透明、非歧视的营商环境。",
    "我们希望加方同中方相向而行，共同维护两国关系健康稳定发展的良好势头。",
)
UTF8_PARAGRAPH = ("问：使馆是否会就此事同加方主管部门进一步沟通？答：使馆将继续同加拿大政府有关部门保持密切联系，"
                  "推动2017年双边经贸合作取得新进展，更好地造福两国人民。")
MOJIBAKE = re.compile("[\u00c0-\u00ff]{2}|锟|涓|鍥")  # cp1252 or GB18030 readings of the wrong bytes


def assert_mixed_page_text(text: str) -> None:
    for sentence in (*GBK_SENTENCES, UTF8_PARAGRAPH):
        assert sentence in text
    assert not MOJIBAKE.search(text)
    # The three odd bytes (a stray 0x80, a character cut in half, a 0xFF) and nothing else.
    assert text.count("\ufffd") == 3


def test_mixed_encoding_page_decodes(tmp_path):
    body = MIXED_PAGE.read_bytes()
    with decode_notes() as notes:
        text, codec = decode_html(body)
    assert codec == "gb18030"
    assert_mixed_page_text(text)
    assert notes == [DecodeNote("gb18030", replaced=3, utf8_bytes=len(UTF8_PARAGRAPH.encode("utf-8")))]
    # Without any declaration it is still read as GB18030 (detected: mostly Han), never cp1252.
    undeclared = re.sub(rb"<meta[^>]*charset[^>]*>", b"", body)
    text, codec = decode_html(undeclared)
    assert codec == "gb18030"
    assert_mixed_page_text(text)
    # A UTF-8 passage whose bytes are valid GB18030 too, in a GBK page without a stray byte:
    # GB18030 alone reads it without an error, as nonsense ("鍏卞悓缁存姢...").
    page = "<meta charset=gb2312><p>{}</p><p>{}</p>"
    gbk, utf8 = "中华人民共和国驻加拿大大使馆", "共同维护地区和平稳定"
    body = page.format(gbk, "").encode("gbk").replace(b"<p></p>", b"<p>" + utf8.encode("utf-8") + b"</p>")
    assert utf8 not in body.decode("gb18030")
    with decode_notes() as notes:
        assert decode_html(body) == (page.format(gbk, utf8), "gb18030")
    assert notes == [DecodeNote("gb18030", replaced=0, utf8_bytes=30)]
    # A pure GBK page is left alone: no note.
    with decode_notes() as notes:
        assert decode_html("<p>中华人民共和国外交部发言人答记者问</p>".encode("gbk"))[1] == "gb18030"
    assert notes == []


def test_mixed_encoding_page_via_extract(tmp_path):
    result = run("extract", MIXED_PAGE, "--url", "http://127.0.0.1/chn/t20170626_1.htm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["encoding"] == "gb18030" and data["title"] == "驻加拿大使馆发言人就边境贸易问题答记者问"
    assert_mixed_page_text(data["text"])
    (warning,) = result.stderr.strip().splitlines()
    assert str(MIXED_PAGE) in warning and "http://127.0.0.1/chn/t20170626_1.htm" in warning
    assert "gb18030" in warning and "3 undecodable bytes replaced" in warning


def test_mixed_encoding_page_via_crawl_and_reextract(tmp_path, site_server):
    site = tmp_path / "site"
    (site / "chn" / "sgxw" / "201706").mkdir(parents=True)
    shutil.copy(MIXED_PAGE, site / "chn" / "sgxw" / "201706" / "t20170626_1.htm")
    (site / "chn" / "sgxw" / "index.html").write_text(
        '<html><head><meta charset="utf-8"></head><body><ul>'
        '<li><a href="/chn/sgxw/201706/t20170626_1.htm">边境贸易问题答记者问</a></li></ul></body></html>',
        encoding="utf-8")
    server = site_server(site)
    sources = tmp_path / "sources.toml"
    sources.write_text(f"""[[sources]]
id = "zh-embassy-mixed"
name = "An embassy whose CMS mixes encodings"
country = "CN"
kind = "embassy"
languages = ["zh"]
listings = ["{server.base_url}/chn/sgxw/"]
article_pattern = '/chn/sgxw/\\d{{6}}/t\\d{{8}}_\\d+\\.htm$'
delay = 0
""", encoding="utf-8")
    crawled = run("crawl", "--sources", sources, "--db", "archive.db", "--log-level", "WARNING", cwd=tmp_path)
    assert crawled.returncode == 0, crawled.stderr[-3000:]
    conn = sqlite3.connect(tmp_path / "archive.db")
    conn.row_factory = sqlite3.Row
    (row,) = conn.execute("select * from releases").fetchall()
    assert row["encoding"] == "gb18030" and row["title"] == "驻加拿大使馆发言人就边境贸易问题答记者问"
    assert_mixed_page_text(row["text"])
    conn.close()
    # The crawl's log says what decoding repaired, with the source and the URL (one line).
    logged = [line for line in crawled.stderr.splitlines() if "undecodable bytes replaced" in line]
    assert len(logged) == 1 and "zh-embassy-mixed" in logged[0] and row["url"] in logged[0], crawled.stderr[-2000:]
    assert "gb18030" in logged[0] and "3 undecodable bytes replaced" in logged[0]
    # Re-extraction from the raw capture says what decoding repaired, naming the release and its URL.
    again = run("reextract", "--db", "archive.db", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    (note,) = again.stderr.strip().splitlines()
    assert row["url"] in note and "gb18030" in note and "3 undecodable bytes replaced" in note

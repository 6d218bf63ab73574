"""Tests for ``pressarchive export`` (archive/export.py).

Every test builds a real archive file with ``archive.schema.open_archive``,
runs the click command through ``CliRunner`` (or as a real subprocess when
the process has to die) and reads the files back with independent tools:
the csv module, ``sqlite-utils insert --csv``, ``sha256sum`` and Datasette.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive.export import RELEASES_LEAD_COLUMNS, SNAPSHOT_NAME
from archive.schema import SCHEMA_VERSION, open_archive
from crawler.cli.export import export_command

REPO = Path(__file__).resolve().parent.parent

TRICKY = [
    # (source_id, published, language, title, text)
    ("gov-uk", "2024-03-01", "en", "PM statement, on \"trade\"",
     'First paragraph, with a comma.\nSecond "quoted" paragraph.\n\nThird, after a blank line.'),
    ("gov-cn", "2024-01-15", "zh", "外交部发言人答记者问",
     "中华人民共和国外交部发言人表示，“和平共处五项原则”。\n第二段：合作、共赢。"),
    ("gov-uk", "2023-12-31", "en", "=HYPERLINK(\"http://evil\",\"x\")", "=SUM(A1:A2)\n+1 -2 @me"),
    ("gov-cn", None, "zh", "无日期的声明", "日期未知，排在最后。"),
    ("gov-uk", "2024-01-15", "en", "Same day as the Chinese one", "Tie broken by id."),
    ("gov-uk", "", "en", "Empty date string", "Also undated."),
]
BULK_ROWS = 150  # more than Datasette's default page of 100, to prove streaming


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def release(i, source_id, published, language, title, text):
    return {
        "id": i, "source_id": source_id, "url": f"https://example.gov/{source_id}/{i}",
        "title": title, "published": published, "language": language, "text": text,
        "content_hash": sha256(text), "word_count": len(text.split()),
        "year": int(published[:4]) if published else None,
        "first_seen": "2024-04-01T08:00:00Z", "last_seen": "2024-04-02T08:00:00Z",
    }


@pytest.fixture
def archive(tmp_path) -> Path:
    path = tmp_path / "archive.db"
    db = open_archive(path)
    rows = [release(i + 1, *row) for i, row in enumerate(TRICKY)]
    rows += [
        release(100 + i, "gov-au", f"2022-{1 + i % 12:02d}-{1 + i % 28:02d}", "en",
                f"Budget statement {i}", f"Budget statement number {i} about climate.\nSecond line.")
        for i in range(BULK_ROWS)
    ]
    db["releases"].insert_all(rows)
    db["sources"].insert_all(
        [{"id": s, "name": s.upper(), "languages": '["en"]'} for s in ("gov-uk", "gov-cn", "gov-au", "gov-nz")]
    )
    db["crawl_runs"].insert_all([
        {"id": 1, "run_id": "r1", "source_id": "gov-uk", "started": "2024-04-01T08:00:00Z",
         "finished": "2024-04-01T09:00:00Z", "status": "ok"},
        {"id": 2, "run_id": "r2", "source_id": "gov-cn", "started": "2024-04-02T08:00:00Z",
         "finished": "2024-04-02T09:30:00Z", "status": "partial"},
    ])
    db.close()
    return path


def run_export(archive: Path, out: Path, *args: str, ok: bool = True):
    result = CliRunner().invoke(export_command, ["--db", str(archive), "--out", str(out), *args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def export(archive: Path, out: Path, *args: str) -> Path:
    return Path(run_export(archive, out, *args).stdout.strip())


def read_csv(path: Path, encoding="utf-8") -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding=encoding) as f:
        reader = csv.reader(f, strict=True)
        header = next(reader)
        return header, [dict(zip(header, row)) for row in reader]


def archive_rows(archive: Path, sql="SELECT * FROM releases") -> list[dict]:
    conn = sqlite3.connect(archive)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute(sql)]
    conn.close()
    return rows


def as_csv_value(value) -> str:
    return "" if value is None else str(value)


def snapshot_dirs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if SNAPSHOT_NAME.match(p.name))


# --- CSV content -----------------------------------------------------------------


def test_csv_parses_back_exactly(archive, tmp_path):
    folder = export(archive, tmp_path / "exports")
    header, rows = read_csv(folder / "releases.csv")

    assert header[: len(RELEASES_LEAD_COLUMNS)] == list(RELEASES_LEAD_COLUMNS)
    expected = {r["id"]: r for r in archive_rows(archive)}
    assert len(rows) == len(expected)
    for row in rows:
        original = expected[int(row["id"])]
        assert row == {k: as_csv_value(original[k]) for k in header}


def test_csv_is_rfc4180(archive, tmp_path):
    data = (export(archive, tmp_path / "exports") / "releases.csv").read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.split(b"\r\n", 1)[0].startswith(b"id,source_id,url,title,published")
    assert b'"First paragraph, with a comma.\nSecond ""quoted"" paragraph.' in data
    assert "外交部发言人答记者问".encode() in data
    assert data.endswith(b"\r\n")


def test_row_order_published_then_id_undated_last(archive, tmp_path):
    _, rows = read_csv(export(archive, tmp_path / "exports") / "releases.csv")
    keys = [(r["published"], int(r["id"])) for r in rows]
    dated = [k for k in keys if k[0]]
    assert dated == sorted(dated)
    assert keys[-2:] == [("", 4), ("", 6)]  # NULL and '' dates last, by id
    assert [k for k in keys if k[0] == "2024-01-15"] == [("2024-01-15", 2), ("2024-01-15", 5)]


def test_fast_csv_writer_matches_stdlib_csv(archive):
    import io

    from archive.export import csv_lines

    rows = [list(r.values()) for r in archive_rows(archive)]
    rows += [["", None, 0, -1, 1.5, 1e-20, " lead space", "tab\there", "cr\ronly", '"', ",", "a\r\nb"]]
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerows(rows)
    assert csv_lines(rows) == expected.getvalue()


def test_plain_csv_keeps_formula_like_cells(archive, tmp_path):
    _, rows = read_csv(export(archive, tmp_path / "exports") / "releases.csv")
    row = next(r for r in rows if r["id"] == "3")
    assert row["title"] == '=HYPERLINK("http://evil","x")'
    assert row["text"] == "=SUM(A1:A2)\n+1 -2 @me"


def test_reexport_is_byte_identical(archive, tmp_path):
    first = export(archive, tmp_path / "exports")
    second = export(archive, tmp_path / "exports")
    assert first != second
    for name in ("releases.csv", "sources.csv", "crawl_runs.csv", "README.md"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    one, two = (json.loads((f / "manifest.json").read_text()) for f in (first, second))
    for manifest in (one, two):
        del manifest["snapshot"], manifest["created"]
    assert one == two


def test_column_order_follows_schema_not_migration_history(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)  # an older archive: fewer columns, different order
    conn.execute("CREATE TABLE releases (id INTEGER PRIMARY KEY NOT NULL, text TEXT, url TEXT, "
                 "extractor TEXT, source_id TEXT, title TEXT, published TEXT)")
    conn.execute("INSERT INTO releases VALUES (1, 'body', 'https://x/1', 'traf', 's', 't', '2024-01-01')")
    conn.commit()
    conn.close()
    open_archive(path).close()  # migrates: missing columns are appended

    header, _ = read_csv(export(path, tmp_path / "exports") / "releases.csv")
    from archive.schema import RELEASES_COLUMNS
    rest = [c for c in RELEASES_COLUMNS if c not in RELEASES_LEAD_COLUMNS]
    assert header == list(RELEASES_LEAD_COLUMNS) + rest


# --- filters -------------------------------------------------------------------------


def test_source_filter(archive, tmp_path):
    folder = export(archive, tmp_path / "exports", "--source", "gov-cn")
    _, rows = read_csv(folder / "releases.csv")
    assert sorted(int(r["id"]) for r in rows) == [2, 4]
    assert [r["id"] for r in read_csv(folder / "sources.csv")[1]] == ["gov-cn"]
    assert [r["run_id"] for r in read_csv(folder / "crawl_runs.csv")[1]] == ["r2"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["filters"] == {"sources": ["gov-cn"], "since": None, "until": None, "search": None}
    assert "search" not in manifest


def test_several_sources_any_order_same_files(archive, tmp_path):
    one = export(archive, tmp_path / "a", "--source", "gov-uk", "--source", "gov-cn")
    two = export(archive, tmp_path / "b", "--source", "gov-cn", "--source", "gov-uk")
    assert (one / "releases.csv").read_bytes() == (two / "releases.csv").read_bytes()
    _, rows = read_csv(one / "releases.csv")
    assert {r["source_id"] for r in rows} == {"gov-uk", "gov-cn"}


def test_since_until_inclusive_and_exclude_undated(archive, tmp_path):
    folder = export(archive, tmp_path / "exports", "--since", "2023-12-31", "--until", "2024-01-15")
    _, rows = read_csv(folder / "releases.csv")
    assert [int(r["id"]) for r in rows] == [3, 2, 5]


def test_source_known_only_from_sources_table_gives_empty_export(archive, tmp_path):
    folder = export(archive, tmp_path / "exports", "--source", "gov-nz")
    header, rows = read_csv(folder / "releases.csv")
    assert rows == [] and header[0] == "id"


@pytest.mark.parametrize("args, message", [
    (["--source", "gov-xx"], "unknown source id: gov-xx"),
    (["--since", "2024-13-01"], "--since must be a date YYYY-MM-DD"),
    (["--until", "yesterday"], "--until must be a date YYYY-MM-DD"),
    (["--since", "2024-02-01", "--until", "2024-01-01"], "is after --until"),
    (["--format", "jsonl", "--excel"], "--excel applies to --format csv only"),
])
def test_user_errors_one_line_exit_2(archive, tmp_path, args, message):
    result = run_export(archive, tmp_path / "exports", *args, ok=False)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "exports").exists() or snapshot_dirs(tmp_path / "exports") == []


def test_missing_or_bad_archive_exit_2(tmp_path):
    for db, message in ((tmp_path / "nope.db", "archive not found"), (tmp_path, "is a folder")):
        result = run_export(db, tmp_path / "exports", ok=False)
        assert result.exit_code == 2 and message in result.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    result = run_export(junk, tmp_path / "exports", ok=False)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


# --- formats -------------------------------------------------------------------------


def test_jsonl_format(archive, tmp_path):
    folder = export(archive, tmp_path / "exports", "--format", "jsonl")
    assert not (folder / "releases.csv").exists()
    lines = (folder / "releases.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert list(rows[0])[: len(RELEASES_LEAD_COLUMNS)] == list(RELEASES_LEAD_COLUMNS)
    expected = {r["id"]: r for r in archive_rows(archive)}
    for row in rows:
        assert row == {k: expected[row["id"]][k] for k in row}  # nulls and ints kept
    undated = next(r for r in rows if r["id"] == 4)
    assert undated["published"] is None and undated["text"] == "日期未知，排在最后。"
    assert "外交部" in lines[[r["id"] for r in rows].index(2)]  # not \u-escaped


def test_excel_writes_bom_and_neutralises_formulas(archive, tmp_path):
    folder = export(archive, tmp_path / "exports", "--excel")
    data = (folder / "releases.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbfid,source_id,")
    header, rows = read_csv(folder / "releases.csv", encoding="utf-8-sig")
    by_id = {r["id"]: r for r in rows}
    assert header[0] == "id"
    assert by_id["2"]["title"] == "外交部发言人答记者问"
    assert by_id["3"]["title"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert by_id["3"]["text"] == "'=SUM(A1:A2)\n+1 -2 @me"
    assert json.loads((folder / "manifest.json").read_text())["excel"] is True


# --- snapshot folders ---------------------------------------------------------------


def test_keep_prunes_only_snapshots_and_latest_points_to_newest(archive, tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    (out / "my-notes").mkdir()
    (out / "20200101T000000Z.csv").write_text("a file named like a snapshot")
    (out / "README.txt").write_text("mine")
    old = out / "20200101T000000Z"  # an old snapshot
    old.mkdir()

    folders = [export(archive, out, "--keep", "2") for _ in range(3)]

    assert snapshot_dirs(out) == sorted(f.name for f in folders[1:])
    assert not old.exists()
    assert (out / "my-notes").is_dir() and (out / "README.txt").read_text() == "mine"
    assert (out / "20200101T000000Z.csv").exists()
    latest = out / "latest"
    assert latest.is_symlink() and latest.resolve() == folders[-1].resolve()
    assert (latest / "manifest.json").exists()


def test_keep_must_be_positive(archive, tmp_path):
    result = run_export(archive, tmp_path / "exports", "--keep", "0", ok=False)
    assert result.exit_code == 2


def test_manifest_hashes_and_counts_verify(archive, tmp_path):
    folder = export(archive, tmp_path / "exports")
    manifest = json.loads((folder / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert names == {"releases.csv", "sources.csv", "crawl_runs.csv", "release_versions.csv", "removals.csv",
                     "README.md"}
    for entry in manifest["files"]:
        data = (folder / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data) == entry["bytes"]
        if "rows" in entry:
            assert len(read_csv(folder / entry["name"])[1]) == entry["rows"]
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["archive"]["path"] == str(archive.resolve())
    assert manifest["archive"]["last_crawl"] == "2024-04-02T09:30:00Z"
    assert manifest["tool"]["version"]
    assert manifest["snapshot"] == folder.name
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=folder, capture_output=True,
                               text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "manifest.json: OK" in check.stdout


def test_side_tables_exported_when_present_and_filtered(archive, tmp_path):
    db = open_archive(archive)
    db["release_versions"].delete_where()  # open_archive gave every release its version 1
    db["release_versions"].insert_all(
        [{"release_id": 2, "version": 1, "text": "旧版本"}, {"release_id": 1, "version": 1, "text": "old"}]
    )
    db["removals"].insert_all([{"release_id": 2, "event": "removed", "detail": "HTTP 404"},
                               {"release_id": 1, "event": "removed", "detail": "HTTP 410"}])
    db.close()
    folder = export(archive, tmp_path / "exports", "--source", "gov-cn")
    assert [r["text"] for r in read_csv(folder / "release_versions.csv")[1]] == ["旧版本"]
    assert [r["detail"] for r in read_csv(folder / "removals.csv")[1]] == ["HTTP 404"]


# --- interrupted exports ----------------------------------------------------------


FILE_LIMIT = 256 * 1024  # above SQLite's 32 KB -shm file, below releases.csv


def add_long_release(archive: Path) -> None:
    db = open_archive(archive)
    db["releases"].insert(release(999, "gov-uk", "2024-02-02", "en", "Long", "Long paragraph.\n" * 40_000))
    db.close()


def export_in_child(archive: Path, out: Path, ignore_sigxfsz: bool, file_limit: int = FILE_LIMIT):
    """Run the real command in a child whose files may not exceed ``file_limit`` bytes.

    With SIGXFSZ at its default the kernel kills the child on the write that
    crosses the limit (Python ignores SIGXFSZ at startup, so the child puts
    the default back first); ignored, the write fails with EFBIG instead.
    """
    disposition = "SIG_IGN" if ignore_sigxfsz else "SIG_DFL"
    script = (
        f"import signal, sys; signal.signal(signal.SIGXFSZ, signal.{disposition}); "
        "from crawler.cli.export import export_command; "
        "export_command(sys.argv[1:], prog_name='pressarchive export')"
    )

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-c", script, "--db", str(archive), "--out", str(out)],
        check=False, preexec_fn=limit, env=env, capture_output=True, text=True, timeout=120,
    )


def test_process_killed_midway_leaves_nothing_that_looks_complete(archive, tmp_path):
    out = tmp_path / "exports"
    add_long_release(archive)
    previous = export(archive, out)

    child = export_in_child(archive, out, ignore_sigxfsz=False)

    assert child.returncode == -signal.SIGXFSZ  # killed mid-write, no cleanup ran
    assert snapshot_dirs(out) == [previous.name]
    assert (out / "latest").resolve() == previous.resolve()
    leftovers = [p for p in out.iterdir() if p.name.startswith(".export-tmp-")]
    assert leftovers and all(not (p / "manifest.json").exists() for p in leftovers)


def test_failed_write_cleans_up_and_reports_one_line(archive, tmp_path):
    out = tmp_path / "exports"
    add_long_release(archive)
    child = export_in_child(archive, out, ignore_sigxfsz=True)

    assert child.returncode == 1
    assert "export failed, nothing written" in child.stderr
    assert len(child.stderr.strip().splitlines()) == 1 and "Traceback" not in child.stderr
    assert list(out.iterdir()) == []


# --- other tools read the snapshot ---------------------------------------------------


def test_round_trip_through_sqlite_utils_insert_csv(archive, tmp_path):
    folder = export(archive, tmp_path / "exports")
    loaded = tmp_path / "loaded.db"
    subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "insert", str(loaded), "releases",
         str(folder / "releases.csv"), "--csv"],
        check=True, capture_output=True,
    )
    back = {int(r["id"]): r for r in archive_rows(loaded)}
    original = archive_rows(archive)
    assert len(back) == len(original)
    for row in original:
        assert back[row["id"]]["text"] == row["text"]
        assert back[row["id"]]["content_hash"] == row["content_hash"] == sha256(row["text"])


def datasette_csv(archive: Path, query: str) -> tuple[int, str]:
    try:
        from archive.site.serve import make_datasette
    except ImportError:
        make_datasette = None

    async def fetch():
        if make_datasette is not None:
            ds = make_datasette(str(archive))
        else:
            from datasette.app import Datasette

            ds = Datasette([str(archive)])
        await ds.invoke_startup()
        response = await ds.client.get(f"/archive/releases.csv?{query}")
        return response.status_code, response.text

    return asyncio.run(fetch())


def test_datasette_csv_streams_filtered_view_and_search(archive):
    from archive import search_index

    db = open_archive(archive)
    search_index.ensure_search(db)
    db.close()

    status, body = datasette_csv(archive, "source_id=gov-au&_stream=on")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert len(rows) == BULK_ROWS and {r["source_id"] for r in rows} == {"gov-au"}

    status, body = datasette_csv(archive, "_search=climate&_stream=on")
    assert status == 200
    assert len(list(csv.DictReader(io.StringIO(body, newline="")))) == BULK_ROWS

    status, body = datasette_csv(archive, "source_id=gov-cn&_stream=on")
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(body, newline=""))}
    assert rows["2"]["text"] == TRICKY[1][4]


# --- --search ------------------------------------------------------------------------

SEARCHABLE = [
    # (id, source_id, published, language, title, text)
    (1, "gov-uk", "2024-03-01", "en", "Statement on the war", "The war in the region must end."),
    (2, "gov-uk", "2024-02-01", "en", "Software exports", "The software industry and its hardware."),
    (3, "gov-us", "2023-06-01", "en", "Warships and warfare", "Postwar software, warfare and wars."),
    (4, "gov-us", "2023-01-01", "en", "Intellectual property", "We protect intellectual property rights."),
    (5, "gov-uk", "2022-05-01", "en", "Property debate", "An intellectual debate about property."),
    (6, "gov-cn", "2024-01-15", "zh", "关于网络安全的声明", "中国政府高度重视网络安全。\n第二段。"),
    (7, "gov-cn", "2023-03-03", "zh", "网民联络工作", "网民和联络工作，没有那个词。"),
    (8, "gov-cn", None, "zh", "无日期的声明", "网络空间治理。"),
    (9, "gov-uk", "2021-01-01", "en", "War and peace", "Remembering the war.\nIntellectual property, old."),
    (10, "gov-cn", "2024-02-02", "zh", "反对战争", "我们反对战争（war），支持网络和平。"),
    (11, "gov-us", None, "en", "Undated note", "A note on the war, undated."),
    (12, "gov-uk", "2024-03-01", "en", "Same day, higher id", "War crimes inquiry; intellectual property."),
    (13, "gov-us", "", "en", "Empty date", "Software only, in every sense of the software word."),
    (14, "gov-us", "2022-09-09", "en", "War software", "Software for the war effort."),
]


@pytest.fixture
def search_archive(tmp_path) -> Path:
    """An archive written like the crawler writes one: schema, search index, indexed releases."""
    from archive.search_index import ensure_search, index_releases

    path = tmp_path / "search.db"
    db = open_archive(path)
    ensure_search(db)
    with db.conn:
        db["releases"].insert_all(release(*row) for row in SEARCHABLE)
        index_releases(db, [row[0] for row in SEARCHABLE])
        db["release_versions"].insert_all(
            {"release_id": rid, "version": v, "text": f"{text} (v{v})"}
            for rid, *_, text in SEARCHABLE for v in (1, 2) if v == 1 or rid % 3 == 0
        )
        db["removals"].insert_all([{"release_id": rid, "event": "removed", "detail": f"HTTP 404 #{rid}"}
                                   for rid in (1, 2, 3, 6, 7, 9, 11)])
        db["sources"].insert_all([{"id": s, "name": s.upper()} for s in ("gov-uk", "gov-us", "gov-cn")])
        db["crawl_runs"].insert_all([
            {"id": n, "run_id": f"r{n}", "source_id": s, "started": "2024-04-01T08:00:00Z",
             "finished": "2024-04-01T09:00:00Z", "status": "ok"}
            for n, s in enumerate(("gov-uk", "gov-us", "gov-cn"), start=1)
        ])
    db.close()
    return path


# The truth, computed without the search index: FTS5's unicode61 words (lower-cased runs of
# letters and digits) for English, plain substrings for Chinese. A term matches a release when
# it is in its title or its text (a phrase within one of them); terms are ANDed.

def words(value: str) -> list[str]:
    return re.findall(r"[^\W_]+", value.lower())


def has_word(word):
    return lambda column: word in words(column)


def has_phrase(*phrase):
    def test(column):
        w = words(column)
        return any(tuple(w[i : i + len(phrase)]) == phrase for i in range(len(w)))
    return test


def has_substring(chars):
    return lambda column: chars in column


def all_of(*terms):
    return lambda title, text: all(term(title) or term(text) for term in terms)


def any_of(*terms):
    return lambda title, text: any(term(title) or term(text) for term in terms)


def but_not(matches, *terms):
    return lambda title, text: matches(title, text) and not any_of(*terms)(title, text)


def expected_ids(archive: Path, matches, sources=(), since=None, until=None) -> list[int]:
    """Ids in export order (published, id; undated last) of the releases matching everything.

    ``matches(title, text)``: ``all_of`` or ``any_of`` tests of one column.
    """
    rows = [
        r for r in archive_rows(archive)
        if matches(r["title"] or "", r["text"] or "")
        and (not sources or r["source_id"] in sources)
        and (not since or (r["published"] or "") >= since)
        and (not until or (r["published"] or "9") <= until)
    ]
    return [r["id"] for r in sorted(rows, key=lambda r: (not r["published"], r["published"] or "", r["id"]))]


def csv_ids(path: Path, column="id") -> list[int]:
    return [int(r[column]) for r in read_csv(path)[1]]


@pytest.mark.parametrize("query, matches, must_have, must_not_have", [
    ("war", all_of(has_word("war")), {1, 9, 10, 11, 12, 14}, {2, 3, 13}),  # not "software", "warfare", "wars"
    ('"intellectual property"', all_of(has_phrase("intellectual", "property")), {4, 9, 12}, {5}),
    ("网络", all_of(has_substring("网络")), {6, 8, 10}, {7}),  # inside 网络安全 / 网络空间; not 网民和联络
    ("war 网络", all_of(has_word("war"), has_substring("网络")), {10}, {1, 6}),  # ANDed, mixed scripts
    ("software -war", but_not(all_of(has_word("software")), has_word("war")), {2, 3, 13}, {1, 14}),
])
def test_search_exports_exactly_the_matching_releases(search_archive, tmp_path, query, matches,
                                                      must_have, must_not_have):
    truth = expected_ids(search_archive, matches)
    assert must_have <= set(truth) and not must_not_have & set(truth)  # the truth itself is sane

    folder = export(search_archive, tmp_path / "exports", "--search", query)

    header, rows = read_csv(folder / "releases.csv")
    assert [int(r["id"]) for r in rows] == truth
    originals = {r["id"]: r for r in archive_rows(search_archive)}
    for row in rows:  # whole rows, not just ids
        assert row == {k: as_csv_value(originals[int(row["id"])][k]) for k in header}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["filters"] == {"sources": [], "since": None, "until": None, "search": query}
    assert manifest["search"]["query"] == query and manifest["search"]["matched"] == len(truth)
    counts = {f["table"]: f["rows"] for f in manifest["files"] if "rows" in f}
    assert counts["releases"] == len(truth)
    for entry in manifest["files"]:
        if "rows" in entry:
            assert len(read_csv(folder / entry["name"])[1]) == entry["rows"], entry["name"]
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert json.dumps(query, ensure_ascii=False) in readme and f"matched {len(truth)} releases" in readme

    # tables keyed by release follow the releases; sources and crawl runs are not cut by a search
    versions = archive_rows(search_archive, "SELECT * FROM release_versions ORDER BY id")
    assert csv_ids(folder / "release_versions.csv") == [v["id"] for v in versions if v["release_id"] in truth]
    removals = archive_rows(search_archive, "SELECT * FROM removals ORDER BY id")
    assert csv_ids(folder / "removals.csv") == [m["id"] for m in removals if m["release_id"] in truth]
    assert [r["id"] for r in read_csv(folder / "sources.csv")[1]] == ["gov-cn", "gov-uk", "gov-us"]
    assert len(read_csv(folder / "crawl_runs.csv")[1]) == 3


@pytest.mark.parametrize("query, matches, args, truth", [
    ("war", all_of(has_word("war")), {"sources": ("gov-uk",), "since": "2022-01-01"}, [1, 12]),
    ("war", all_of(has_word("war")), {"until": "2024-02-29"}, [9, 14, 10]),
    ("网络", all_of(has_substring("网络")), {"sources": ("gov-cn",)}, [6, 10, 8]),
    ("网络", all_of(has_substring("网络")), {"sources": ("gov-cn",), "since": "2024-01-01"}, [6, 10]),
    ('"intellectual property"', all_of(has_phrase("intellectual", "property")),
     {"sources": ("gov-uk", "gov-us"), "since": "2022-01-01", "until": "2024-12-31"}, [4, 12]),
])
def test_search_combines_with_source_and_dates(search_archive, tmp_path, query, matches, args, truth):
    assert expected_ids(search_archive, matches, **args) == truth
    options = ["--search", query]
    for source in args.get("sources", ()):
        options += ["--source", source]
    for key in ("since", "until"):
        if key in args:
            options += [f"--{key}", args[key]]

    folder = export(search_archive, tmp_path / "exports", *options)

    assert csv_ids(folder / "releases.csv") == truth
    versions = archive_rows(search_archive, "SELECT * FROM release_versions ORDER BY id")
    assert csv_ids(folder / "release_versions.csv") == [v["id"] for v in versions if v["release_id"] in truth]
    removals = archive_rows(search_archive, "SELECT * FROM removals ORDER BY id")
    assert csv_ids(folder / "removals.csv") == [m["id"] for m in removals if m["release_id"] in truth]
    sources = sorted(args.get("sources", ())) or ["gov-cn", "gov-uk", "gov-us"]
    assert [r["id"] for r in read_csv(folder / "sources.csv")[1]] == sources
    assert [r["source_id"] for r in read_csv(folder / "crawl_runs.csv")[1]] == [
        s for s in ("gov-uk", "gov-us", "gov-cn") if s in sources]

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["filters"] == {"sources": sorted(args.get("sources", ())), "since": args.get("since"),
                                   "until": args.get("until"), "search": query}
    assert manifest["search"]["matched"] == len(expected_ids(search_archive, matches))  # before the filters
    counts = {f["table"]: f["rows"] for f in manifest["files"] if "rows" in f}
    assert counts["releases"] == len(truth)
    assert counts["release_versions"] == len(read_csv(folder / "release_versions.csv")[1])
    assert counts["removals"] == len(read_csv(folder / "removals.csv")[1])


def test_search_jsonl_and_reexport_identical(search_archive, tmp_path):
    one = export(search_archive, tmp_path / "a", "--search", "war OR 网络", "--format", "jsonl")
    two = export(search_archive, tmp_path / "b", "--search", "war OR 网络", "--format", "jsonl")
    truth = expected_ids(search_archive, any_of(has_word("war"), has_substring("网络")))
    lines = (one / "releases.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == truth
    for name in ("releases.jsonl", "release_versions.jsonl", "removals.jsonl", "README.md"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_search_matching_nothing_gives_an_empty_snapshot(search_archive, tmp_path):
    folder = export(search_archive, tmp_path / "exports", "--search", "zygomorphic")
    header, rows = read_csv(folder / "releases.csv")
    assert header[0] == "id" and rows == []
    assert read_csv(folder / "release_versions.csv")[1] == [] and read_csv(folder / "removals.csv")[1] == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["search"]["matched"] == 0 and manifest["filters"]["search"] == "zygomorphic"


def test_search_leaves_the_archive_untouched(search_archive, tmp_path):
    before = search_archive.read_bytes()
    export(search_archive, tmp_path / "exports", "--search", "war")
    assert search_archive.read_bytes() == before
    names = [n for (n,) in sqlite3.connect(search_archive).execute("SELECT name FROM sqlite_master")]
    assert not [n for n in names if "export" in n]


@pytest.mark.parametrize("query", ["", "   ", "-", '""', "-war", "* OR"])
def test_search_with_nothing_to_find_is_refused(search_archive, tmp_path, query):
    result = run_export(search_archive, tmp_path / "exports", "--search", query, ok=False)
    assert result.exit_code == 2
    assert "has nothing to search for" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "exports").exists()


def test_search_without_search_index_is_one_line_error(archive, tmp_path):
    result = run_export(archive, tmp_path / "exports", "--search", "climate", ok=False)  # never indexed
    assert result.exit_code == 2
    assert f"{archive} has no search index" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "exports").exists()
    assert run_export(archive, tmp_path / "exports").exit_code == 0  # a plain export still works


@pytest.mark.parametrize("write, changed", [
    (("INSERT INTO releases (id, source_id, url, title, published, text) "
      "VALUES (50, 'gov-uk', 'https://example.gov/50', 'Late news', '2024-05-01', 'The war goes on.')"), 50),
    ("UPDATE releases SET text = 'Software and war.' WHERE id = 2", 2),
    ("DELETE FROM releases WHERE id = 12", None),
])
def test_search_refuses_an_out_of_date_index(search_archive, tmp_path, write, changed):
    conn = sqlite3.connect(search_archive)  # a writer that never calls index_releases
    with conn:
        conn.execute(write)
    conn.close()
    result = run_export(search_archive, tmp_path / "exports", "--search", "war", ok=False)
    assert result.exit_code == 2
    assert "search index" in result.output and "is out of date (releases were written" in result.output
    assert len(result.output.strip().splitlines()) == 1

    from archive.search_index import ensure_search

    db = open_archive(search_archive)
    ensure_search(db)  # what `pressarchive serve` does on start
    db.close()
    folder = export(search_archive, tmp_path / "exports", "--search", "war")
    ids = csv_ids(folder / "releases.csv")
    assert ids == expected_ids(search_archive, all_of(has_word("war")))
    if changed:
        assert changed in ids  # the write is found once indexed
    else:
        assert 12 not in ids  # the deleted release is gone

    conn = sqlite3.connect(search_archive)  # an index built by another version of search_form()
    with conn:
        conn.execute("UPDATE _pressarchive SET value = 'old' WHERE key = 'search_version'")
    conn.close()
    result = run_export(search_archive, tmp_path / "exports", "--search", "war", ok=False)
    assert result.exit_code == 2 and "out of date (format old" in result.output

"""Tests for ``pressarchive export`` (crawler/export.py).

Every test builds a real archive file with ``pipelines.schema.open_archive``,
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
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.export import RELEASES_LEAD_COLUMNS, SNAPSHOT_NAME, export_command
from pipelines.schema import SCHEMA_VERSION, open_archive

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
    assert "外交部发言人答记者问".encode("utf-8") in data
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

    from crawler.export import csv_lines

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
    from pipelines.schema import RELEASES_COLUMNS
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
    assert manifest["filters"] == {"sources": ["gov-cn"], "since": None, "until": None}


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
    for db in (tmp_path / "nope.db", tmp_path):
        result = run_export(db, tmp_path / "exports", ok=False)
        assert result.exit_code == 2 and "archive not found" in result.output
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
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
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
        "from crawler.export import export_command; "
        "export_command(sys.argv[1:], prog_name='pressarchive export')"
    )

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-c", script, "--db", str(archive), "--out", str(out)],
        preexec_fn=limit, env=env, capture_output=True, text=True, timeout=120,
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
        from crawler.serve import make_datasette
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
    from pipelines import search_index

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

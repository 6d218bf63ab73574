"""Benchmark ``pressarchive export`` on a large synthetic archive.

Builds (or, with ``--reuse``, reuses) an archive of N synthetic releases with
the real schema (``archive.schema.open_archive``): a mix of English and
Chinese texts with lognormal lengths close to real press releases, 40
sources, dates over 25 years with ~1% undated. Then runs the export in a
child process and reports wall time, rows/s, MB/s, the child's peak RSS
(``os.wait4`` rusage, i.e. its own high-water mark) and the file sizes.

Run by hand from the repository root::

    PYTHONPATH=. /work/venv/bin/python benchmarks/export.py --rows 1000000
    PYTHONPATH=. /work/venv/bin/python benchmarks/export.py --reuse --source bench-01 --source bench-02

The archive is ~3.5 GB at 1M rows and each export about as much again;
exports are deleted after measuring unless ``--keep-export`` is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archive.schema import open_archive

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(tempfile.gettempdir()) / "pressarchive-bench"
SOURCES = [f"bench-{i:02d}" for i in range(40)]
BATCH = 5_000

EN_WORDS = (
    "the minister government said statement today international cooperation security "
    "economic development trade policy people support national council meeting agreement "
    "public health climate energy regional partners announced visit president prime "
    "foreign affairs committee report investment infrastructure education reform "
    "continue strengthen ensure important measures new year further both sides"
).split()
ZH_CHARS = (
    "中华人民共和国外交部发言人表示国务院总理会见合作发展经济贸易安全国际关系双方同意加强"
    "推动地区和平稳定人民共同利益政策会议召开宣布支持建设改革开放创新科技教育卫生能源气候"
)


def sentence_pools(rng: random.Random) -> tuple[list[str], list[str]]:
    """Pre-built sentences, so generating a million texts is only picking and joining."""
    en = [
        " ".join(rng.choices(EN_WORDS, k=rng.randint(8, 30))).capitalize() + "."
        for _ in range(3000)
    ]
    zh = ["".join(rng.choices(ZH_CHARS, k=rng.randint(15, 60))) + "。" for _ in range(3000)]
    return en, zh


def synthetic_text(rng: random.Random, pool: list[str], median_chars: int, chunk: int) -> str:
    """Lognormal length (long tail of multi-page speeches), paragraphs split by newlines."""
    target = min(int(rng.lognormvariate(0, 0.7) * median_chars), 60 * median_chars)
    sentences = rng.choices(pool, k=max(1, target // chunk))
    paragraphs = [" ".join(sentences[i:i + 4]) for i in range(0, len(sentences), 4)]
    return "\n".join(paragraphs)


def synthetic_rows(n: int, seed: int = 1):
    rng = random.Random(seed)
    en, zh = sentence_pools(rng)
    start = dt.date(2000, 1, 1).toordinal()
    for i in range(1, n + 1):
        chinese = rng.random() < 0.4
        # ~450 English words or ~1,200 Chinese characters at the median
        text = synthetic_text(rng, zh, 1200, 40) if chinese else synthetic_text(rng, en, 2800, 130)
        day = dt.date.fromordinal(start + rng.randrange(9125))
        published = None if rng.random() < 0.01 else day.isoformat()
        source = rng.choice(SOURCES)
        url = f"https://{source}.example.gov/news/{i}"
        seen = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
        yield (
            i, source, url, url, url,
            text[:80].split("\n")[0], published, int(published[:4]) if published else None,
            "meta", "zh" if chinese else "en", text, len(text) if chinese else text.count(" ") + 1,
            hashlib.sha256(text.encode("utf-8")).hexdigest(), "XX", "ministry", None,
            "text/html", "utf-8", 200, "trafilatura", seen, seen,
        )


COLUMNS = (
    "id source_id url canonical_url fetched_url title published year date_source language text "
    "word_count content_hash country kind summary content_type encoding http_status extractor "
    "first_seen last_seen"
).split()


def build_archive(path: Path, n: int) -> float:
    """Create the archive with the real schema, then bulk-insert rows fast."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    open_archive(path).close()
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # a benchmark fixture, not data to keep
    conn.executemany("INSERT INTO sources (id, name, country, kind) VALUES (?, ?, 'XX', 'ministry')",
                     [(s, s.upper()) for s in SOURCES])
    conn.execute("INSERT INTO crawl_runs (run_id, source_id, started, finished, status) "
                 "VALUES ('bench', 'bench-00', '2024-12-31T00:00:00Z', '2024-12-31T01:00:00Z', 'ok')")
    sql = f"INSERT INTO releases ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    rows, batch = synthetic_rows(n), []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            conn.executemany(sql, batch)
            conn.commit()
            batch.clear()
            if row[0] % 100_000 == 0:
                print(f"  built {row[0]:,} rows ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    conn.executemany(sql, batch)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def count_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM releases").fetchone()[0]
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def run_export(db: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    """Export in a child; return seconds, the child's peak RSS in bytes, and its folder."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [sys.executable, "-m", "crawler", "export", "--db", str(db), "--out", str(out), *extra]
    with tempfile.TemporaryFile() as stdout:
        started = time.perf_counter()
        child = subprocess.Popen(args, env=env, stdout=stdout)
        _, status, usage = os.wait4(child.pid, 0)  # rusage of this child only
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            sys.exit(f"export failed with exit code {child.returncode}")
        stdout.seek(0)
        folder = stdout.read().decode().strip()
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return elapsed, peak, folder


def report(db: Path, folder: Path, rows: int, elapsed: float, peak: int) -> None:
    total = sum(f.stat().st_size for f in folder.iterdir())
    print(f"archive        {db} ({db.stat().st_size / 1e9:.2f} GB)")
    print(f"rows exported  {rows:,}")
    print(f"wall time      {elapsed:.1f} s")
    print(f"rows/s         {rows / elapsed:,.0f}")
    print(f"MB/s written   {total / 1e6 / elapsed:,.1f}")
    print(f"peak RSS       {peak / 2**20:.1f} MiB (export child)")
    for f in sorted(folder.iterdir()):
        print(f"  {f.name:<18} {f.stat().st_size / 1e6:>12,.1f} MB")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where the archive and exports go")
    parser.add_argument("--reuse", action="store_true", help="reuse the archive if it has --rows rows")
    parser.add_argument("--keep-export", action="store_true", help="do not delete the snapshot afterwards")
    parser.add_argument("--source", action="append", default=[], help="passed to export --source")
    parser.add_argument("--format", default="csv", choices=["csv", "jsonl"])
    args = parser.parse_args(argv)

    db = args.dir / f"archive-{args.rows}.db"
    if args.reuse and db.exists() and count_rows(db) == args.rows:
        print(f"reusing {db}", file=sys.stderr)
    else:
        print(f"building {args.rows:,} releases in {db}", file=sys.stderr)
        print(f"built in {build_archive(db, args.rows):.0f}s", file=sys.stderr)

    extra = ["--format", args.format] + [a for s in args.source for a in ("--source", s)]
    elapsed, peak, folder = run_export(db, args.dir / "exports", extra)
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = next(f["rows"] for f in manifest["files"] if f.get("table") == "releases")
    report(db, folder, rows, elapsed, peak)
    if not args.keep_export:  # several GB: do not leave it on a shared disk
        shutil.rmtree(folder)
        (folder.parent / "latest").unlink(missing_ok=True)


if __name__ == "__main__":
    main()

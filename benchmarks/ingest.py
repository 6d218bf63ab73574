"""Archive scale: N synthetic releases through the archive's writer, FTS kept in sync.

Releases go through :class:`archive.writer.ArchiveWriter` (the one writer of
the crawl and of ``pressarchive ingest``) in batches, each one transaction that
stores releases, version 1 and index entries. A worker process makes the
releases and their search form, as the crawl's cleaning workers do, and the
rows the writer stores (``Preparer.prepare``), so the writing process only
writes (``ArchiveWriter.write_prepared``). Prints releases/s, the time of a full index
rebuild, the file size and a sample search.

``--path apply`` stores every release through ``history.apply_release`` +
``search_index.index_releases`` (the one-by-one path used for releases the
archive already knows) for comparison.

Goal (issue 9): >= 5,000 releases/s with FTS in sync.

    python benchmarks/ingest.py [--releases 1000000] [--batch 20000] [--path writer|apply]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from archive import history, search_index
from archive.items import ReleaseItem
from archive.schema import open_archive
from archive.writer import ArchiveWriter, Preparer
from crawler.sources import Source
from pipelines.extraction import content_hash, word_count

WORDS = ["minister", "statement", "cooperation", "partners", "security", "trade", "human", "rights", "agreement", "officials", "region", "government", "international", "humanitarian", "assistance", "commitment", "progress", "review", "meeting", "talks", "climate", "energy", "sanctions", "ceasefire", "embassy", "consular", "visit", "bilateral", "multilateral", "summit"]
ZH = "外交部发言人表示中方愿同各方加强对话与合作共同维护地区和平稳定发展"
SOURCES = [("ca-gac", "CA", "foreign_ministry", "en"), ("cn-mfa", "CN", "foreign_ministry", "zh"),
           ("uk-fcdo", "GB", "foreign_ministry", "en"), ("us-state", "US", "foreign_ministry", "en")]
SOURCE_ROWS = {sid: Source(id=sid, name=sid, country=country, kind=kind, languages=[lang], article_pattern=".")
               for sid, country, kind, lang in SOURCES}


def text_pool(size: int = 4000) -> list[tuple[str, str]]:
    """(title, text) pairs, made once: generating random text would cost more than storing it."""
    rng = random.Random(1)
    pool = []
    for i in range(size):
        if SOURCES[i % len(SOURCES)][3] == "zh":
            text = "\n".join("".join(rng.choice(ZH) for _ in range(120)) for _ in range(4))
            title = "".join(rng.choice(ZH) for _ in range(14))
        else:
            text = "\n".join(" ".join(rng.choice(WORDS) for _ in range(70)) for _ in range(5))
            title = "Statement on " + " ".join(rng.choice(WORDS) for _ in range(6))
        pool.append((title, text))
    return pool


def synthetic(i: int, pool: list[tuple[str, str]], counted: list[int]) -> ReleaseItem:
    source_id, country, kind, language = SOURCES[i % len(SOURCES)]
    day = datetime(2000, 1, 1) + timedelta(days=i % 9000)
    title, text = pool[i % len(pool)]
    text = f"{text}\nReference {i}."  # every release distinct
    url = f"https://{source_id}.example/news/{i}.html"
    return ReleaseItem(
        source_id=source_id, url=url, fetched_url=url, http_status=200, content_type="text/html",
        http_charset="utf-8", fetched_at="2024-01-01T00:00:00Z", title=title, text=text,
        published=day.strftime("%Y-%m-%d"), date_source="meta", language=language,
        word_count=counted[i % len(counted)], content_hash=content_hash(str(i)), encoding="utf-8",
        extractor="bench", text_status="text",
    )


_POOL = None


def make_batch(first: int, last: int, mode: str = "writer"):
    """A worker's share: cleaned releases as a cleaning worker hands them over (search form
    included), and for the writer path the rows the writer stores for them
    (:meth:`Preparer.prepare`): all the writer process is sent."""
    global _POOL
    if _POOL is None:  # once per worker process
        pool = text_pool()
        _POOL = (pool, [word_count(text) + 2 for _, text in pool])
    items = [synthetic(i, *_POOL) for i in range(first, last)]
    for item in items:
        item.search_form = (search_index.search_form(item.title), search_index.search_form(item.text))
    return Preparer(SOURCE_ROWS).prepare(items) if mode == "writer" else items


READ_AHEAD = 2  # chunks made ahead of the writer, beyond one transaction's worth


def batch_bounds(releases: int, batch: int) -> list[tuple[int, int]]:
    """[first, last) of each batch. The first ones are small (1,000, 2,000, ... up to
    ``batch``) so the writer starts as soon as a worker has made a few releases."""
    bounds, first, size = [], 0, min(1000, batch)
    while first < releases:
        bounds.append((first, min(first + size, releases)))
        first, size = first + size, min(size * 2, batch)
    return bounds


def ingest(path: Path, releases: int, batch: int, mode: str, chunk: int = 5000, cache_mb: int = 256) -> float:
    """Worker process: makes and prepares chunks of releases. This process: stores them
    (``writer.write_prepared``), ``batch`` releases per transaction."""
    writer = ArchiveWriter(path, sources=SOURCE_ROWS, cache_mb=cache_mb)
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    bounds = batch_bounds(releases, min(chunk, batch))
    started = time.perf_counter()
    waited = 0.0
    transaction = contextlib.nullcontext()
    in_transaction = 0
    # The worker keeps making chunks while the writer commits: a transaction's worth and a
    # little more waiting at most (memory stays flat).
    read_ahead = READ_AHEAD + batch // min(chunk, batch)
    with ProcessPoolExecutor(max_workers=1) as workers:
        ahead = [workers.submit(make_batch, *b, mode) for b in bounds[:read_ahead]]
        done = 0
        for n in range(len(bounds)):
            t0 = time.perf_counter()
            made = ahead.pop(0).result()
            waited += time.perf_counter() - t0
            if n + read_ahead < len(bounds):
                ahead.append(workers.submit(make_batch, *bounds[n + read_ahead], mode))
            if not in_transaction:
                transaction = writer.transaction()
                transaction.__enter__()
            if mode == "writer":
                writer.write_prepared(made)
            else:
                ids = [history.apply_release(writer.db, writer._release_values(item), now=now)[1] for item in made]
                search_index.index_releases(writer.db, ids)
            count = len(made.rows if mode == "writer" else made)
            in_transaction += count
            if in_transaction >= batch or n == len(bounds) - 1:
                transaction.__exit__(None, None, None)
                in_transaction = 0
            before, done = done, done + count
            if done // 100_000 > before // 100_000:
                print(f"  {done:,} releases, {done / (time.perf_counter() - started):,.0f}/s "
                      f"(writer waited {waited:.1f} s for batches)", flush=True)
    seconds = time.perf_counter() - started
    writer.close()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20000, help="releases per transaction")
    parser.add_argument("--path", choices=("writer", "apply"), default="writer", dest="mode")
    parser.add_argument("--chunk", type=int, default=5000, help="releases a worker prepares at a time")
    parser.add_argument("--cache-mb", type=int, default=256, help="the writer's SQLite page cache")
    parser.add_argument("--keep", type=Path, help="write the archive here instead of a temporary file")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        folder = args.keep.parent if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        path = args.keep or folder / "ingest.db"
        seconds = ingest(path, args.releases, args.batch, args.mode, args.chunk, args.cache_mb)
        print(f"{args.releases:,} releases in {seconds:.1f} s = {args.releases / seconds:,.0f} releases/s "
              f"(batches of {args.batch}, {args.mode} path, FTS in sync); peak RSS of the writer "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
        db = open_archive(path)
        rows = db.execute("select count(*) from releases").fetchone()[0]
        indexed = db.execute("select count(*) from releases_fts_rows").fetchone()[0]
        assert rows == indexed == args.releases, (rows, indexed)
        started = time.perf_counter()
        with db.atomic():
            search_index._rebuild(db)
        print(f"full FTS rebuild: {time.perf_counter() - started:.1f} s")
        db.execute("pragma wal_checkpoint(truncate)")
        print(f"file size: {path.stat().st_size / 2**20:,.0f} MB ({path.stat().st_size / args.releases:,.0f} bytes/release)")
        match = search_index.rewrite_query("ceasefire sanctions")
        started = time.perf_counter()
        hits = db.execute("select count(*) from releases_fts where releases_fts match ?", [match]).fetchone()[0]
        print(f"search 'ceasefire sanctions': {hits:,} matches counted in {time.perf_counter() - started:.2f} s")
        db.close()


if __name__ == "__main__":
    main()

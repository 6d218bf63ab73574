"""Archive scale: N synthetic releases written the way the store writes them, FTS kept in sync.

Each batch goes through :func:`pipelines.history.apply_release` (release row +
version 1) and :func:`pipelines.search_index.index_releases` in one
transaction, like ``StorePipeline.flush``. Prints releases/s, the time of a
full index rebuild, the file size and a sample search.

``--transaction conn`` writes batches inside ``with db.conn:`` as store.py
does today: with sqlite-utils 4 that opens no transaction, so every statement
commits on its own; ``--transaction atomic`` (default) uses ``db.atomic()``.

Goal (issue 9): >= 5,000 releases/s with FTS in sync.

    python benchmarks/ingest.py [--releases 1000000] [--batch 1000] [--transaction atomic|conn]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipelines import history, search_index
from pipelines.extraction import content_hash, word_count
from pipelines.schema import open_archive

WORDS = ("minister statement cooperation partners security trade human rights agreement officials region "
         "government international humanitarian assistance commitment progress review meeting talks climate "
         "energy sanctions ceasefire embassy consular visit bilateral multilateral summit").split()
ZH = "外交部发言人表示中方愿同各方加强对话与合作共同维护地区和平稳定发展"
SOURCES = [("ca-gac", "CA", "foreign_ministry", "en"), ("cn-mfa", "CN", "foreign_ministry", "zh"),
           ("uk-fcdo", "GB", "foreign_ministry", "en"), ("us-state", "US", "foreign_ministry", "en")]


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


def synthetic(i: int, pool: list[tuple[str, str]], counted: list[int]) -> dict:
    source_id, country, kind, language = SOURCES[i % len(SOURCES)]
    day = datetime(2000, 1, 1) + timedelta(days=i % 9000)
    title, text = pool[i % len(pool)]
    text = f"{text}\nReference {i}."  # every release distinct; hash and count come from the cleaning workers
    words, digest = counted[i % len(counted)], content_hash(str(i))
    seen = "2024-01-01T00:00:00Z"
    return {
        "url": f"https://{source_id}.example/news/{i}.html", "source_id": source_id, "fetched_url": None,
        "title": title, "text": text, "published": day.strftime("%Y-%m-%d"), "year": day.year,
        "date_source": "meta", "language": language, "word_count": words,
        "content_hash": digest, "country": country, "kind": kind, "http_status": 200,
        "content_type": "text/html", "encoding": "utf-8", "extractor": "bench", "last_seen": seen,
    }


def ingest(db, releases: int, batch: int, transaction: str) -> float:
    pool = text_pool()
    counted = [word_count(text) + 2 for _, text in pool]
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    started = time.perf_counter()
    for start in range(0, releases, batch):
        rows = [synthetic(i, pool, counted) for i in range(start, min(start + batch, releases))]
        block = db.atomic() if transaction == "atomic" else db.conn
        with block:
            ids = [history.apply_release(db, row, now=now)[1] for row in rows]
            search_index.index_releases(db, ids)
        if start and start % (batch * 100) == 0:
            done = start + len(rows)
            print(f"  {done:,} releases, {done / (time.perf_counter() - started):,.0f}/s", flush=True)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--transaction", choices=("atomic", "conn"), default="atomic")
    parser.add_argument("--keep", type=Path, help="write the archive here instead of a temporary file")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        folder = args.keep.parent if args.keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        path = args.keep or folder / "ingest.db"
        db = open_archive(path)
        search_index.ensure_search(db)
        seconds = ingest(db, args.releases, args.batch, args.transaction)
        print(f"{args.releases:,} releases in {seconds:.1f} s = {args.releases / seconds:,.0f} releases/s "
              f"(batches of {args.batch}, transaction={args.transaction}, FTS in sync)")
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

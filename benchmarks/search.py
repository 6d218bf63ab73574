"""Search latency on a large synthetic archive, through Datasette's JSON API.

    python benchmarks/search.py --rows 1000000 --db /tmp/bench.db

Builds (or reuses, if it already holds ``--rows`` releases) an archive with
the real schema and the real indexing path (``ensure_search`` +
the functions ``index_releases`` uses, batch by batch; no FTS5 ``optimize``,
so segments are as a long crawl leaves them), then times each query type through an in-process Datasette made by
``archive.site.serve.make_datasette``: the releases table view
(``/archive/releases.json?_search=``, facets and count included) and the
canned ``search`` query (bm25-ranked, with snippets). Prints p50/p95 per
query type, time-limit hits, build time and file sizes.

Text is generated from Zipf-weighted vocabularies: English ~300-800 words,
Chinese ~500-1500 characters, plus some Japanese and Korean. A few planted
words and phrases give known rare/common frequencies.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.schema import RELEASES_COLUMNS, open_archive
from archive.search_index import ensure_search, insert_prepared, prepare

COMMON_EN = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "on", "with", "as", "by", "this", "it", "be", "are", "was", "at", "from", "has", "have", "we", "our", "will", "government", "minister", "said", "people", "support", "security", "international", "cooperation", "development", "economic", "countries", "meeting", "president", "foreign", "trade", "policy", "war", "peace", "software", "network", "property", "intellectual", "rights", "health", "climate", "energy"]
COMMON_ZH = ["的", "了", "是", "在", "和", "有", "我们", "中国", "政府", "国际", "合作", "发展", "安全", "经济", "会议", "外交部", "发言人", "表示", "问题", "国家", "人民", "网络", "双方", "关系", "支持", "推动", "建设", "全球", "和平", "世界", "地区", "领域"]
ZH_CHARS = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
KANA = [chr(c) for c in range(0x3041, 0x3094)] + [chr(c) for c in range(0x30A1, 0x30F4)]
HANGUL = [chr(c) for c in range(0xAC00, 0xAC00 + 1500)]
SOURCES = [(f"source_{i:02d}", ["us", "cn", "gb", "jp", "kr", "un"][i % 6], ["ministry", "embassy", "mission"][i % 3]) for i in range(40)]

STATEMENT_TYPES = ["press_release", "statement", "readout", "speech", "joint_statement",
                   "press_conference", "notice", "other"]

# (query type, queries) timed through Datasette. Frequencies come from make_*.
QUERIES = {
    "rare word": ["zygomorphic", "quixotically", "perihelion"],
    "common word": ["the", "government", "cooperation"],
    "phrase": ['"intellectual property"', '"climate change"', '"foreign minister"'],
    "CJK 2-char": ["网络", "合作", "安全"],
    "CJK 4-char": ["知识产权", "气候变化", "一带一路"],
    "mixed": ["5G 网络", "WTO规则", "G20 合作"],
    "Japanese/Korean": ["政府は", "정부"],
}


def zipf_weights(n: int) -> list[float]:
    return list(itertools.accumulate(1 / (rank + 1) for rank in range(n)))


def synthetic_word(rng: random.Random) -> str:
    syllables = ["ka", "lo", "mi", "ter", "an", "sub", "ex", "pro", "ri", "ven", "dor", "al", "ion", "st", "ure"]
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))


class TextMaker:
    def __init__(self, seed: int = 1):
        # Vocabularies come from a fixed seed so every batch shares them.
        self.rng = random.Random(0)
        en = COMMON_EN + sorted({synthetic_word(self.rng) for _ in range(40000)})
        self.en, self.en_cum = en, zipf_weights(len(en))
        zh_words = COMMON_ZH + [
            "".join(self.rng.choices(ZH_CHARS, k=self.rng.choice([1, 2, 2, 2, 3, 4])))
            for _ in range(30000)
        ]
        self.zh, self.zh_cum = zh_words, zipf_weights(len(zh_words))
        self.rng = random.Random(seed)

    def english(self) -> str:
        rng = self.rng
        words = rng.choices(self.en, cum_weights=self.en_cum, k=rng.randint(300, 800))
        for phrase, rate in (("intellectual property", 0.02), ("climate change", 0.05), ("foreign minister", 0.1)):
            if rng.random() < rate:
                words.insert(rng.randrange(len(words)), phrase)
        for rare in ("zygomorphic", "quixotically", "perihelion"):
            if rng.random() < 0.0001:
                words.insert(rng.randrange(len(words)), rare)
        paragraphs = [" ".join(words[i : i + 80]).capitalize() + "." for i in range(0, len(words), 80)]
        return "\n".join(paragraphs)

    def chinese(self) -> str:
        rng = self.rng
        target = rng.randint(500, 1500)
        words = rng.choices(self.zh, cum_weights=self.zh_cum, k=target // 2)
        for planted, rate in (("知识产权", 0.03), ("气候变化", 0.05), ("一带一路", 0.02), ("5G", 0.02), ("WTO规则", 0.02), ("G20", 0.03)):
            if rng.random() < rate:
                words.insert(rng.randrange(len(words)), planted)
        out, sentence = [], 0
        for word in words:
            out.append(word)
            sentence += len(word)
            if sentence > rng.randint(8, 30):
                out.append(rng.choice("，。；"))
                sentence = 0
        text = "".join(out)
        return "\n".join(text[i : i + 300] for i in range(0, len(text), 300))

    def japanese(self) -> str:
        rng = self.rng
        parts = [("政府" if rng.random() < 0.3 else "".join(rng.choices(ZH_CHARS[:500], k=2))) + "".join(rng.choices(KANA, k=rng.randint(1, 4))) for _ in range(200)]
        return "。".join(parts)

    def korean(self) -> str:
        rng = self.rng
        words = [("정부" if rng.random() < 0.05 else "".join(rng.choices(HANGUL, k=rng.randint(2, 4)))) + rng.choice(["는", "가", "를", ""]) for _ in range(300)]
        return " ".join(words)

    def release(self, i: int) -> dict:
        rng = self.rng
        r = rng.random()
        language, text = (
            ("en", self.english()) if r < 0.6 else
            ("zh", self.chinese()) if r < 0.95 else
            ("ja", self.japanese()) if r < 0.98 else
            ("ko", self.korean())
        )
        source_id, country, kind = rng.choice(SOURCES)
        year = rng.randint(2000, 2025)
        published = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        title = " ".join(text.split("\n")[0].split()[:8])[:80] if language in ("en", "ko") else text[:30]
        return {
            "id": i, "source_id": source_id, "url": f"https://example.org/{source_id}/{i}",
            "title": title, "published": published, "year": year, "language": language,
            "text": text, "word_count": len(text.split()), "country": country, "kind": kind,
            "date_source": "meta", "content_hash": f"{i:064x}",
            "statement_type": rng.choice(STATEMENT_TYPES),
            "first_seen": "2025-01-01T00:00:00Z", "last_seen": "2025-01-01T00:00:00Z",
        }


def _make_batch(ids: list[int]) -> tuple[list[dict], list[tuple]]:
    """Releases and their index entries, made in a worker process."""
    maker = TextMaker(seed=ids[0])
    records = [maker.release(i) for i in ids]
    return records, prepare(records)


def build(path: Path, rows: int, batch: int = 5000) -> float:
    """Insert ``rows`` releases and index them batch by batch.

    The bulk path: index entries are computed by ``search_index.prepare`` in a
    worker process (with the text) and written by ``insert_prepared``, the
    same functions ``index_releases`` uses, so the index is the one a crawl
    builds; only the Python work moves off the writing process.
    """
    from concurrent.futures import ProcessPoolExecutor

    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = open_archive(path)
    ensure_search(db)
    db.execute("pragma synchronous = off")
    db.execute("pragma cache_size = -1000000")  # 1 GB: keeps b-tree and FTS merges in memory
    # No other writer here: the capture triggers are not needed while loading.
    db.execute("drop trigger if exists releases_fts_on_insert")
    columns = [c for c in RELEASES_COLUMNS if c in TextMaker().release(0)]
    insert = f"insert into releases ({', '.join(columns)}) values ({', '.join('?' * len(columns))})"
    batches = [list(range(f, min(f + batch, rows + 1))) for f in range(1, rows + 1, batch)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1) as pool:
        ahead = [pool.submit(_make_batch, b) for b in batches[:3]]  # bounded: memory
        for n in range(1, len(batches) + 1):
            records, entries = ahead.pop(0).result()
            if n + 2 < len(batches):
                ahead.append(pool.submit(_make_batch, batches[n + 2]))
            ids = [r["id"] for r in records]
            with db.conn:
                db.conn.executemany(insert, [[r[c] for c in columns] for r in records])
                insert_prepared(db, entries)
            if n % 10 == 0:
                print(f"  {ids[-1]:,} rows, {time.perf_counter() - start:.0f} s", flush=True)
    ensure_search(db)  # restores the trigger; finds nothing left to index
    db.execute("pragma wal_checkpoint(truncate)")
    return time.perf_counter() - start


def size_report(path: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        sizes = dict(conn.execute("select name, sum(pgsize) from dbstat group by name"))
    except sqlite3.OperationalError:
        sizes = {}
    conn.close()
    index = sum(v for k, v in sizes.items() if k.startswith("releases_fts"))
    return (
        f"file {os.path.getsize(path) / 1e9:.2f} GB; search index (releases_fts*) "
        f"{index / 1e9:.2f} GB; releases table {sizes.get('releases', 0) / 1e9:.2f} GB"
    )


FACETS = ("source_id", "country", "kind", "language", "year", "statement_type")
BANDS = [(1, 1_000), (1_000, 10_000), (10_000, 100_000), (100_000, 10**12)]
COMMONEST = ["the", "government", "的", "合作"]


def band_name(count: int) -> str:
    for low, high in BANDS:
        if low <= count < high:
            return f"{low:,}-{high:,}" if high < 10**12 else f"{low:,}+"
    return "0"


def words_by_band(path: Path, per_band: int = 3) -> dict[str, list[str]]:
    """Words of the generated vocabularies (English and Chinese, over the Zipf ranks), a few per band.

    Counted with FTS5 count(*) on the built archive, so each band holds real queries of that size.
    """
    import sqlite3

    from archive.search_index import user_match

    maker = TextMaker()
    candidates = []
    for vocabulary in (maker.en, maker.zh):
        for rank in (30, 60, 120, 250, 500, 1000, 2000, 4000, 8000, 12000, 16000, 20000, 25000, 29000):
            word = vocabulary[min(rank, len(vocabulary) - 1)]
            if len(word) > 1:
                candidates.append(word)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    bands: dict[str, list[str]] = {}
    for word in candidates:
        count = conn.execute("select count(*) from releases_fts where releases_fts match ?",
                             [user_match(word)]).fetchone()[0]
        band = band_name(count)
        if count and len(bands.setdefault(band, [])) < per_band:
            bands[band].append(word)
    conn.close()
    return bands


def percentile(timings: list[float], p: float) -> float:
    timings = sorted(timings)
    return timings[min(len(timings) - 1, int(len(timings) * p))]


async def time_queries(path: Path, repeats: int) -> None:
    """p50/p95 per query type and per match-count band, for the table view and the ranked query.

    Every timed request is a real one through Datasette (count, the six facets and the first
    page for the table view; the best 50 of every match with snippets for the ranked query).
    The first request of each query is a warm-up (page cache) and is not timed; nothing is
    cached between requests by the plugin except the facet arrays, which follow the archive.
    """
    from archive.site.serve import DEFAULT_SETTINGS, make_datasette

    ds = make_datasette(path)
    print("settings:", {k: v for k, v in DEFAULT_SETTINGS.items()}, "(shipped defaults)")
    db_name = path.stem
    endpoints = {
        "table": lambda q: f"/{db_name}/releases.json?_search={urllib.parse.quote(q)}",
        "search": lambda q: f"/{db_name}/search.json?q={urllib.parse.quote(q)}",
    }
    groups = dict(QUERIES)
    groups["commonest"] = COMMONEST
    for band, words in words_by_band(path).items():
        groups[f"band {band} (vocabulary)"] = words
    by_band: dict[tuple[str, str], list[float]] = {}
    t0 = time.perf_counter()
    await ds.client.get(endpoints["table"]("government"))
    print(f"first search (loads the facet arrays): {time.perf_counter() - t0:.2f} s")
    print(f"{'query type':28} {'endpoint':7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  matches  "
          "timeouts (errors, or a facet missing)  first (untimed warm-up) requests")
    for kind, queries in groups.items():
        for name, url_for in endpoints.items():
            timings, timeouts, counts, firsts = [], 0, [], []
            for q in queries:
                total = None
                t0 = time.perf_counter()
                await ds.client.get(url_for(q))  # warm-up: page cache (and the ranked search's postings)
                firsts.append((time.perf_counter() - t0) * 1000)
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    response = await ds.client.get(url_for(q))
                    elapsed = (time.perf_counter() - t0) * 1000
                    timings.append(elapsed)
                    data = response.json()
                    # Datasette's JSON leaves a facet that timed out out of facet_results (the HTML says so)
                    missing = name == "table" and set(FACETS) - set(data.get("facet_results", {}))
                    if response.status_code != 200 or missing or data.get("error"):
                        timeouts += 1
                    if name == "table":
                        total = data.get("filtered_table_rows_count")
                if name == "table":
                    counts.append(total)
                    by_band.setdefault((band_name(total or 0), name), []).extend(timings[-repeats:])
                    last_count = total
                else:
                    by_band.setdefault((band_name(last_counts.get(q, 0)), name), []).extend(timings[-repeats:])
                if name == "table":
                    last_counts[q] = last_count
            print(
                f"{kind:28} {name:7} {statistics.median(timings):8.1f} {percentile(timings, 0.95):8.1f} "
                f"{max(timings):8.1f}  {','.join(f'{c:,}' for c in counts if c is not None) or '':22} {timeouts}"
                f"  first {','.join(f'{t:.0f}' for t in firsts)} ms"
            )
    from archive.ranking import RANKERS

    for ranker in RANKERS.values():
        postings = sum(e.nbytes for e in ranker.entries.values())
        rows = 0 if ranker.rowids is None else ranker.rowids.nbytes + ranker.lengths.nbytes
        print(f"ranked search postings: {len(ranker.entries)} phrases, {postings / 2**20:.1f} MB "
              f"(cap {ranker.max_bytes / 2**20:.0f} MB); index rows and lengths {rows / 2**20:.1f} MB")
    print()
    print(f"{'matches':16} {'endpoint':7} {'requests':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for (band, name), timings in sorted(by_band.items(), key=lambda kv: (kv[0][1], int(kv[0][0].split("-")[0].rstrip("+").replace(",", "") or 0))):
        print(f"{band:16} {name:7} {len(timings):8} {statistics.median(timings):8.1f} "
              f"{percentile(timings, 0.95):8.1f} {max(timings):8.1f}")


last_counts: dict[str, int] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/pressarchive-bench.db"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if --db exists")
    args = parser.parse_args()

    existing = 0
    if args.db.exists() and not args.rebuild:
        import sqlite3

        existing = sqlite3.connect(args.db).execute("select count(*) from releases").fetchone()[0]
    if existing != args.rows:
        print(f"building {args.rows:,} releases in {args.db}")
        print(f"build time {build(args.db, args.rows):.0f} s")
    from archive.schema import open_archive as _open

    t0 = time.perf_counter()
    ensure_search(_open(args.db))  # what `pressarchive serve` does first (statistics for the planner)
    print(f"ensure_search before serving: {time.perf_counter() - t0:.1f} s")
    print(size_report(args.db))
    asyncio.run(time_queries(args.db, args.repeats))


if __name__ == "__main__":
    main()

"""Statement families at scale: planted reposts among N synthetic releases, through the writer.

Makes N releases (English and Chinese, realistic lengths, 60 sources, each with its own
header and footer on every page, some footers longer than the shortest bodies) with a
planted set of

* **reposts**: a statement copied by 1-3 other sources, each copy with that source's
  header and footer, a changed first line, an added sentence and one edited sentence;
* **translations**: an English release and a Chinese one (another text: a translation
  shares no shingles), which MinHash must leave alone;
* **near-misses**: short releases of one source whose text is mostly its long footer.

Writes them with :class:`archive.writer.ArchiveWriter` ``write`` (batches of ``--batch``
items, as the crawl's store does; by default the crawl's ``ARCHIVE_BATCH_SIZE``) twice, same
data, same run, batch after batch in turn: with linking switched off (``families.link_new``
replaced by a no-op) and with it, into two files, so that the machine's changing load
falls on both alike. Prints the writer's
time per release both ways and the added cost, the precision and recall of the repost links
against the planted groups (a planted pair counts as found when both are in one family; a
link is right when both ends belong to one planted group), what the near-misses and the
translations got, and the archive size both ways.

    python benchmarks/families.py [--releases 100000] [--batch 25]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from archive import families
from archive.items import ReleaseItem
from archive.schema import open_archive
from archive.writer import ArchiveWriter
from crawler import settings
from pipelines.extraction import content_hash

SOURCES = 60
ZH_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
            "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性"
            "好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向"
            "道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件"
            "长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给"
            "色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白")


_WEIGHTS: dict[int, list[float]] = {}


def zipf_words(rng: random.Random, vocabulary: list[str], count: int) -> list[str]:
    """Zipf-Mandelbrot word frequencies (rank r about 1 / (r + 2.7)), as in running text."""
    if len(vocabulary) not in _WEIGHTS:
        total, weights = 0.0, []
        for rank in range(len(vocabulary)):
            total += 1 / (rank + 2.7)
            weights.append(total)
        _WEIGHTS[len(vocabulary)] = weights
    return rng.choices(vocabulary, cum_weights=_WEIGHTS[len(vocabulary)], k=count)


def english_vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters[: 8 + len(words) % 18]) for _ in range(rng.randint(2, 10))))
    return sorted(words, key=lambda word: (len(word), word))  # (not set order: the same vocabulary every run)


class Corpus:
    def __init__(self, seed: int = 23):
        self.rng = random.Random(seed)
        self.words = english_vocabulary(self.rng)
        self.zh = list(ZH_CHARS)
        self.sources = []
        for n in range(SOURCES):
            language = "zh" if n % 4 == 3 else "en"
            footer_lines = self.rng.choice((1, 2, 4, 6))
            self.sources.append({
                "id": f"source-{n:02d}", "language": language,
                "header": self.sentence(language, 12),
                "footer": [self.sentence(language, 30) for _ in range(footer_lines)],
            })

    def sentence(self, language: str, length: int) -> str:
        if language == "zh":
            return "".join(zipf_words(self.rng, self.zh, int(length * 1.6))) + "。"
        return " ".join(zipf_words(self.rng, self.words, length)).capitalize() + "."

    def body(self, language: str, paragraphs: int) -> list[str]:
        return [" ".join(self.sentence(language, self.rng.randint(12, 28)) for _ in range(self.rng.randint(2, 4)))
                for _ in range(paragraphs)]

    def page(self, source: dict, body: list[str]) -> str:
        return "\n".join([source["header"], *body, *source["footer"]])


def make(releases: int, seed: int = 23):
    """(items, planted groups of item positions, near-miss positions, translation pairs)."""
    corpus = Corpus(seed)
    rng = corpus.rng
    texts, groups, near, translations = [], [], [], []

    def add(source: dict, body: list[str]) -> int:
        texts.append((source, corpus.page(source, body)))
        return len(texts) - 1

    while len(texts) < releases:
        kind = rng.random()
        source = rng.choice(corpus.sources)
        language = source["language"]
        if kind < 0.03:  # a statement and its reposts
            body = corpus.body(language, rng.randint(3, 9))
            group = [add(source, body)]
            for other in rng.sample([s for s in corpus.sources if s["language"] == language and s is not source],
                                    rng.randint(1, 3)):
                copy = [corpus.sentence(language, 18), *body[1:]]  # a changed first line
                at = rng.randrange(1, len(copy) + 1)
                copy.insert(at, corpus.sentence(language, 20))  # an added sentence
                edit = rng.randrange(1, len(copy))
                words = copy[edit].split(" ") if language == "en" else list(copy[edit])
                words[rng.randrange(len(words))] = "amended" if language == "en" else "改"
                copy[edit] = (" " if language == "en" else "").join(words)  # one edited sentence
                group.append(add(other, copy))
            groups.append(group)
        elif kind < 0.05 and language == "en":  # an English release and its Chinese version
            chinese = rng.choice([s for s in corpus.sources if s["language"] == "zh"])
            translations.append((add(source, corpus.body("en", 4)), add(chinese, corpus.body("zh", 4))))
        elif kind < 0.15 and len(source["footer"]) >= 4:  # a short notice under a long footer
            near.append(add(source, [corpus.sentence(language, rng.randint(15, 30))]))
        else:
            add(source, corpus.body(language, rng.randint(2, 10)))
    items = []
    for n, (source, text) in enumerate(texts):
        url = f"https://{source['id']}.example/news/{n}.html"
        day = 1 + n * 9000 // len(texts)
        items.append(ReleaseItem(
            source_id=source["id"], url=url, fetched_url=url, http_status=200, content_type="text/html",
            http_charset="utf-8", fetched_at="2024-01-01T00:00:00Z", title=f"Release {n}", text=text,
            published=f"{2000 + day // 365:04d}-{1 + day % 365 // 31:02d}-{1 + day % 28:02d}",
            date_source="meta", language=source["language"], word_count=len(text.split()),
            content_hash=content_hash(text), encoding="utf-8", extractor="bench", text_status="text"))
    return items, groups, near, translations


def store(plain: Path, linked: Path, items, batch: int) -> dict:
    """Write ``items`` into two new archives, batch after batch in turn: ``plain`` with linking
    switched off (``families.link_new`` a no-op), ``linked`` with it, so that both writers run
    in the same minutes of the machine's life. Returns the seconds of each (wall, and CPU of
    this process: the writers run in this thread, no checkpointer thread) and the CPU seconds
    of signing the texts for the linker, done before, as the cleaning workers do."""
    from archive import search_index

    for item in items:
        item.search_form = (search_index.search_form(item.title), search_index.search_form(item.text))
    cpu = time.process_time()
    signed = [families.sign(item.text) for item in items]  # pipelines/cleaning.py, in the workers
    signing = time.process_time() - cpu
    original = families.link_new
    writers = {"plain": ArchiveWriter(plain, background_checkpoints=False),
               "linked": ArchiveWriter(linked, background_checkpoints=False)}
    spent = {(name, clock): 0.0 for name in writers for clock in ("wall", "cpu")}
    try:
        for start in range(0, len(items), batch):
            part = items[start : start + batch]
            for name, writer in writers.items():
                link = name == "linked"
                for item, signature in zip(part, signed[start : start + batch]):
                    item.minhash = signature if link else None
                families.link_new = original if link else (lambda db, ids, at=None, texts=None: None)
                wall, cpu = time.perf_counter(), time.process_time()
                writer.write(part)
                spent[(name, "wall")] += time.perf_counter() - wall
                spent[(name, "cpu")] += time.process_time() - cpu
    finally:
        families.link_new = original
        for writer in writers.values():
            writer.close()
    return {**spent, "signing": signing}


def size(path: Path) -> int:
    db = open_archive(path)
    db.execute("pragma wal_checkpoint(truncate)")
    db.close()
    return path.stat().st_size


def score(path: Path, groups, near, translations) -> dict:
    db = open_archive(path)
    family_of = dict(db.execute("select release_id, family_id from family_members").fetchall())
    links = db.execute("select release_id, other_id from release_links where relation = 'repost'").fetchall()
    db.close()
    group_of = {i + 1: g for g, group in enumerate(groups) for i in group}  # release id = position + 1
    right = sum(1 for a, b in links if a in group_of and group_of.get(a) == group_of.get(b))
    pairs = [(group[0] + 1, other + 1) for group in groups for other in group[1:]]
    found = sum(1 for a, b in pairs if a in family_of and family_of.get(a) == family_of.get(b))
    near_ids = {n + 1 for n in near}
    translated = {frozenset((a + 1, b + 1)) for a, b in translations}
    return {
        "links": len(links), "precision": right / len(links) if links else 1.0,
        "pairs": len(pairs), "recall": found / len(pairs) if pairs else 1.0,
        "near_links": sum(1 for a, b in links if a in near_ids or b in near_ids),
        "translation_links": sum(1 for a, b in links if frozenset((a, b)) in translated),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=settings.ARCHIVE_BATCH_SIZE,
                        help="items per ArchiveWriter.write (one transaction; default: the crawl's ARCHIVE_BATCH_SIZE)")
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    started = time.perf_counter()
    items, groups, near, translations = make(args.releases, args.seed)
    print(f"made {len(items):,} releases in {time.perf_counter() - started:.0f} s: {len(groups):,} planted statements "
          f"with {sum(len(g) - 1 for g in groups):,} reposts, {len(translations):,} EN/ZH translation pairs, "
          f"{len(near):,} near-misses (short text under a footer of 4-6 long lines); "
          f"{sum(1 for i in items if i.language == 'zh'):,} in Chinese")
    print(f"configuration: NUM_PERM={families.NUM_PERM}, BANDS={families.BANDS} x ROWS={families.ROWS}, "
          f"THRESHOLD={families.THRESHOLD} (exact Jaccard), shingles {families.WORD_SHINGLE} words / "
          f"{families.CJK_SHINGLE} CJK characters, CONTEXT={families.CONTEXT}, MIN_SHINGLES={families.MIN_SHINGLES}, "
          f"writer batches of {args.batch}")
    with tempfile.TemporaryDirectory() as folder:
        plain, linked = Path(folder) / "plain.db", Path(folder) / "linked.db"
        spent = store(plain, linked, items, args.batch)
        for what, clock in (("wall", "wall"), ("CPU", "cpu")):
            without, with_ = spent[("plain", clock)], spent[("linked", clock)]
            per, extra = without / len(items) * 1e6, (with_ - without) / len(items) * 1e6
            print(f"writer {what} time without linking: {without:.1f} s ({per:.0f} us/release); with linking: "
                  f"{with_:.1f} s; added {extra:.0f} us/release = {extra / per:.1%} of the writer's cost")
        print(f"cleaning workers (in parallel, before the writer): signing the texts for the linker took "
              f"{spent['signing'] / len(items) * 1e6:.0f} us of CPU a release (families.sign)")
        result = score(linked, groups, near, translations)
        print(f"reposts: {result['links']:,} links, precision {result['precision']:.4f}; "
              f"recall {result['recall']:.4f} of {result['pairs']:,} planted pairs (same family)")
        print(f"near-misses linked: {result['near_links']:,} of {len(near):,}; translation pairs linked as reposts: "
              f"{result['translation_links']:,} of {len(translations):,}")
        a, b = size(plain), size(linked)
        print(f"archive size: {a / 2**20:,.1f} MB without, {b / 2**20:,.1f} MB with (+{(b - a) / a:.1%}, "
              f"{(b - a) / len(items):,.0f} bytes/release)")


if __name__ == "__main__":
    main()

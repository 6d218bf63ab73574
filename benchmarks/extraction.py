"""Extraction benchmark: the project's ``extract()`` against plain trafilatura.

Run by hand from the repository root::

    python benchmarks/extraction.py [MANIFEST] [--limit N] [--verbose]

MANIFEST defaults to ``$PRESSARCHIVE_CORPUS`` or ``../shared/corpus/manifest.jsonl``
(format: that directory's SOURCES.md; pages are gzip files next to it, never
copied into this repository). For every page both extractors run on the same
bytes and URL; the script prints, per split (overall, government / other,
en / zh / other languages):

- ``F1``: bag-of-tokens F1 of the main text against ``gold_text`` (CJK
  characters count as single tokens; other tokens are split on whitespace and
  punctuation, lowercased), mean over pages with a gold text;
- ``snip``: share of ``gold_with`` snippets present plus ``gold_without``
  snippets absent;
- ``title`` / ``date``: exact-match accuracy (titles normalised: NFKC,
  casefolded, whitespace and quotes unified);
- ``ms``: mean wall-clock milliseconds per page.

Plain trafilatura is ``bare_extraction(bytes, url=url, with_metadata=True)``,
its documented default path. ``fetched_at`` is "now", far after every gold date.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trafilatura  # noqa: E402

from pipelines.extraction import extract  # noqa: E402

DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "manifest.jsonl"
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
TOKEN_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]|[^\W_]+", re.UNICODE)
QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'",
                        "–": "-", "—": "-", "\u00ad": None})


def tokens(text: str | None) -> list[str]:
    """Lowercased tokens; every CJK character is one token."""
    return TOKEN_RE.findall((text or "").lower())


def token_f1(predicted: str | None, gold: str) -> float:
    pred, ref = Counter(tokens(predicted)), Counter(tokens(gold))
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((pred & ref).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(pred.values())
    recall = overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def norm_title(title: str | None) -> str:
    title = unicodedata.normalize("NFKC", title or "").translate(QUOTES).casefold()
    return re.sub(r"\s+", " ", title).strip(" \"'.:")


def snippet_score(text: str | None, with_: list[str], without: list[str]) -> tuple[int, int]:
    """(hits, checks): present `with_` snippets and absent `without` snippets."""
    flat = re.sub(r"\s+", " ", text or "")
    hits = sum(1 for s in with_ if re.sub(r"\s+", " ", s).strip() in flat)
    hits += sum(1 for s in without if re.sub(r"\s+", " ", s).strip() not in flat)
    return hits, len(with_) + len(without)


def run_project(body: bytes, url: str | None, fetched_at: datetime) -> dict:
    result = extract(body, url, fetched_at=fetched_at)
    return {"text": result.text, "title": result.title, "date": result.published}


def run_plain(body: bytes, url: str | None, fetched_at: datetime) -> dict:
    doc = trafilatura.bare_extraction(body, url=url, with_metadata=True)
    if doc is None:
        return {"text": "", "title": None, "date": None}
    return {"text": doc.text or "", "title": doc.title, "date": doc.date}


EXTRACTORS = {"project": run_project, "trafilatura": run_plain}


class Tally:
    """Running sums for one (split, extractor) cell."""

    def __init__(self) -> None:
        self.f1 = []
        self.snip = [0, 0]
        self.title = []
        self.date = []
        self.ms = []

    def add(self, page: dict, out: dict, ms: float) -> None:
        if page.get("gold_text"):
            self.f1.append(token_f1(out["text"], page["gold_text"]))
        hits, checks = snippet_score(out["text"], page.get("gold_with") or [], page.get("gold_without") or [])
        self.snip[0] += hits
        self.snip[1] += checks
        if page.get("gold_title"):
            self.title.append(norm_title(out["title"]) == norm_title(page["gold_title"]))
        if page.get("gold_date"):
            self.date.append(out["date"] == page["gold_date"])
        self.ms.append(ms)

    @staticmethod
    def _mean(values: list) -> str:
        return f"{sum(values) / len(values):.3f} ({len(values)})" if values else "-"

    def row(self) -> list[str]:
        snip = f"{self.snip[0] / self.snip[1]:.3f} ({self.snip[1]})" if self.snip[1] else "-"
        ms = f"{sum(self.ms) / len(self.ms):.1f}" if self.ms else "-"
        return [self._mean(self.f1), snip, self._mean(self.title), self._mean(self.date), ms]


def splits_of(page: dict) -> list[str]:
    lang = page.get("lang") if page.get("lang") in ("en", "zh") else "other"
    return ["all", "gov" if page.get("gov") else "non-gov", f"lang={lang}"]


def load_pages(manifest: Path, limit: int | None) -> list[dict]:
    with manifest.open(encoding="utf-8") as handle:
        pages = [json.loads(line) for line in handle if line.strip()]
    return pages[:limit] if limit else pages


def run(manifest: Path, limit: int | None, verbose: bool) -> dict:
    fetched_at = datetime.now(timezone.utc)
    table: dict = defaultdict(Tally)
    for page in load_pages(manifest, limit):
        body = gzip.decompress((manifest.parent / page["file"]).read_bytes())
        for name, runner in EXTRACTORS.items():
            start = time.perf_counter()
            out = runner(body, page.get("url"), fetched_at)
            ms = (time.perf_counter() - start) * 1000
            for split in splits_of(page):
                table[(split, name)].add(page, out, ms)
            if verbose and name == "project":
                report_page(page, out)
    return table


def report_page(page: dict, out: dict) -> None:
    """One line per miss, for iterating on quality (--verbose)."""
    problems = []
    if page.get("gold_date") and out["date"] != page["gold_date"]:
        problems.append(f"date {out['date']} != {page['gold_date']}")
    if page.get("gold_title") and norm_title(out["title"]) != norm_title(page["gold_title"]):
        problems.append(f"title {out['title']!r} != {page['gold_title']!r}")
    if page.get("gold_text"):
        f1 = token_f1(out["text"], page["gold_text"])
        if f1 < 0.9:
            problems.append(f"f1 {f1:.2f}")
    hits, checks = snippet_score(out["text"], page.get("gold_with") or [], page.get("gold_without") or [])
    if hits < checks:
        problems.append(f"snippets {hits}/{checks}")
    if problems:
        print(f"  {page['id']}: " + "; ".join(problems), file=sys.stderr)


def print_table(table: dict) -> None:
    header = ["split", "extractor", "F1 (n)", "snippets (n)", "title (n)", "date (n)", "ms/page"]
    order = ["all", "gov", "non-gov", "lang=en", "lang=zh", "lang=other"]
    rows = [header]
    for split in order:
        for name in EXTRACTORS:
            if (split, name) in table:
                rows.append([split, name, *table[(split, name)].row()])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest", nargs="?", default=os.environ.get("PRESSARCHIVE_CORPUS", str(DEFAULT_MANIFEST)))
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages")
    parser.add_argument("--verbose", action="store_true", help="print the project's misses to stderr")
    args = parser.parse_args(argv)
    manifest = Path(args.manifest)
    if not manifest.is_file():
        print(f"benchmark: no manifest at {manifest}; pass its path or set PRESSARCHIVE_CORPUS", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.CRITICAL)
    print_table(run(manifest, args.limit, args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())

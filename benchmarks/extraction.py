"""Extraction benchmark: the project's ``extract()`` against plain trafilatura, per split.

Run by hand from the repository root::

    python benchmarks/extraction.py [MANIFEST ...] [--jobs 2] [--limit N] [--without HEURISTIC]
                                    [--json-dir DIR] [--verbose]

MANIFEST defaults to ``$PRESSARCHIVE_CORPUS`` or, when it is not set, both development
corpora: ``../shared/corpus/manifest.jsonl`` (tuned on) and ``../shared/corpus-wide/manifest.jsonl``
(not tuned on, page by page; format in each directory's SOURCES.md; pages are gzip files next to
the manifest, never copied into this repository). Scores come from the shared scorer,
``../shared/tools/score_extraction.py`` (``score_page`` and ``aggregate``), so that the figures
are the ones ``score_extraction.py --cmd`` gives, without one process per page:

- ``F1``: text F1 as that scorer computes it (bag of tokens, each CJK character a token;
  mean precision over pages with text, mean recall, F1 of the two); ``F1pp``: mean per-page F1;
- ``loss``: silent losses, pages where the extractor keeps less than 30% of the gold text
  while the other keeps at least 70% (``../shared/tools/silent_losses.py``; for plain
  trafilatura the count is the other way round);
- ``snip``: ``gold_with`` snippets present plus ``gold_without`` snippets absent;
- ``title`` / ``date``: exact match after the scorer's normalisation;
- ``ms``: mean milliseconds per page; ``cost``: the project's time over trafilatura's on the
  same pages. Both extractors run back to back on each page in the same worker process, so
  that load from other programs weighs on both alike.

Splits: ``all``, ``dataset=``, ``gov`` / ``non-gov``, ``lang=`` (en, zh, other), and for
pages whose ``notes`` name one, ``type=`` (WCXB page types). ``half=held-out`` / ``half=tuning``
split every corpus in two by a fixed hash of the page id (SHA-256, even / odd): extraction
changes were inspected page by page on ``corpus`` and on the tuning half of ``corpus-wide``.
A last block checks the goals of issue 20 (every split >= trafilatura; government and Chinese
pages >= 0.95 and >= trafilatura + 0.03; no silent loss; cost <= 1.3x).

``--without`` switches one heuristic off (see :data:`HEURISTICS`) to measure what it earns;
``--json-dir`` writes per-page results in ``score_extraction.py --json`` form
(``<corpus>-project.json``, ``<corpus>-trafilatura.json``), which ``silent_losses.py`` reads.
Plain trafilatura is ``bare_extraction(bytes, url=url, with_metadata=True)``, as in the scorer's
``--baseline``. ``fetched_at`` is "now", after every gold date.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafilatura

from pipelines import extraction

SHARED = ROOT.parent / "shared"
DEFAULT_MANIFESTS = (SHARED / "corpus" / "manifest.jsonl", SHARED / "corpus-wide" / "manifest.jsonl")
EXTRACTORS = ("project", "trafilatura")
LOSS_RECALL, KEPT_RECALL = 0.3, 0.7  # silent_losses.py
GOAL_MIN_F1, GOAL_MARGIN, GOAL_COST = 0.95, 0.03, 1.3


def _identity(value, *_):
    return value


# Heuristics of pipelines.extraction that --without switches off, and how: (the module that
# calls the step, the step's name there, what replaces it).
HEURISTICS = {
    "family": ("body", "site_family_containers", lambda tree: None),
    "recall-merge": ("body", "merge_recall", _identity),
    "gaps": ("body", "fill_dom_gaps", lambda tree, text: text),
    "boilerplate": ("body", "drop_boilerplate_lines", lambda text: extraction.normalise_text(text)),
    "loss-guard": ("body", "guard_against_loss", _identity),
    "headline": ("__init__", "drop_repeated_headline", _identity),
}

scorer = None  # ../shared/tools/score_extraction.py, loaded in each process


def load_scorer(path: Path):
    spec = importlib.util.spec_from_file_location("score_extraction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_worker(scorer_path: str, without: list[str]) -> None:
    global scorer
    scorer = load_scorer(Path(scorer_path))
    logging.disable(logging.CRITICAL)
    for name in without:
        module, attribute, replacement = HEURISTICS[name]
        setattr(extraction if module == "__init__" else importlib.import_module(f"pipelines.extraction.{module}"),
                attribute, replacement)
    for runner in RUNNERS.values():  # lazy imports and caches load before any page is timed
        runner(WARM_UP_PAGE, "https://example.org/news/2020/01/02/statement", datetime.now(timezone.utc))


def run_project(body: bytes, url: str | None, fetched_at: datetime) -> dict:
    result = extraction.extract(body, url, fetched_at=fetched_at)
    return {"text": result.text, "title": result.title, "published": result.published,
            "path": (getattr(result, "extractor", None) or "").rpartition("text=")[2]}


def run_plain(body: bytes, url: str | None, fetched_at: datetime) -> dict:
    doc = trafilatura.bare_extraction(body, url=url, with_metadata=True)
    if doc is None:
        return {"text": "", "title": None, "published": None}
    return {"text": doc.text or "", "title": doc.title, "published": doc.date}


RUNNERS = {"project": run_project, "trafilatura": run_plain}
WARM_UP_PAGE = ("<html lang='en'><head><title>Statement | Ministry</title></head><body><h1>Statement</h1>"
                "<div class='content'><p>" + "The minister met her counterpart on 2 January 2020 in the capital. " * 12
                + "</p><p>Both sides agreed to meet again next year.</p></div></body></html>").encode()


def score_one(task: tuple) -> dict:
    """Both extractors on one page: scores, time, the project's text path."""
    page, folder, fetched_at = task
    body = gzip.decompress((Path(folder) / page["file"]).read_bytes())
    row = {"id": page["id"], "splits": splits_of(page)}
    order = EXTRACTORS if len(row["id"]) % 2 else EXTRACTORS[::-1]  # neither always runs on a cold cache
    for name in order:
        runner = RUNNERS[name]
        start = time.perf_counter()
        out = runner(body, page.get("url"), fetched_at)
        seconds = time.perf_counter() - start
        scored = scorer.score_page(page, out)
        scored.update(status="ok", seconds=seconds, path=out.get("path"), pred_title=out["title"],
                      pred_published=out["published"], pred_text_chars=len(out["text"]))
        row[name] = scored
    return row


def half_of(page_id: str) -> str:
    return "held-out" if int(hashlib.sha256(page_id.encode()).hexdigest(), 16) % 2 == 0 else "tuning"


def splits_of(page: dict) -> list[str]:
    lang = page.get("lang") if page.get("lang") in ("en", "zh") else "other"
    splits = ["all", f"dataset={page.get('dataset')}", "gov" if page.get("gov") else "non-gov", f"lang={lang}"]
    for note in (page.get("notes") or "").split(";"):
        if note.strip().startswith("page_type="):
            splits.append("type=" + note.strip().split("=", 1)[1])
    return splits + [f"half={half_of(page['id'])}"]


def load_pages(manifest: Path, limit: int | None) -> list[dict]:
    with manifest.open(encoding="utf-8") as handle:
        pages = [json.loads(line) for line in handle if line.strip()]
    return pages[:limit] if limit else pages


def run_corpus(manifest: Path, limit: int | None, jobs: int, scorer_path: Path, without: list[str]) -> list[dict]:
    fetched_at = datetime.now(timezone.utc)
    tasks = [(page, str(manifest.parent), fetched_at) for page in load_pages(manifest, limit)]
    if jobs <= 1:
        start_worker(str(scorer_path), without)
        return [score_one(task) for task in tasks]
    with ProcessPoolExecutor(jobs, initializer=start_worker, initargs=(str(scorer_path), without)) as pool:
        return list(pool.map(score_one, tasks, chunksize=4))


def is_loss(lost: dict, kept: dict) -> bool:
    return (lost.get("recall") is not None and kept.get("recall") is not None
            and lost["recall"] < LOSS_RECALL and kept["recall"] >= KEPT_RECALL)


def summarise(rows: list[dict]) -> dict:
    """{split: {extractor: aggregate + losses + ms}}, splits in first-seen order."""
    grouped: dict = defaultdict(list)
    for row in rows:
        for split in row["splits"]:
            grouped[split].append(row)
    summary = {}
    for split, members in grouped.items():
        cell = {}
        for name in EXTRACTORS:
            other = EXTRACTORS[1 - EXTRACTORS.index(name)]
            cell[name] = scorer.aggregate([row[name] for row in members])
            cell[name]["losses"] = sum(is_loss(row[name], row[other]) for row in members)
            cell[name]["ms"] = 1000 * sum(row[name]["seconds"] for row in members) / len(members)
        summary[split] = cell
    return summary


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def split_order(split: str) -> tuple:
    prefixes = ("all", "dataset=", "gov", "non-gov", "lang=", "type=", "half=")
    return next(i for i, prefix in enumerate(prefixes) if split.startswith(prefix)), split


def print_table(title: str, summary: dict) -> None:
    header = ["split", "pages", "F1 project", "F1 traf.", "F1pp proj.", "F1pp traf.", "loss", "snip proj.",
              "snip traf.", "title proj.", "title traf.", "date proj.", "date traf.", "ms proj.", "ms traf.", "cost"]
    rows = [header]
    for split in sorted(summary, key=split_order):
        p, t = summary[split]["project"], summary[split]["trafilatura"]
        rows.append([split, str(p["pages"]), _fmt(p["f1"]), _fmt(t["f1"]), _fmt(p["f1_per_page"]),
                     _fmt(t["f1_per_page"]), f"{p['losses']}/{t['losses']}", _fmt(p["snippet_acc"]),
                     _fmt(t["snippet_acc"]), _fmt(p["title_acc"]), _fmt(t["title_acc"]), _fmt(p["date_acc"]),
                     _fmt(t["date_acc"]), f"{p['ms']:.0f}", f"{t['ms']:.0f}", f"{p['ms'] / t['ms']:.2f}x"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\n## {title}  (loss: project lost the text trafilatura kept / the other way round)")
    for index, row in enumerate(rows):
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


def goal_lines(name: str, summary: dict) -> list[tuple[bool, str]]:
    """(met, description) for each goal of issue 20 on one corpus."""
    lines = []
    for split in sorted(summary, key=split_order):
        p, t = summary[split]["project"], summary[split]["trafilatura"]
        if p["f1"] is None or t["f1"] is None:
            continue
        lines.append((p["f1"] >= t["f1"], f"{name} {split}: F1 {p['f1']:.4f} >= trafilatura {t['f1']:.4f}"))
        if split in ("gov", "lang=zh"):
            floor = max(GOAL_MIN_F1, t["f1"] + GOAL_MARGIN)
            label = f"{name} {split}: F1 {p['f1']:.4f} >= {floor:.4f} (0.95 and trafilatura + 0.03)"
            lines.append((p["f1"] >= floor, label))
    everything = summary["all"]["project"]
    lines.append((everything["losses"] == 0, f"{name}: {everything['losses']} silent losses (goal 0)"))
    cost = everything["ms"] / summary["all"]["trafilatura"]["ms"]
    lines.append((cost <= GOAL_COST, f"{name}: cost {cost:.2f}x trafilatura (goal <= {GOAL_COST}x)"))
    return lines


def write_json(folder: Path, name: str, rows: list[dict]) -> None:
    """Per-page rows in score_extraction.py --json form, one file per extractor."""
    folder.mkdir(parents=True, exist_ok=True)
    for extractor in EXTRACTORS:
        pages = [{"id": row["id"], "dataset": next(s for s in row["splits"] if s.startswith("dataset="))[8:],
                  **row[extractor]} for row in rows]
        path = folder / f"{name}-{extractor}.json"
        path.write_text(json.dumps({"extractor": extractor, "pages": pages}, ensure_ascii=False), encoding="utf-8")
        print(f"per-page results: {path}")


def report_misses(rows: list[dict]) -> None:
    """--verbose: the project's worst pages and its text paths."""
    paths = defaultdict(int)
    for row in rows:
        paths[row["project"]["path"]] += 1
        f1, plain = row["project"].get("f1"), row["trafilatura"].get("f1")
        if f1 is not None and f1 < plain - 0.1:
            print(f"  {row['id']}: F1 {f1:.2f} vs trafilatura {plain:.2f} ({row['project']['path']})", file=sys.stderr)
    print("text paths: " + ", ".join(f"{path} {count}" for path, count in sorted(paths.items())), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifests", nargs="*", type=Path, help="manifest.jsonl files (default: both corpora)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages of each corpus")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--without", action="append", default=[], choices=sorted(HEURISTICS),
                        help="switch a heuristic off (repeatable), for the ablation")
    parser.add_argument("--json-dir", type=Path, help="write per-page results here")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared folder holding tools/ (default ../shared)")
    parser.add_argument("--verbose", action="store_true", help="print the project's misses to stderr")
    args = parser.parse_args(argv)
    scorer_path = args.shared / "tools" / "score_extraction.py"
    if not scorer_path.is_file():
        print(f"benchmark: no scorer at {scorer_path}; pass --shared", file=sys.stderr)
        return 2
    default = [Path(os.environ["PRESSARCHIVE_CORPUS"])] if os.environ.get("PRESSARCHIVE_CORPUS") else DEFAULT_MANIFESTS
    manifests = args.manifests or list(default)
    for manifest in manifests:
        if not manifest.is_file():
            print(f"benchmark: no manifest at {manifest}; pass its path or set PRESSARCHIVE_CORPUS", file=sys.stderr)
            return 2
    start_worker(str(scorer_path), [])
    print(f"extractor: {extraction.EXTRACTOR_VERSION}" + (f", without {', '.join(args.without)}" if args.without else ""))
    goals = []
    for manifest in manifests:
        name = manifest.parent.name
        rows = run_corpus(manifest, args.limit, args.jobs, scorer_path, args.without)
        summary = summarise(rows)
        print_table(f"{name} ({len(rows)} pages)", summary)
        goals += goal_lines(name, summary)
        if args.json_dir:
            write_json(args.json_dir, name, rows)
        if args.verbose:
            report_misses(rows)
    print("\n## goals (issue 20)")
    for met, line in goals:
        print(f"{'ok  ' if met else 'MISS'} {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

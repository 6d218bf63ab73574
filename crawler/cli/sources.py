"""``pressarchive sources`` (list and validate a registry) and ``sources check`` (try it live)."""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

import click

from archive.files import db_problem, read_only_connection
from crawler.cli.options import (
    EXIT_SOURCE_FAILED,
    check_db,
    chosen_sources,
    contact_option,
    db_option,
    fail,
    load_registry,
    sources_option,
)
from crawler.settings import ARCHIVE_DB
from crawler.sources import bundled_catalogue


@click.group("sources", invoke_without_command=True)
@sources_option
@click.option("--json", "as_json", is_flag=True, help="Print the validated registry as JSON lines.")
@click.pass_context
def sources_command(ctx, sources_file, as_json):
    """List and validate the source registry (`sources check` tries the sources live)."""
    if ctx.invoked_subcommand:
        return
    from collections import Counter

    from crawler.sources import VERIFIED

    registry = load_registry(sources_file)
    for source in registry:
        if as_json:
            click.echo(json.dumps(source_json(source), ensure_ascii=False))
        else:
            state = "" if source.enabled else "  [disabled]"
            click.echo(
                f"{source.id:<28} {source.kind:<18} {source.country:<4} {','.join(source.languages):<6} "
                f"{source.verified:<10} {source.name}{state}"
            )
    if not as_json:
        counts = Counter(source.verified for source in registry)
        evidence = ", ".join(f"{counts[level]} {level}" for level in VERIFIED if counts[level])
        click.echo(f"{len(registry)} sources OK: {evidence} ({sources_file or bundled_catalogue()})", err=True)


def source_json(source) -> dict:
    """A registry entry as JSON: lists and tables as JSON values (``Source.as_row`` encodes them
    as strings for SQLite columns), ``enabled`` last."""
    row = asdict(source)
    row["enabled"] = row.pop("enabled")
    return row


@sources_command.command("check")
@click.argument("source_ids", nargs=-1)
@sources_option
@contact_option
@db_option(help="Archive whose release dates give each source's usual rhythm, read only "
                "(default: ./archive.db when there is one).", default=None)
def sources_check(source_ids, sources_file, contact, db_path):
    """Fetch each source's discovery endpoints for real and fetch one sample release.

    SOURCE_IDS: the sources to check (default: every enabled source). Reports per
    source: reachable, releases discovered, newest date, and the sample's title, date
    and text length. Exit code 1 when a source looks
    broken (unreachable, nothing discovered, or a sample without text) or
    drifts (links that no longer match article_pattern, shown with a few of
    them; or, with an archive, no release for much longer than the source's
    usual rhythm): run it weekly to learn that a government redesigned its
    site. Nothing is written to your archive.
    """
    import tempfile

    from archive.health import overdue
    from archive.runs import sample_release
    from crawler.runner import build_settings, run_crawl

    selected = chosen_sources(sources_file, source_ids)
    archive = rhythm_archive(db_path)
    with tempfile.TemporaryDirectory() as tmp:
        check_db_path = Path(tmp) / "check.db"  # the sample releases: never the user's archive
        settings = build_settings(check_db_path, contact=contact, log_level="ERROR",
                                  overrides={"PRESSARCHIVE_CHECK": True, "WARC_ENABLED": False})
        runs = {row["source_id"]: row for row in run_crawl(selected, settings)}
        broken = 0
        for source in selected:
            run = runs.get(source.id)
            sample = sample_release(check_db_path, source.id)
            late = overdue(archive, source.id, [(run or {}).get("newest_seen"), (sample or {}).get("published")])
            problem = _check_problem(run, sample, late)
            broken += bool(problem)
            discovered = run["discovered"] if run else 0
            newest = (run or {}).get("newest_seen") or (sample or {}).get("published") or "-"
            line = f"{source.id:<28} {'BROKEN' if problem else 'OK':<7} {discovered:>5} discovered, newest {newest}"
            if sample:
                length = len(sample["text"] or "")
                line += f"; sample: {sample['title']!r} ({sample['published'] or 'no date'}, {length:,} chars)"
            click.echo(line)
            for text in (problem or "").splitlines():
                click.echo(f"{'':<28} {text}")
    if archive is not None:
        archive.close()
    click.echo(f"{len(selected)} sources checked, {broken} broken", err=True)
    sys.exit(EXIT_SOURCE_FAILED if broken else 0)


def _check_problem(run, sample, late=None) -> str | None:
    """Why a checked source looks broken or drifting (lines), or None. ``late``: the rhythm
    verdict of archive.health.overdue."""
    from archive.health import link_drift_lines

    if run is None:
        return "not crawled"
    if run["status"] == "failed":
        return run["message"] or "no discovery endpoint answered"
    drift = link_drift_lines(run.get("drift"), run.get("unmatched_sample"))
    if not run["discovered"]:
        if drift:
            return "\n".join([f"reachable, but no release links found: {drift[0]}", *drift[1:]])
        return "reachable, but no release links found (layout or URL scheme changed? check article_pattern)"
    if drift:
        return "\n".join(drift)
    if sample is None:
        return run["message"] or "the sample release could not be fetched or had no text"
    if not sample["text"] and sample["text_status"] in (None, "text"):
        return "the sample release has no text"
    return late


def rhythm_archive(db_path: Path | None) -> sqlite3.Connection | None:
    """The archive ``sources check`` takes the sources' rhythm from, opened read-only: ``--db``
    (exit 2 when it is not a usable archive), else ./archive.db when there is one, else None."""
    if db_path is not None:
        check_db(db_path, write=False)
    else:
        db_path = Path(ARCHIVE_DB)
        if not db_path.is_file() or db_problem(db_path, write=False, create=False):
            return None
    try:
        return read_only_connection(db_path)
    except sqlite3.Error as exc:
        fail(f"cannot read --db {db_path}: {exc}")

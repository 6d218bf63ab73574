"""The ``pressarchive`` command line: crawl, list sources, extract one page, run the demo.

Every user error (bad registry, unknown source, missing file) ends in one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from crawler import __version__
from crawler.sources import SourceError, bundled_catalogue, load_sources, select_sources

EXIT_SOURCE_FAILED = 1  # a source failed, or the crawl was interrupted
EXIT_USAGE = 2  # bad options, registry or files
EXIT_LOCKED = 3  # another crawl holds the archive

db_option = click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("archive.db"),
    show_default=True, help="SQLite archive file (created if missing).",
)
sources_option = click.option(
    "--sources", "sources_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Source registry (TOML). Default: the bundled catalogue.",
)


def fail(message: str, code: int = 2):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def load_registry(sources_file):
    try:
        return load_sources(sources_file)
    except SourceError as exc:
        fail(str(exc))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pressarchive")
def cli():
    """Crawl official statements (press releases, readouts, embassy statements) into a
    searchable SQLite archive, serve it with Datasette and export snapshots."""


@cli.command()
@click.argument("source_ids", nargs=-1)
@sources_option
@db_option
@click.option("--contact", metavar="URL", envvar="PRESSARCHIVE_CONTACT",
              help="Contact URL or mailto: put in the User-Agent [env PRESSARCHIVE_CONTACT].")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO",
              show_default=True, help="How much the crawl logs.")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the log to this file.")
@click.option("--backfill", is_flag=True,
              help="Walk every listing page (up to max_pages), not only up to the first page of known releases.")
@click.option("--no-warc", is_flag=True, help="Do not write the raw capture (WARC files under warc/ next to the archive).")
@click.option("--redis", "redis_url", metavar="URL",
              help="Run as a distributed worker sharing the frontier in this Redis; items go to `pressarchive ingest`.")
@click.option("--seed", is_flag=True, help="With --redis: start a new frontier with the sources' start requests.")
@click.option("--idle-exit", type=float, default=30, show_default=True,
              help="With --redis: stop after the shared queue has been empty this many seconds (0: never).")
def crawl(source_ids, sources_file, db_path, contact, log_level, log_file, backfill, no_warc, redis_url, seed,
          idle_exit):
    """Crawl SOURCE_IDS (default: every enabled source) into the archive.

    Incremental: only new or changed feed/sitemap entries, listings until a
    page of known releases, conditional GET, and rechecks of known releases
    on a decaying schedule (edits and removals are recorded, never deleted).

    Exit codes: 0 every source reached; 1 a source failed or the crawl was
    interrupted (SIGINT/SIGTERM finish what is in flight first); 2 usage or
    registry error; 3 another crawl is writing the same archive.
    """
    registry = load_registry(sources_file)
    try:
        selected = select_sources(registry, source_ids, str(sources_file or bundled_catalogue()))
    except SourceError as exc:
        fail(str(exc))
    overrides = {"PRESSARCHIVE_BACKFILL": backfill, "WARC_ENABLED": not no_warc}
    if seed and not redis_url:
        fail("--seed needs --redis URL")
    if redis_url:
        from crawler.distributed import redis_overrides

        overrides.update(redis_overrides(redis_url, seed, idle_exit))
    code = crawl_sources(selected, db_path, contact=contact, log_level=log_level, log_file=log_file,
                         overrides=overrides, lock=not redis_url)
    sys.exit(code)


def crawl_sources(selected, db_path, lock=True, **options) -> int:
    from contextlib import nullcontext

    from crawler.lock import ArchiveLocked, archive_lock
    from crawler.runner import build_settings, run_crawl  # Scrapy import is slow: only when crawling

    if db_path.parent and not db_path.parent.exists():
        fail(f"folder of --db does not exist: {db_path.parent}")
    settings = build_settings(db_path, **options)
    try:
        # A distributed worker does not write the archive (the ingester does): no lock.
        with archive_lock(db_path) if lock else nullcontext():
            rows = run_crawl(selected, settings)
    except ArchiveLocked as exc:
        fail(str(exc), EXIT_LOCKED)
    if settings.getbool("PRESSARCHIVE_DISTRIBUTED"):
        click.echo(f"worker {settings.get('PRESSARCHIVE_WORKER_ID')} done; items are in Redis for `pressarchive ingest`")
        return 0
    failed = [r for r in rows if r["status"] in ("failed", "interrupted")]
    for row in rows:
        click.echo(
            f"{row['source_id']}: {row['status']} ({row['new']} new, {row['changed']} changed, "
            f"{row['unchanged']} unchanged, {row['removed']} removed, {row['errors']} errors, "
            f"{row['requests']} requests)"
        )
    click.echo(f"Archive: {db_path}")
    return EXIT_SOURCE_FAILED if failed or not rows else 0


@cli.group("sources", invoke_without_command=True)
@sources_option
@click.option("--json", "as_json", is_flag=True, help="Print the validated registry as JSON lines.")
@click.pass_context
def sources_command(ctx, sources_file, as_json):
    """List and validate the source registry (`sources check` tries the sources live)."""
    if ctx.invoked_subcommand:
        return
    registry = load_registry(sources_file)
    for source in registry:
        if as_json:
            click.echo(json.dumps(source.as_row() | {"enabled": source.enabled}, ensure_ascii=False))
        else:
            state = "" if source.enabled else "  [disabled]"
            click.echo(
                f"{source.id:<28} {source.kind:<18} {source.country:<4} {','.join(source.languages):<6} {source.name}{state}"
            )
    if not as_json:
        click.echo(f"{len(registry)} sources OK ({sources_file or bundled_catalogue()})", err=True)


@sources_command.command("check")
@click.argument("source_ids", nargs=-1)
@sources_option
@click.option("--contact", metavar="URL", envvar="PRESSARCHIVE_CONTACT", help="Contact URL for the User-Agent.")
def sources_check(source_ids, sources_file, contact):
    """Fetch each source's discovery endpoints for real and fetch one sample release.

    Reports per source: reachable, releases discovered, newest date, and the
    sample's title, date and text length. Exit code 1 when a source looks
    broken (unreachable, nothing discovered, or a sample without text): run it
    weekly to learn that a government redesigned its site. Nothing is written
    to your archive.
    """
    import tempfile

    from crawler.runner import build_settings, run_crawl

    registry = load_registry(sources_file)
    try:
        selected = select_sources(registry, source_ids, str(sources_file or bundled_catalogue()))
    except SourceError as exc:
        fail(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "check.db"
        settings = build_settings(db_path, contact=contact, log_level="ERROR",
                                  overrides={"PRESSARCHIVE_CHECK": True, "WARC_ENABLED": False})
        runs = {row["source_id"]: row for row in run_crawl(selected, settings)}
        broken = 0
        import sqlite_utils

        db = sqlite_utils.Database(db_path) if db_path.exists() else None
        for source in selected:
            run = runs.get(source.id)
            sample = None
            if db is not None:
                sample = next(db.query("select title, published, text, text_status from releases "
                                       "where source_id = ? order by id limit 1", [source.id]), None)
            problem = _check_problem(run, sample)
            broken += bool(problem)
            discovered = run["discovered"] if run else 0
            newest = (run or {}).get("newest_seen") or (sample or {}).get("published") or "-"
            line = f"{source.id:<28} {'BROKEN' if problem else 'OK':<7} {discovered:>5} discovered, newest {newest}"
            if sample:
                length = len(sample["text"] or "")
                line += f"; sample: {sample['title']!r} ({sample['published'] or 'no date'}, {length:,} chars)"
            click.echo(line)
            if problem:
                click.echo(f"{'':<28} {problem}")
        if db is not None:
            db.close()
    click.echo(f"{len(selected)} sources checked, {broken} broken", err=True)
    sys.exit(EXIT_SOURCE_FAILED if broken else 0)


def _check_problem(run, sample) -> str | None:
    if run is None:
        return "not crawled"
    if run["status"] == "failed":
        return run["message"] or "no discovery endpoint answered"
    if not run["discovered"]:
        return "reachable, but no release links found (layout or URL scheme changed? check article_pattern)"
    if sample is None:
        return run["message"] or "the sample release could not be fetched or had no text"
    if not sample["text"] and sample["text_status"] in (None, "text"):
        return "the sample release has no text"
    return None


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", help="The page's original URL (helps dates and links).")
@click.option("--charset", help="Charset the server declared in Content-Type, if any.")
def extract(file, url, charset):
    """Print title, text, date and language extracted from a saved page, as JSON."""
    from pipelines import extraction

    result = extraction.extract(file.read_bytes(), url, http_charset=charset)
    data = {k: v for k, v in result.as_dict().items()}
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@cli.command()
@db_option
@click.option("--serve/--no-serve", default=False, help="Start Datasette on the result afterwards.")
def demo(db_path, serve):
    """Crawl the built-in demo sites (served on 127.0.0.1) into the archive; offline."""
    from crawler.demo import run_demo

    code = run_demo(db_path, crawl_sources)
    click.echo(
        "\nLook at the result:\n"
        f"  pressarchive serve --db {db_path}      then open http://127.0.0.1:8001/{db_path.stem}/releases\n"
        f"  search: http://127.0.0.1:8001/{db_path.stem}/releases?_search=cyber-enabled+theft\n"
        f"  pressarchive export --db {db_path}     CSV snapshot in ./exports/"
    )
    if serve and code == 0:
        from crawler.serve import serve_command

        serve_command.main(["--db", str(db_path)], standalone_mode=True)
    sys.exit(code)


def _register_optional_commands():
    # Commands whose modules are optional at import time stay out of the way of the others.
    from crawler.export import export_command
    from crawler.health import status_command
    from crawler.ingest import ingest_command
    from crawler.reextract import reextract_command
    from crawler.serve import serve_command

    cli.add_command(serve_command)
    cli.add_command(export_command)
    cli.add_command(status_command)
    cli.add_command(reextract_command)
    cli.add_command(ingest_command)


_register_optional_commands()


def main():
    cli(prog_name="pressarchive")


if __name__ == "__main__":
    main()

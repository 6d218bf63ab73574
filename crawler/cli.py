"""The ``pressarchive`` command line: crawl, list sources, extract one page, run the demo.

Every user error (bad registry, unknown source, missing file, an unusable
``--db``) ends in one line on stderr and exit code 2, never a traceback.
:func:`check_db` is the one place every command that takes ``--db`` checks it,
before anything opens the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import click

from crawler import __version__
from crawler.sources import SourceError, bundled_catalogue, load_sources, select_sources

EXIT_SOURCE_FAILED = 1  # a source failed, or the crawl was interrupted
EXIT_USAGE = 2  # bad options, registry or files
EXIT_LOCKED = 3  # another crawl holds the archive

# ``--db``'s type: no ``dir_okay=False`` (click's own error is four lines): check_db says it in one.
db_option = click.option(
    "--db", "db_path", type=click.Path(path_type=Path), default=Path("archive.db"),
    show_default=True, help="SQLite archive file (created if missing).",
)
sources_option = click.option(
    "--sources", "sources_file", type=click.Path(path_type=Path), default=None,
    help="Source registry (TOML). Default: the bundled catalogue.",
)

SQLITE_HEADER = b"SQLite format 3\x00"
# Tables that make a SQLite file a pressarchive archive (any one: an archive being created).
ARCHIVE_TABLES = {"releases", "sources", "crawl_runs", "_pressarchive"}
SQLITE_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def fail(message: str, code: int = 2):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def check_db(db_path, *, write: bool, create: bool = False) -> Path:
    """Stop with one line on stderr and exit 2 when ``--db`` cannot be the archive a command needs.

    ``write``: the command writes the archive (``crawl``, ``demo``, ``reextract``,
    ``ingest``); ``create``: a missing file is made into a new archive (``crawl``,
    ``demo``, ``ingest``), else it must exist (``status``, ``export``,
    ``reextract``, ``serve``). Runs before anything opens the file, and reads at
    most its first 16 bytes and its table names, so a wrong ``--db`` (another
    program's file, a folder, something under ``/proc``) is never changed.
    """
    path = Path(db_path)
    problem = db_problem(path, write=write, create=create)
    if problem:
        fail(problem)
    return path


def db_problem(path: Path, *, write: bool, create: bool) -> str | None:
    """Why ``path`` cannot be the archive (see :func:`check_db`), or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return _missing_db_problem(path, create)
    except OSError as exc:  # a path through a file (ENOTDIR), a folder we may not enter
        return f"--db {path}: {exc.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return f"--db {path} is a folder; give the archive's file (e.g. {path / 'archive.db'})"
    if not stat.S_ISREG(info.st_mode):
        return f"--db {path} is not a regular file (a device, pipe or socket), so not an archive"
    problem = _content_problem(path, create)
    if problem or not write:
        return problem
    return _write_problem(path)


def _missing_db_problem(path: Path, create: bool) -> str | None:
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return f"the folder of --db {path} {what}: {folder}"
    if not create:
        return f"archive not found: {path} (run `pressarchive crawl --db {path}` first, or pass --db PATH)"
    try:  # really create a file there: permissions, read-only mounts and /proc all answer
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot create --db {path}: no new file can be made in {folder} ({exc.strerror})"
    return None


def _content_problem(path: Path, create: bool) -> str | None:
    """The file must be a SQLite database holding an archive (or empty, for a new one)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read --db {path}: {exc.strerror}"
    if not header:  # SQLite makes an empty file into a new database
        return None if create else f"--db {path} is an empty file, not an archive"
    if header != SQLITE_HEADER:
        return f"--db {path} is not a SQLite database, so not an archive (left untouched)"
    try:
        conn = read_only_connection(path)
        try:
            tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"cannot read --db {path} as SQLite: {exc}"
    if tables and not tables & ARCHIVE_TABLES:
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        return f"--db {path} is a SQLite database of something else (tables {shown}), not an archive (left untouched)"
    if not tables and not create:
        return f"--db {path} is an empty SQLite database, not an archive"
    return None


def read_only_connection(path: Path, **options) -> sqlite3.Connection:
    """A read-only connection to the archive ``path``, also on read-only media.

    SQLite reads a WAL-mode file through a ``-shm`` file it creates beside it,
    so ``mode=ro`` fails in a folder nobody may write (a read-only mount, a
    backup copy). No writer can be at work there either, so the file is then
    opened ``immutable`` (unless a ``-wal`` holds commits not yet in the file).
    """
    uri = Path(path).resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
    try:
        conn.execute("select 1 from sqlite_master limit 1")  # the file is opened lazily: open it now
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(Path(path).parent, os.W_OK) or Path(f"{path}-wal").exists():
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, **options)


def _write_problem(path: Path) -> str | None:
    """Permissions first (what a user can fix), then SQLite's own answer to a write lock."""
    folder = path.parent
    for needed in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if needed.exists() and not os.access(needed, os.W_OK):
            return f"--db {needed} is read-only: this command writes the archive (check its permissions)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (f"the folder of --db {path} is not writable: SQLite keeps {path.name}-wal and "
                f"{path.name}-shm beside the archive ({folder})")
    try:
        conn = sqlite3.connect(str(path), timeout=0, isolation_level=None)
        try:
            conn.execute("begin immediate")  # asks for the write lock; writes nothing
            conn.execute("rollback")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in SQLITE_BUSY_CODES:  # extended codes too
            return None  # another process is writing: the crawl lock says so, with its pid
        return f"--db {path} cannot be written: {exc}"
    except sqlite3.Error as exc:
        return f"--db {path} cannot be written: {exc}"
    return None


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
    if not redis_url:
        check_db(db_path, write=True, create=True)
    registry = load_registry(sources_file)
    try:
        selected = select_sources(registry, source_ids, str(sources_file or bundled_catalogue()))
    except SourceError as exc:
        fail(str(exc))
    overrides = {"PRESSARCHIVE_BACKFILL": backfill, "WARC_ENABLED": not no_warc}
    if seed and not redis_url:
        fail("--seed needs --redis URL")
    if redis_url:
        from crawler.middlewares.distributed import redis_overrides

        overrides.update(redis_overrides(redis_url, seed, idle_exit))
    code = crawl_sources(selected, db_path, contact=contact, log_level=log_level, log_file=log_file,
                         overrides=overrides, lock=not redis_url)
    sys.exit(code)


def crawl_sources(selected, db_path, lock=True, **options) -> int:
    # Imported here: Scrapy's import is slow, and only crawling needs it.
    from contextlib import nullcontext

    from crawler.lock import ArchiveLocked, archive_lock
    from crawler.runner import ArchiveError, build_settings, run_crawl

    if lock:  # a distributed worker does not write the archive (the ingester does): no check, no lock
        check_db(db_path, write=True, create=True)
    settings = build_settings(db_path, **options)
    try:
        with archive_lock(db_path) if lock else nullcontext():
            rows = run_crawl(selected, settings)
    except ArchiveLocked as exc:
        fail(str(exc), EXIT_LOCKED)
    except ArchiveError as exc:  # refused before any request (e.g. SQLite: a read-only database)
        fail(str(exc))
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
    stored_nothing = {row["message"].split(";")[0] for row in rows if row.get("not_stored")}
    for message in sorted(stored_nothing):  # a full disk, a file gone read-only: say it, not only count it
        click.echo(f"Error: {message}; {sum(r['not_stored'] or 0 for r in rows)} fetched releases were not "
                   "stored (the next crawl fetches them again)", err=True)
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
@click.option("--contact", metavar="URL", envvar="PRESSARCHIVE_CONTACT", help="Contact URL for the User-Agent.")
@click.option("--db", "archive_path", type=click.Path(path_type=Path), default=None,
              help="Archive whose release dates give each source's usual rhythm, read only "
                   "(default: ./archive.db when there is one).")
def sources_check(source_ids, sources_file, contact, archive_path):
    """Fetch each source's discovery endpoints for real and fetch one sample release.

    SOURCE_IDS: the sources to check (default: every enabled source). Reports per source: reachable, releases discovered, newest date, and the
    sample's title, date and text length. Exit code 1 when a source looks
    broken (unreachable, nothing discovered, or a sample without text) or
    drifts (links that no longer match article_pattern, shown with a few of
    them; or, with an archive, no release for much longer than the source's
    usual rhythm): run it weekly to learn that a government redesigned its
    site. Nothing is written to your archive.
    """
    import tempfile

    from crawler.health import overdue, rhythm_archive
    from crawler.runner import build_settings, run_crawl

    registry = load_registry(sources_file)
    try:
        selected = select_sources(registry, source_ids, str(sources_file or bundled_catalogue()))
    except SourceError as exc:
        fail(str(exc))
    archive = rhythm_archive(archive_path)
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
        if db is not None:
            db.close()
    if archive is not None:
        archive.close()
    click.echo(f"{len(selected)} sources checked, {broken} broken", err=True)
    sys.exit(EXIT_SOURCE_FAILED if broken else 0)


def _check_problem(run, sample, late=None) -> str | None:
    """Why a checked source looks broken or drifting (lines), or None. ``late``: the rhythm
    verdict of crawler.health.overdue."""
    from crawler.health import link_drift_lines

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


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--url", help="The page's original URL (helps dates and links).")
@click.option("--charset", help="Charset the server declared in Content-Type, if any.")
def extract(file, url, charset):
    """Print title, text, date and language extracted from a saved page (HTML or PDF), as JSON.

    FILE is the page as saved from the site (raw bytes: its encoding is detected as in a crawl).
    Exit codes: 0 text found; 1 a page, but no main text in it (the JSON is
    still printed: title and date help to write selectors); 2 not a page at
    all (empty, or binary data such as an image or an archive).
    """
    body = _read_page(file)
    result, no_text = _extract_page(body, file, url, charset)
    click.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
    if no_text:
        fail(f"{file}: {no_text}", EXIT_SOURCE_FAILED)


def _read_page(file: Path) -> bytes:
    from pipelines.clean import looks_binary
    from pipelines.pdf import is_pdf

    try:
        if file.is_dir():
            fail(f"{file} is a folder, not a page")
        if not stat.S_ISREG(file.stat().st_mode):  # /dev/zero would be read forever
            fail(f"{file} is not a regular file (a device, pipe or socket), not a page")
        body = file.read_bytes()
    except FileNotFoundError:
        fail(f"file not found: {file}")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    if not body.strip():
        fail(f"{file} is empty: not a page")
    if not is_pdf(body) and looks_binary(body):
        fail(f"{file} is not a page: binary data (an image, archive or program?), not HTML or PDF")
    return body


def _extract_page(body: bytes, file: Path, url, charset):
    """The extraction of a page, and why it has no text (None when it has): what a crawl would
    store, or the reason it would not. Decoding repairs are one warning line each."""
    from pipelines import extraction
    from pipelines.clean import SCRIPT_ONLY_MAX_WORDS, SCRIPT_ONLY_RE
    from pipelines.encoding import decode_notes
    from pipelines.pdf import TEXT_STATUSES, analyse_pdf, is_pdf

    if is_pdf(body):
        analysed = analyse_pdf(body, url)
        if not analysed.has_text:
            return analysed.extraction, f"PDF without usable text: {TEXT_STATUSES.get(analysed.status, analysed.status)}"
        return analysed.extraction, None
    with decode_notes() as notes:
        result = extraction.extract(body, url, http_charset=charset)
    for note in [*dict.fromkeys(notes), *result.notes]:
        click.echo(f"Warning: {file}{f' ({url})' if url else ''}: {note}", err=True)
    if not result.text.strip():
        return result, "no main text found (a listing, a JavaScript shell or an error page?)"
    if extraction.word_count(result.text) <= SCRIPT_ONLY_MAX_WORDS and SCRIPT_ONLY_RE.search(result.text):
        return result, "JavaScript-only page: no text without running its scripts"
    return result, None


@cli.command()
@db_option
@click.option("--serve/--no-serve", default=False, help="Start Datasette on the result afterwards.")
def demo(db_path, serve):
    """Crawl the built-in demo sites (served on 127.0.0.1) into the archive; offline."""
    from crawler.demo import run_demo

    check_db(db_path, write=True, create=True)
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


@cli.command()
@db_option
def reindex(db_path):
    """Bring the archive's search index up to date (after copying in an archive made by an
    older version; `crawl`, `reextract` and `ingest` keep it up to date themselves).

    `serve` never writes, so an archive whose index is missing or from an older format
    is served with a warning until this (or a crawl) has run. Resumable: the index is
    built in batches of their own transactions.
    """
    import sqlite3

    from crawler.lock import ArchiveLocked, archive_lock
    from pipelines.schema import open_archive
    from pipelines.search_index import ensure_search

    check_db(db_path, write=True)
    try:
        with archive_lock(db_path):
            db = open_archive(db_path)
            try:
                ensure_search(db)
                count = db.execute("select count(*) from releases").fetchone()[0]
            finally:
                db.close()
    except ArchiveLocked as exc:
        fail(str(exc), EXIT_LOCKED)
    except sqlite3.Error as exc:
        fail(f"archive {db_path} could not be re-indexed: {exc}")
    click.echo(f"search index of {db_path} is up to date ({count:,} releases)")


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

"""The ``pressarchive`` command line: one module per command, shared options in :mod:`.options`.

``crawl`` and ``demo`` fill the archive, ``sources`` lists and tries the registry,
``extract`` cleans one saved page, ``serve``, ``export`` and ``status`` read the archive,
``reextract``, ``reindex``, ``link`` and ``ingest`` rework or feed it, ``watch`` keeps saved
searches and delivers their news after every crawl. Each command module imports
what only it needs inside the command (Scrapy, Datasette, the extractor are slow to
import), so ``pressarchive --help`` and the light commands start fast.
"""

from __future__ import annotations

import click

from crawler import __version__
from crawler.cli import (
    crawl,
    demo,
    export,
    extract,
    ingest,
    link,
    reextract,
    reindex,
    serve,
    sources,
    status,
    watch,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pressarchive")
def cli():
    """Crawl official statements (press releases, readouts, embassy statements) into a
    searchable SQLite archive, serve it with Datasette and export snapshots."""


for command in (crawl.crawl, sources.sources_command, extract.extract, demo.demo, serve.serve_command,
                export.export_command, status.status_command, reextract.reextract_command,
                ingest.ingest_command, reindex.reindex, link.link_command, watch.watch_group):
    cli.add_command(command)


def main():
    cli(prog_name="pressarchive")

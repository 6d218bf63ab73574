"""pressarchive: crawl official statements into a searchable SQLite archive.

Data flow: ``crawler/`` (sources -> discovery -> fetch) then ``pipelines/`` (clean -> store)
into ``archive/`` (the SQLite archive and all that reads it). ``crawler.cli`` is the
``pressarchive`` command. Imports go that way only: crawler -> pipelines -> archive.
"""

from archive import __version__

__all__ = ["__version__"]

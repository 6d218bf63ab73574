"""The archive: the SQLite file every other part of pressarchive reads or writes.

The crawl (``crawler``) fetches, the pipelines (``pipelines``) clean; what is kept, and
everything that reads what is kept, speaks SQL here and nowhere else.
:mod:`archive.files` is what any command checks before it opens a ``--db`` file.
"""

__version__ = "0.1.0"  # the package's one version (crawler re-exports it)

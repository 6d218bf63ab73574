"""pressarchive: crawl official statements into a searchable SQLite archive.

Data flow: ``crawler/`` (sources -> spider -> items) then ``pipelines/``
(clean -> store). ``crawler.cli`` is the ``pressarchive`` command.
"""

__version__ = "0.1.0"

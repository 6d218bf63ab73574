"""What the spider hands to the pipelines: one fetched release page.

The spider fills the fetch fields; ``pipelines.clean`` fills the cleaned
fields; ``pipelines.store`` writes them. The raw body is kept out of ``repr``
so that log lines about an item stay one line long.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReleaseItem:
    source_id: str
    url: str  # normalised; the archive's key
    fetched_url: str
    http_status: int
    content_type: str | None
    http_charset: str | None
    fetched_at: str  # ISO 8601 UTC
    body: bytes = field(default=b"", repr=False)
    hints: dict = field(default_factory=dict)  # what discovery knew: feed/sitemap/listing date and title
    etag: str | None = None
    last_modified: str | None = None
    recheck: bool = False  # a known release fetched again
    warc: dict | None = None  # {"file", "offset", "length"} of the raw capture
    parent_url: str | None = None  # set for a document attached to a release page (a linked PDF)
    lease: str | None = field(default=None, repr=False)  # distributed crawl: the request's lease in Redis

    # Filled by pipelines.clean
    title: str | None = None
    text: str | None = field(default=None, repr=False)
    published: str | None = None
    date_source: str | None = None
    language: str | None = None
    encoding: str | None = None
    canonical_url: str | None = None
    text_status: str | None = None  # "text", or why a PDF has none (scanned, encrypted, ...)
    pages: int | None = None
    content_hash: str | None = None
    word_count: int | None = None
    extractor: str | None = None
    # (title, text) as the search index wants them, made by the cleaning worker so the
    # archive's single writer does not spend its time on it (archive.search_index.search_form)
    search_form: tuple | list | None = field(default=None, repr=False)
    # Its text line by line as the repost linker needs it (archive.families.sign), made by the
    # cleaning worker for the same reason
    minhash: object = field(default=None, repr=False)
    # Other language versions the page declares: [{"url", "hreflang", "evidence"}]
    # (pipelines/extraction/alternates.py), kept in release_alternates for translation links
    alternates: list | None = field(default=None, repr=False)


@dataclass
class ReleaseCheck:
    """A recheck of a known release that produced no page to clean.

    ``outcome`` is ``not_modified`` (HTTP 304) or ``removed`` (404/410, or a
    redirect to something that is not this release).
    """

    source_id: str
    url: str
    outcome: str
    fetched_at: str
    http_status: int | None = None
    detail: str | None = None
    lease: str | None = field(default=None, repr=False)


@dataclass
class EntryFetch:
    """HTTP validators of a feed, sitemap or listing page, for the next conditional GET."""

    source_id: str
    url: str
    role: str
    fetched_at: str
    http_status: int
    etag: str | None = None
    last_modified: str | None = None
    lease: str | None = field(default=None, repr=False)

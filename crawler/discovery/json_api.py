"""JSON APIs: the search or news endpoints behind sites whose pages are built in the browser.

A source's ``[[sources.json_api]]`` tables describe an endpoint in data, not code: a
``url`` template paged by ``{page}``, ``{offset}`` and ``{size}`` (GET, or POST with a
``body``), where the list of items is (``items``, a dotted path) and, per item, the
release URL (``url_field``, or ``url_template`` such as ``/news/{refCode|slug}``), its
title, summary and date. Paging stops as listings do (the first page of known
releases), at ``max_pages``, at ``total_field``, or at an empty page.

Some sites (the EC press corner) serve each release as a JavaScript shell: for them,
``detail_url`` names the JSON that holds the body (``detail_body``), which
:meth:`JsonApiDiscovery.parse_json_detail` wraps in a minimal HTML page so the
release is cleaned like any other, under its public URL.
"""

from __future__ import annotations

import html
import re

from archive.clock import now_iso
from archive.items import ReleaseItem
from archive.urls import is_http_url, normalise_url
from crawler.discovery.common import (
    NEW,
    RELEASE_PRIORITY,
    Discovery,
    clean_hints,
    discovery_hints,
    iso_date,
    plain,
)

_FIELD_RE = re.compile(r"\{([A-Za-z0-9_.]+)((?:\|[a-z]+)*)\}")


def json_path(data, path: str | None):
    """``data`` at a dotted path (``feed.entry``, ``title.rendered``, ``items.0.link``); None if absent."""
    if path is None:
        return None
    for part in filter(None, path.split(".")):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def fill_template(template: str, item: dict) -> str | None:
    """``{field}`` / ``{field|lower}`` / ``{field|slug}`` filled from a JSON item; None if a field is missing."""
    missing = []

    def value(match):
        found = json_path(item, match.group(1))
        if found is None:
            missing.append(match.group(1))
            return ""
        text = str(found)
        for flt in filter(None, match.group(2).split("|")):
            if flt == "lower":
                text = text.lower()
            elif flt == "slug":
                text = re.sub(r"[/\s]+", "_", text).lower()
        return text

    filled = _FIELD_RE.sub(value, template)
    return None if missing else filled


def page_url(template: str, page: int, size: int) -> str:
    """An API URL or body template filled for one page: ``{page}`` (from 1), ``{offset}``, ``{size}``."""
    return template.replace("{page}", str(page)).replace("{offset}", str((page - 1) * size)).replace(
        "{size}", str(size))


def has_more(api: dict, data, items: list, page: int, max_pages: int) -> bool:
    """Whether the API has a page after ``page``: items on this one, under ``max_pages``, and
    under ``total_field`` when the API says how many items there are."""
    total = json_path(data, api.get("total_field"))
    more = bool(items) and page < api.get("max_pages", max_pages)
    if isinstance(total, (int, float)) or (isinstance(total, str) and total.isdigit()):
        more = more and page * api.get("size", 50) < int(total)
    return more


class JsonApiDiscovery(Discovery):
    """The ``json_api`` endpoints of a source, and their detail endpoints."""

    def _api_request(self, source, index, page, entry=None):
        api = source.json_api[index]
        size = api.get("size", 50)
        request = self._entry_request(page_url(api["url"], page, size), source, "json_api", self.parse_json_api,
                                      dont_filter=page == 1, api_index=index, page=page, entry=entry)
        if api.get("method", "GET").upper() == "POST":
            headers = dict(request.headers.to_unicode_dict(), **{"Content-Type": "application/json"})
            request = request.replace(method="POST", body=page_url(api.get("body", ""), page, size), headers=headers)
        return request

    def parse_json_api(self, response):
        source = self._source(response)
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        data = self._json(response, source, "json_api")
        if data is None:
            return
        fetched = self._entry_fetched(response, source)
        api, page = source.json_api[response.meta["api_index"]], response.meta["page"]
        items = json_path(data, api["items"]) if api.get("items") else data
        if not isinstance(items, list):
            yield fetched
            self._error(source.id, f"json_api {response.url} has no list at '{api.get('items')}'")
            return
        tally = self._tally(response, source, "json_api")
        fresh = 0
        for entry in items:
            request, new = self._api_item(response, source, api, entry, tally)
            fresh += new
            if request:
                yield request
        if has_more(api, data, items, page, source.max_pages) and self.scope.next_page(source.id, bool(fresh)):
            yield self._api_request(source, response.meta["api_index"], page + 1, entry=tally.url)
        yield from self._links_read(source, tally, fetched)

    def _api_item(self, response, source, api, entry, tally):
        """One item of an API page: (the request for its release or None, whether it is new)."""
        if not isinstance(entry, dict):
            return None, False
        if "url_field" in api:
            url = json_path(entry, api["url_field"])
        else:
            url = fill_template(api["url_template"], entry)
        if not url:
            return None, False
        url = source.canonical(response.urljoin(str(url)))
        if not self._keep(source, url):
            self._miss(source, tally, url)
            return None, False
        tally.match()
        hints = discovery_hints(iso_date(json_path(entry, api.get("date_field"))),
                                title=plain(json_path(entry, api.get("title_field"))),
                                summary=plain(json_path(entry, api.get("summary_field"))))
        if "detail_url" in api:
            return self._detail_request(source, api, entry, url, hints)
        return self._discovered(source, url, hints)

    def _detail_request(self, source, api, entry, url, hints):
        """The JSON detail endpoint of a release whose own page is a JavaScript shell."""
        self._stat(source.id, "discovered")
        key = normalise_url(url)
        if self._known_or_recheck(source, url) != NEW or key in self.requested:
            return None, False
        if not self.scope.take(source.id):
            return None, False
        detail = fill_template(api["detail_url"], entry)
        if not detail or not is_http_url(detail):
            return None, False
        self.requested.add(key)
        return self._request(detail, source, "release", self.parse_json_detail, RELEASE_PRIORITY,
                             hints=hints, release_url=key, api_index=source.json_api.index(api)), True

    def parse_json_detail(self, response):
        source = self._source(response)
        data = self._json(response, source, "json_api")
        if data is None:
            return
        api = source.json_api[response.meta["api_index"]]
        body = json_path(data, api["detail_body"])
        title = plain(json_path(data, api.get("detail_title"))) or response.meta.get("hints", {}).get("title")
        hints = {**response.meta.get("hints", {}),
                 **discovery_hints(iso_date(json_path(data, api.get("detail_date"))))}
        if title:
            hints["title"] = title
        document = (f"<html><head><meta charset='utf-8'><title>{html.escape(title or '')}</title></head>"
                    f"<body><article><h1>{html.escape(title or '')}</h1>{body or ''}</article></body></html>")
        yield ReleaseItem(
            source_id=source.id, url=response.meta["release_url"], fetched_url=response.url,
            http_status=response.status, content_type="text/html", http_charset="utf-8",
            fetched_at=now_iso(), body=document.encode("utf-8"), hints=clean_hints(source, hints),
            warc=response.meta.get("warc"),
        )

"""WordPress REST collections: ``/wp-json/wp/v2/posts`` and custom post types.

Many embassy and ministry sites run WordPress, whose REST API lists every post with its
link, title and dates, a hundred per page, newest first, whether or not the theme
shows a feed. Pages are followed to ``X-WP-TotalPages`` (WordPress answers 400 past the
last one) and stop, as listings do, at the first page of known releases. A post whose
``modified_gmt`` is after it was last seen is fetched again.
"""

from __future__ import annotations

from crawler.discovery.common import Discovery, discovery_hints, iso_date, plain

PER_PAGE = 100  # the most WordPress gives in one page


def collection_url(base: str, page: int) -> str:
    return f"{base}{'&' if '?' in base else '?'}per_page={PER_PAGE}&page={page}"


def post_hints(post: dict) -> tuple[dict, str | None]:
    """Hints of one post (title, publication date) and the date it was last modified, when
    that is another day."""
    date = iso_date(post.get("date_gmt") or post.get("date"))
    title = post.get("title")
    title = plain(title.get("rendered")) if isinstance(title, dict) else None
    modified = iso_date(post.get("modified_gmt"))
    return discovery_hints(date, title=title), (modified if modified != date else None)


def has_more(response, posts: list, page: int) -> bool:
    pages = response.headers.get(b"X-WP-TotalPages")
    return int(pages) > page if pages and pages.isdigit() else len(posts) >= PER_PAGE


class WordPressDiscovery(Discovery):
    """The ``wp_rest`` collections of a source."""

    def _wp_request(self, source, base, page, entry=None):
        # WordPress answers 400 past the last page.
        return self._entry_request(collection_url(base, page), source, "wp_rest", self.parse_wp_rest,
                                   dont_filter=page == 1, wp_base=base, page=page, handle_httpstatus_list=[400],
                                   entry=entry)

    def parse_wp_rest(self, response):
        source = self._source(response)
        page = response.meta["page"]
        if response.status == 304:
            yield self._entry_fetched(response, source)
            return
        if response.status == 400:
            if page == 1:
                self._error(source.id, f"wp_rest {response.url} answered HTTP 400")
            return
        data = self._json(response, source, "wp_rest")
        if data is None:
            return
        fetched = self._entry_fetched(response, source)
        tally = self._tally(response, source, "wp_rest")
        fresh = 0
        for post in data if isinstance(data, list) else []:
            url = post.get("link") if isinstance(post, dict) else None
            if not url or not isinstance(url, str):
                continue
            if not self._keep(source, url):
                self._miss(source, tally, url)
                continue
            tally.match()
            hints, modified = post_hints(post)
            request, new = self._discovered(source, url, hints, changed=modified)
            fresh += new
            if request:
                yield request
        more = has_more(response, data, page) and page < source.max_pages
        if more and self.scope.next_page(source.id, bool(fresh)):
            yield self._wp_request(source, response.meta["wp_base"], page + 1, entry=tally.url)
        yield from self._links_read(source, tally, fetched)

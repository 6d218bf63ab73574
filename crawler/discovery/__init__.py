"""Finding release URLs: one module per way a site publishes them.

A source picks its families by the registry keys it fills (``crawler/sources.toml``),
as many as the site offers; each key's URLs are the source's entry points:

=================  ========================  ==============================================
registry key       module                    reads
=================  ========================  ==============================================
``feeds``          :mod:`.feeds`             RSS 2.0, RSS 1.0, Atom
``sitemaps``       :mod:`.sitemaps`          sitemaps, sitemap indexes (gzipped or not), robots.txt
``listings``       :mod:`.listings`          paginated listing pages, TRS JavaScript pagers
``json_api``       :mod:`.json_api`          JSON list endpoints, and JSON detail endpoints
``wp_rest``        :mod:`.wordpress`         WordPress REST collections
(every release)    :mod:`.attachments`       the release page itself, and the PDFs it links
=================  ========================  ==============================================

Each module holds its parsers, pure functions over bytes or a Scrapy response that can
be unit-tested on hand-built input, and a mixin with the spider callbacks it needs
(``parse_feed``, ``parse_listing``...), which :class:`crawler.spiders.releases.ReleasesSpider`
composes. What the families share, the "known, or recheck?" decision, how far a run
goes, the error of an entry point, hints and the drift tally, is in :mod:`.common`.
"""

"""Scrapy components between the spider and the network, declared in ``crawler/settings.py``.

Downloader middlewares, in the order a request passes them: :mod:`.ssrf` (only http(s), only
origins a source names, no private addresses otherwise), :mod:`.robots` (robots.txt, strict on
5xx), :mod:`.retry` (Retry-After honoured), :mod:`.warc` (raw capture of every response).
Extension: :mod:`.throttle` (AutoThrottle that keeps each source's own delay). :mod:`.distributed`
is the profile of a distributed worker (shared frontier, politeness and leases in Redis).
"""

"""Every catalogued source belongs to a site family that has a fixture site and a crawl test.

The family of a source follows from how it publishes (its discovery keys and hosts); the
family's fixture site in tests/sites/ mirrors that markup and API, and tests/test_crawl.py or
tests/test_families.py crawls it.
"""

from collections import defaultdict
from pathlib import Path

from crawler.sources import load_sources

SITES = Path(__file__).parent / "sites"

# family -> (fixture site, how a source is recognised)
FAMILIES = {
    "trs": ("trs_site", lambda s: bool(s.date_from_url) and "t(" in s.date_from_url),
    "wordpress": ("wp_site", lambda s: bool(s.wp_rest)),
    "gc-news-api": ("gcapi_site", lambda s: any("api.io.canada.ca" in a["url"] for a in s.json_api)),
    "ec-presscorner": ("ec_site", lambda s: any("detail_url" in a for a in s.json_api)),
    "json-search-api": ("govuk_site", lambda s: bool(s.json_api)),
    "feed": ("feed_site", lambda s: bool(s.feeds)),
    "sitemap": ("sitemap_site", lambda s: bool(s.sitemaps)),
    "listing": ("listing_site", lambda s: bool(s.listings)),
}


def family_of(source) -> str:
    return next(name for name, (_, match) in FAMILIES.items() if match(source))


def test_every_source_has_a_tested_family():
    members = defaultdict(list)
    for source in load_sources():
        members[family_of(source)].append(source.id)
    for family, ids in sorted(members.items()):
        site = FAMILIES[family][0]
        assert (SITES / site).is_dir(), f"family {family} ({', '.join(ids)}) has no fixture site {site}"
    # The families the catalogue really uses, with their members (printed with -s).
    assert {"trs", "wordpress", "gc-news-api", "ec-presscorner", "feed", "listing"} <= set(members)
    for family, ids in sorted(members.items()):
        print(f"{family}: {', '.join(sorted(ids))}")


def test_catalogue_size_and_spread():
    sources = load_sources()
    assert len(sources) >= 40
    assert len({s.country for s in sources}) >= 10
    assert {"cn-embassy-ca-en", "cn-embassy-ca-zh", "ca-pm", "ca-gac"} <= {s.id for s in sources}
    for source in sources:
        assert source.delay >= 2, f"{source.id}: real sources are crawled politely"

"""The built-in demo: two local sites mirroring official publishers, crawled offline.

``sites/gov_news`` mirrors Government of Canada news (feed + paginated
listing); ``sites/embassy`` mirrors the PRC Embassy in Canada's TRS site
(paginated English and Chinese listings). ``sources.toml`` describes them with
``{base_gov}`` / ``{base_embassy}`` placeholders, filled with the local
servers' addresses at run time (see :mod:`crawler.demo.server`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from crawler.sources import load_sources


def run_demo(db_path: Path, crawl_sources) -> int:
    """Serve the demo sites, crawl them into ``db_path``; return the crawl's exit code."""
    from crawler.demo.server import (
        DEMO_SITES,
        DEMO_SOURCES,
        serve_sites,
        stop_all,
        substitute_bases,
    )

    servers = serve_sites(DEMO_SITES)
    try:
        text = substitute_bases(DEMO_SOURCES.read_text(encoding="utf-8"), servers)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demo-sources.toml"
            path.write_text(text, encoding="utf-8")
            sources = load_sources(path)
        return crawl_sources(sources, db_path, log_level="WARNING")
    finally:
        stop_all(servers)

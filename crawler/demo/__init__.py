"""The built-in demo: two local sites mirroring official publishers, crawled offline.

``sites/gov_news`` mirrors Government of Canada news (feed + paginated
listing); ``sites/embassy`` mirrors the PRC Embassy in Canada's TRS site
(paginated English and Chinese listings). ``sources.toml`` describes them with
``{base_gov}`` / ``{base_embassy}`` placeholders.

Each site has one stable address, ``http://127.0.0.1:28461`` and ``:28462``
(:data:`DEMO_SITES_PORT`, ``--sites-port``), and the archive's URLs of demo
releases name it, so running the demo again on the same archive finds the
same URLs and adds nothing (only ``crawl_runs`` and the raw capture grow: one
run more). A run does not need those ports, though: its sites listen on any
free port and the crawl reaches them through :mod:`crawler.demo.proxy`, so
two demos, parallel tests or a running ``demo --serve`` never collide.
:func:`serve_demo_sites` serves the sites at their stable addresses for people
(``pressarchive demo --serve``), so the archive's original URLs answer.
"""

from __future__ import annotations

import tempfile
import urllib.request
from pathlib import Path

# Port of the first demo site's stable address (the second site has the next one). Outside Linux's
# ephemeral range (32768-60999), so an outgoing connection never holds it.
DEMO_SITES_PORT = 28461
SERVER_NAME = "pressarchive-sites/"  # the demo site server's Server header (crawler.demo.server)


def demo_sources(bases: dict[str, str]):
    """The demo's source registry with the sites at ``bases`` (name -> base URL), validated."""
    from crawler.demo.server import DEMO_SOURCES, substitute_bases
    from crawler.sources import load_sources

    text = substitute_bases(DEMO_SOURCES.read_text(encoding="utf-8"), bases)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo-sources.toml"
        path.write_text(text, encoding="utf-8")
        return load_sources(path)


def run_demo(db_path: Path, crawl_sources, sites_port: int = DEMO_SITES_PORT) -> int:
    """Serve the demo sites, crawl them into ``db_path`` under their stable addresses; return the exit code."""
    from crawler.demo.proxy import crawl_overrides
    from crawler.demo.server import DEMO_SITES, demo_bases, serve_sites, stop_all

    bases = demo_bases(sites_port)
    servers = serve_sites(DEMO_SITES, public_bases=bases)  # any free ports
    try:
        routes = {bases[name]: server.base_url for name, server in servers.items()}
        return crawl_sources(demo_sources(bases), db_path, log_level="WARNING", overrides=crawl_overrides(routes))
    finally:
        stop_all(servers)


def serve_demo_sites(sites_port: int = DEMO_SITES_PORT):
    """Start the demo sites at their stable addresses; return ``(servers, lines to print)``.

    A port already taken is not fatal (the archive is still served): when a
    demo site server of pressarchive holds it (another ``demo --serve``), the
    original URLs answer all the same; otherwise the line says they will not.
    The caller stops the servers (``crawler.demo.server.stop_all``).
    """
    from crawler.demo.server import DEMO_SITES, SiteServer, demo_bases

    servers, lines = {}, []
    for (name, root), base in zip(DEMO_SITES.items(), demo_bases(sites_port).values()):
        port = int(base.rsplit(":", 1)[1])
        try:
            servers[name] = SiteServer(root, port=port).start()
            lines.append(f"Demo site {name}: {base}/ (the archive's original URLs of its releases answer there)")
        except OSError as exc:
            if serves_demo_site(base, root):
                lines.append(f"Demo site {name}: {base}/ is already served by another pressarchive demo")
            else:
                lines.append(f"Warning: demo site {name} cannot listen at {base}/ ({exc.strerror or exc}): "
                             "the archive's original URLs of its releases will not answer; free the port, or "
                             "run the demo into a new --db with another --sites-port")
    return servers, lines


def serves_demo_site(base: str, root: Path) -> bool:
    """Whether ``base`` answers as the demo site in ``root`` (its robots.txt, from a pressarchive site server)."""
    robots = root / "robots.txt"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(f"{base}/robots.txt", timeout=3) as response:
            server, body = response.headers.get("Server", ""), response.read()
    except OSError:
        return False
    expected = robots.read_bytes().replace(b"{{BASE}}", base.encode()) if robots.is_file() else body
    return server.startswith(SERVER_NAME) and body == expected

"""A small real HTTP server for the demo sites and the test fixture sites.

``SiteServer(root)`` serves the files under ``root`` on 127.0.0.1 from a
background thread (stdlib only). It behaves like a plain static web server,
with a few extras the crawler's tests and the demo need:

* In text files (.html .htm .xml .rss .atom .txt .json, also inside
  ``*.xml.gz``) the ASCII token ``{{BASE}}`` becomes the server's base URL,
  so pages can hold absolute links although the port is only known at start.
  The replacement works on bytes: GBK or any other ASCII-compatible page keeps
  its bytes untouched apart from the token.
* Content-Type by file extension. HTML is sent as ``text/html`` with *no*
  charset parameter, like many government servers, unless ``_routes.json``
  says otherwise. ``.gz`` files are sent as ``application/x-gzip`` without
  ``Content-Encoding`` (a gzipped sitemap, not a compressed transfer).
* ``ETag`` and ``Last-Modified`` on every file, and ``304 Not Modified`` for
  ``If-None-Match`` / ``If-Modified-Since``.
* A directory serves its ``index.html`` or ``index.htm`` (with or without the
  trailing slash, as Drupal-style sites do).
* ``_routes.json`` at the site root (optional) maps a request path (with its
  query string, or without it as a fallback) to overrides::

      {"/gone.htm": {"status": 410},
       "/old/": {"location": "/new/", "status": 302},
       "/news/?page=2": {"body_file": "news/page-2.html"},
       "/feed": {"content_type": "application/rss+xml; charset=utf-8",
                 "headers": {"Cache-Control": "no-cache"}},
       "/flaky.html": {"status": 503, "times": 1}}

  ``times`` limits ``status``, ``headers`` and ``delay`` to the first N
  requests (to test retries: 503 once, then the page); ``delay`` sleeps that
  many seconds before answering.
* Every request is logged in order in ``.requests`` (thread-safe).
* ``public_base`` (optional): the site's address as its pages name it, when
  that is not where this server listens. ``{{BASE}}`` and redirects then say
  ``public_base``, and the server also answers as a forward HTTP proxy for that
  one origin (``GET http://127.0.0.1:28461/path``, the absolute form a client
  sends to a proxy); any other origin is refused with 403. The demo crawls
  this way (:mod:`crawler.demo`): its sites keep one address across runs,
  whatever free port each run listens on.

``serve_sites({"gov": path, ...})`` starts several servers at once and
``substitute_bases(text, servers)`` fills ``{base_<name>}`` placeholders in a
sources.toml template with their base URLs.

Run ``python -m crawler.demo.server DIR [PORT]`` to browse a site by hand.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import mimetypes
import posixpath
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import unquote, urlsplit

from crawler.demo import DEMO_SITES_PORT

HERE = Path(__file__).resolve().parent
SITES_DIR = HERE / "sites"
DEMO_SITES = {"gov": SITES_DIR / "gov_news", "embassy": SITES_DIR / "embassy"}
DEMO_SOURCES = HERE / "sources.toml"

TOKEN = b"{{BASE}}"
ROUTES_FILE = "_routes.json"
TEXT_SUFFIXES = {".html", ".htm", ".xml", ".rss", ".atom", ".txt", ".json"}
CONTENT_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".txt": "text/plain",
    ".json": "application/json",
    ".gz": "application/x-gzip",
    ".css": "text/css",
    ".js": "application/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
}
RECORDED_HEADERS = ("User-Agent", "If-None-Match", "If-Modified-Since", "Accept", "Accept-Encoding", "Referer")


class RequestRecord(str):
    """One request as seen by the server.

    It *is* the request path with its query string (a ``str``), so
    ``"/robots.txt" in server.requests`` works, and it also carries
    ``method``, ``status`` (the status answered), ``headers`` (the
    ``RECORDED_HEADERS`` that were sent) and the shortcuts ``user_agent``,
    ``if_none_match``, ``if_modified_since``.
    """

    method: str
    status: int
    headers: dict
    received: float = 0.0

    def __new__(cls, path: str, method: str = "GET", status: int = 0, headers: dict | None = None):
        record = super().__new__(cls, path)
        record.method = method
        record.status = status
        record.headers = dict(headers or {})
        return record

    @property
    def path(self) -> str:
        return str(self)

    @property
    def user_agent(self) -> str | None:
        return self.headers.get("User-Agent")

    @property
    def if_none_match(self) -> str | None:
        return self.headers.get("If-None-Match")

    @property
    def if_modified_since(self) -> str | None:
        return self.headers.get("If-Modified-Since")

    def __repr__(self) -> str:
        return f"RequestRecord({self.method} {str(self)!r} -> {self.status})"


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)


class SiteServer:
    """Serve one directory of static pages on ``host:port`` (port 0: any free port)."""

    def __init__(self, root: Path | str, host: str = "127.0.0.1", port: int = 0, public_base: str | None = None):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"site directory not found: {self.root}")
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._route_hits: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._httpd = _QuietHTTPServer((host, port), _make_handler(self))
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}"
        # The site's address in its pages and redirects, and the one origin it proxies for.
        self.public_base = (public_base or self.base_url).rstrip("/")

    # lifecycle -----------------------------------------------------------
    def start(self) -> SiteServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"SiteServer:{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str = "/") -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # request log ---------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        """Just the requested paths (with query strings), oldest first."""
        return [str(r) for r in self.requests]

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._route_hits.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    # answering -----------------------------------------------------------
    def _routes(self) -> dict:
        # Read on every request so a test can edit a site copy between crawls.
        path = self.root / ROUTES_FILE
        if not path.is_file():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

    def _route_for(self, target: str, path: str) -> dict | None:
        routes = self._routes()
        key = target if target in routes else path if path in routes else None
        if key is None:
            return None
        route = dict(routes[key])
        times = route.get("times")
        if times is not None:
            with self._lock:
                hits = self._route_hits.get(key, 0)
                self._route_hits[key] = hits + 1
            if hits >= int(times):  # the failure is over: serve the route's content normally
                for key in ("status", "delay", "headers"):
                    route.pop(key, None)
        return route

    def origin_form(self, target: str) -> str | None:
        """``target`` as a path (with query), or None when it names another origin than this site's.

        A proxy's client sends the absolute form (``http://host:port/path?q``); a
        browser or crawler talking to the server itself sends the path.
        """
        if target.startswith("/"):
            return target
        parts = urlsplit(target)
        if f"{parts.scheme}://{parts.netloc}".lower() != self.public_base.lower():
            return None
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def answer(self, method: str, target: str, headers: Mapping[str, str]) -> _Answer:
        proxied = target
        target = self.origin_form(target)
        if target is None:
            body = f"this server only serves {self.public_base}, not {proxied}\n".encode()
            return _Answer(403, body, {"Content-Type": "text/plain; charset=utf-8"})
        path = unquote(urlsplit(target).path) or "/"
        route = self._route_for(target, path) or {}
        if route.get("delay"):
            time.sleep(float(route["delay"]))
        status = int(route.get("status", 200))

        if "location" in route:
            location = route["location"].replace(TOKEN.decode(), self.public_base)
            if location.startswith("/"):
                location = self.public_base + location
            status = status if 300 <= status < 400 else 301
            return self._extra(_Answer(status, b"", {"Location": location}), route)

        file = self._resolve(route.get("body_file") or path)
        if file is None:
            return self._extra(self._error(status if status >= 400 else 404), route)
        body = self._read(file)
        if status >= 400:
            return self._extra(_Answer(status, body, {"Content-Type": self._content_type(file)}), route)

        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        mtime = int(file.stat().st_mtime)
        answer_headers = {
            "Content-Type": self._content_type(file),
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        }
        if self._not_modified(headers, etag, mtime):
            return self._extra(_Answer(304, b"", {k: answer_headers[k] for k in ("ETag", "Last-Modified")}), route)
        return self._extra(_Answer(status, body, answer_headers), route)

    @staticmethod
    def _extra(answer: _Answer, route: dict) -> _Answer:
        if "content_type" in route and answer.status != 304:
            answer.headers["Content-Type"] = route["content_type"]
        answer.headers.update(route.get("headers", {}))
        return answer

    @staticmethod
    def _not_modified(headers: Mapping[str, str], etag: str, mtime: int) -> bool:
        inm = headers.get("If-None-Match")
        if inm is not None:  # takes precedence over If-Modified-Since (RFC 9110)
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = headers.get("If-Modified-Since")
        if ims:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError):
                return False
            return mtime <= since
        return False

    def _resolve(self, path: str) -> Path | None:
        clean = posixpath.normpath("/" + path.lstrip("/")).lstrip("/")
        if clean.split("/")[0] == ROUTES_FILE:
            return None
        candidate = (self.root / clean).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        if candidate.is_dir():
            for index in ("index.html", "index.htm"):
                if (candidate / index).is_file():
                    return candidate / index
            return None
        return candidate if candidate.is_file() else None

    def _read(self, file: Path) -> bytes:
        data = file.read_bytes()
        suffixes = file.suffixes
        if suffixes[-1:] == [".gz"] and len(suffixes) >= 2 and suffixes[-2] in TEXT_SUFFIXES:
            inner = gzip.decompress(data)
            if TOKEN in inner:
                data = gzip.compress(inner.replace(TOKEN, self.public_base.encode()), mtime=0)
            return data
        if file.suffix.lower() in TEXT_SUFFIXES:
            data = data.replace(TOKEN, self.public_base.encode("ascii"))
        return data

    @staticmethod
    def _content_type(file: Path) -> str:
        suffix = file.suffix.lower()
        if suffix in CONTENT_TYPES:
            return CONTENT_TYPES[suffix]
        guessed, _ = mimetypes.guess_type(file.name)
        return guessed or "application/octet-stream"

    def _error(self, status: int) -> _Answer:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        body = f"<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>" \
               f"<body><h1>{status} {phrase}</h1></body></html>\n".encode()
        return _Answer(status, body, {"Content-Type": "text/html"})


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client hanging up is not our problem
        pass


def _make_handler(site: SiteServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: on a kept-alive connection Nagle's algorithm
        # would hold the second until the client's delayed ACK, ~40 ms a request.
        disable_nagle_algorithm = True
        server_version = "pressarchive-sites/1"

        def do_GET(self):
            self._serve(send_body=True)

        def do_HEAD(self):
            self._serve(send_body=False)

        def _serve(self, send_body: bool):
            received = time.monotonic()
            answer = site.answer(self.command, self.path, self.headers)
            sent = {h: self.headers[h] for h in RECORDED_HEADERS if self.headers.get(h) is not None}
            record = RequestRecord(site.origin_form(self.path) or self.path, self.command, answer.status, sent)
            record.received = received  # monotonic arrival time, for politeness checks
            site._record(record)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if send_body and answer.status != 304:
                self.wfile.write(answer.body)

        def log_message(self, format, *args):  # quiet: no stderr spam during tests
            pass

    return Handler


def serve_sites(mapping: Mapping[str, Path | str], host: str = "127.0.0.1",
                public_bases: Mapping[str, str] | None = None) -> dict[str, SiteServer]:
    """Start one server per site directory on any free port; the caller stops them (see ``stop_all``).

    ``public_bases`` gives sites an address other than where they listen (see :class:`SiteServer`).
    """
    servers: dict[str, SiteServer] = {}
    try:
        for name, root in mapping.items():
            servers[name] = SiteServer(root, host=host, public_base=(public_bases or {}).get(name)).start()
    except BaseException:
        stop_all(servers)
        raise
    return servers


def demo_bases(port: int = DEMO_SITES_PORT, host: str = "127.0.0.1") -> dict[str, str]:
    """The demo sites' stable addresses: ``port`` for the first site, the next ports for the others."""
    return {name: f"http://{host}:{port + i}" for i, name in enumerate(DEMO_SITES)}


def stop_all(servers: Mapping[str, SiteServer]) -> None:
    for server in servers.values():
        server.stop()


def substitute_bases(text: str, servers: Mapping[str, SiteServer | str]) -> str:
    """Replace ``{base_<name>}`` with each server's base URL (or the given string).

    Plain replacement, not ``str.format``: regexes in the TOML hold braces.
    """
    for name, server in servers.items():
        base = server if isinstance(server, str) else server.base_url
        text = text.replace("{base_" + name + "}", base)
    return text


def main(argv: list[str] | None = None) -> None:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m crawler.demo.server SITE_DIR [PORT]", file=sys.stderr)
        raise SystemExit(2)
    server = SiteServer(args[0], port=int(args[1]) if len(args) > 1 else 0)
    print(f"serving {server.root} at {server.base_url}/ (Ctrl-C to stop)")
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()

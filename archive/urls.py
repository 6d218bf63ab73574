"""URL normalisation: the key under which a release is stored.

Two links to the same release (with a fragment, with tracking parameters,
with an upper-case host or a default port) must map to one row. Only http(s)
URLs are ever fetched (:func:`is_http_url`): an ``ftp://`` feed item would make
Scrapy's FTP handler wait on a server that does not speak FTP.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit, urlunsplit

TRACKING_PARAMS = {
    "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "_gl", "igshid",
    "yclid", "spm", "from", "share", "ref_src", "cmpid", "_hsenc", "_hsmi",
}
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "wt.", "__hs")


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def is_http_url(url: str) -> bool:
    """An absolute http or https URL with a host: the only kind the crawler fetches."""
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # "http://[::1": not a URL anyone can fetch
        return False


def normalise_url(url: str) -> str:
    """Scheme and host lower-cased, default port, fragment and tracking parameters dropped."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path or "/"
    # Tracking parameters are dropped piece by piece: the pieces kept keep their exact bytes
    # (re-encoding them would turn %20 into +, add "=" to a bare key...: two keys for one release).
    pieces = parts.query.split("&") if parts.query else []
    kept = [piece for piece in pieces if piece and not is_tracking_param(unquote_plus(piece.split("=", 1)[0]))]
    query = "&".join(kept) if len(kept) != len(pieces) else parts.query
    return urlunsplit((scheme, host, path, query, ""))


def scheme_twin(url: str) -> str:
    """The same URL under the other scheme: sites link one release as http and https."""
    if url.startswith("https://"):
        return "http://" + url[len("https://"):]
    if url.startswith("http://"):
        return "https://" + url[len("http://"):]
    return url

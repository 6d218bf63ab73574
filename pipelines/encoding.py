"""Turn fetched bytes into text, right even when the page lies about its charset.

Government sites, Chinese ones above all, often serve GB2312/GBK bytes with no
charset anywhere, or declare ``gb2312`` on pages that were re-saved as UTF-8.
:func:`decode_html` decides in this order, first hit wins:

1. a byte-order mark;
2. bytes that are strictly valid UTF-8 and contain non-ASCII: UTF-8, whatever
   the page or the server declares (legacy encodings almost never produce long
   valid UTF-8 sequences by chance, while stale declarations are common);
3. the HTTP ``Content-Type`` charset, if it decodes the bytes;
4. the ``<meta charset>`` / ``http-equiv`` declaration, if it decodes them;
5. pure ASCII: the declared codec if any, else UTF-8;
6. UTF-8, then the declared codecs, when only a few stray bytes (<= 0.1%) fail;
7. GB18030 (a superset of GB2312 and GBK) when it decodes the bytes (but a few)
   and the non-ASCII characters are mostly Han: the common undeclared case here;
8. charset-normalizer's best guess; last of all cp1252 with replacement.

Declared ``gb2312``/``gbk`` map to ``gb18030`` and ``iso-8859-1``/``ascii``
to ``cp1252``, as browsers do (WHATWG Encoding Standard).
"""

from __future__ import annotations

import codecs
import logging
import re

logger = logging.getLogger(__name__)

# Labels browsers treat as another, wider codec (WHATWG Encoding Standard).
CODEC_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "cp936": "gb18030",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "euc-kr": "cp949",
}
BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
HAN_RE = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
# Declarations live in the head; 4 KB covers real pages without scanning megabytes.
DECLARATION_WINDOW = 4096
# Share of non-ASCII characters that must be Han/CJK punctuation to accept an undeclared GB18030 guess.
MIN_HAN_SHARE = 0.8


# Share of undecodable characters tolerated in an undeclared GB18030 page.
MAX_BAD_SHARE = 0.001


def normalise_codec(label: str | None) -> str | None:
    """Python codec name for a charset label, with browser-style widening; None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = CODEC_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return CODEC_ALIASES.get(name, name)


def _try_decode(body: bytes, codec: str | None) -> str | None:
    if not codec:
        return None
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _bom(body: bytes) -> tuple[str, str] | None:
    for mark, codec in BOMS:
        if body.startswith(mark):
            return body.decode(codec, errors="replace"), codec.replace("-sig", "")
    return None


def declared_charset(body: bytes) -> str | None:
    """The charset named by a ``<meta>`` tag near the top of the page, normalised."""
    match = META_CHARSET_RE.search(body[:DECLARATION_WINDOW])
    codec = normalise_codec(match.group(1).decode("ascii", "ignore")) if match else None
    # A <meta> naming UTF-16/32 was readable as ASCII, so it cannot be true (WHATWG).
    return "utf-8" if codec and codec.startswith(("utf-16", "utf-32")) else codec


def _looks_chinese(text: str) -> bool:
    non_ascii = [char for char in text if ord(char) > 127]
    if not non_ascii:
        return False
    han = sum(1 for char in non_ascii if HAN_RE.match(char))
    return han / len(non_ascii) >= MIN_HAN_SHARE


def _nearly(body: bytes, codec: str | None) -> str | None:
    """`body` decoded with replacement if `codec` fails on only a few stray bytes."""
    if not codec:
        return None
    try:
        text = body.decode(codec, errors="replace")
    except LookupError:
        return None
    return text if text.count("\ufffd") <= MAX_BAD_SHARE * len(text) else None


def _guess(body: bytes, declared: list[str | None]) -> tuple[str, str]:
    """Bytes no codec decodes cleanly: nearly-UTF-8, nearly-declared, Chinese, then charset-normalizer."""
    for codec in ("utf-8", *declared):
        text = _nearly(body, codec)
        if text is not None:
            return text, codec
    text = _nearly(body, "gb18030")
    if text is not None and _looks_chinese(text):
        return text, "gb18030"
    from charset_normalizer import from_bytes  # imported late: slow import, rarely needed

    best = from_bytes(body).best()
    if best is not None:
        codec = normalise_codec(best.encoding) or best.encoding
        decoded = _try_decode(body, codec)
        if decoded is not None:
            return decoded, codec
    return body.decode("cp1252", errors="replace"), "cp1252"


def decode_html(body: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode a fetched page; returns (text, Python codec name used)."""
    bom = _bom(body)
    if bom:
        return bom
    if not body.isascii():
        text = _try_decode(body, "utf-8")
        if text is not None:
            return text, "utf-8"
    declared = [normalise_codec(http_charset), declared_charset(body)]
    for codec in declared:
        text = _try_decode(body, codec)
        if text is not None:
            return text, codec
    if body.isascii():
        return body.decode("ascii"), "utf-8"
    logger.debug("charset declaration missing or wrong; guessing")
    return _guess(body, declared)

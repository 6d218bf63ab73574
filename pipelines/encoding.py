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
6. UTF-8 when only a few stray bytes (<= 0.1%) fail;
7. a declared codec: a CJK one (GB18030, Big5, Shift_JIS, EUC-KR...) when it
   decodes most of the bytes (the rest replaced); another one when only a few
   stray bytes fail;
8. GB18030 (a superset of GB2312 and GBK) when it decodes most of the bytes
   and the non-ASCII characters are mostly Han: the common undeclared case here;
9. charset-normalizer's best guess; last of all cp1252 with replacement.

Pages in two encodings: a CMS pastes a UTF-8 paragraph into a GBK page, or
cuts a character in half. In a page read with a multi-byte CJK codec (steps 3,
4, 7, 8), a passage of at least :data:`MIN_UTF8_RUN` wide UTF-8 characters in a
row (extended over the ASCII and UTF-8 around it) is read as UTF-8: GBK, Big5,
Shift_JIS and EUC-KR text almost never contains such a run by chance (at most
2 in a row in 2 MB of the development corpus's Chinese, Japanese and Korean
pages re-encoded), while GB18030 would turn the passage into valid-looking
nonsense Han characters. Bytes no codec can read become U+FFFD.

When bytes had to be replaced or a UTF-8 passage was read, a :class:`DecodeNote`
says so: collected by a caller inside :func:`decode_notes` (which logs it with
the page's source and URL), otherwise logged here as one warning line.

Declared ``gb2312``/``gbk`` map to ``gb18030`` and ``iso-8859-1``/``ascii``
to ``cp1252``, as browsers do (WHATWG Encoding Standard).
"""

from __future__ import annotations

import codecs
import logging
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Labels browsers treat as another, wider codec (WHATWG Encoding Standard).
CODEC_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "cp936": "gb18030",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",  # what codecs.lookup names every other ISO-8859-1 label (l1, cp819, ...)
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
# Han, kana, Hangul and CJK punctuation: what a page in a CJK codec mostly holds beyond ASCII.
CJK_RE = re.compile(r"[\u1100-\u11ff\u3000-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
# Declarations live in the head; 4 KB covers real pages without scanning megabytes.
DECLARATION_WINDOW = 4096
# Share of non-ASCII characters that must be Han/CJK punctuation to accept an undeclared GB18030 guess.
MIN_HAN_SHARE = 0.8
# Share of undecodable bytes tolerated in a page read as UTF-8 or a declared single-byte codec.
MAX_BAD_SHARE = 0.001
# Share of the non-ASCII bytes tolerated as undecodable in a page read with a CJK codec: its
# characters are two bytes or more, so one stray byte is already a visible share of a short page.
MAX_CJK_BAD_SHARE = 0.05

# Multi-byte codecs of Chinese, Japanese and Korean pages (Python names, after normalise_codec).
CJK_CODECS = frozenset({
    "gb18030", "big5hkscs", "big5", "cp950", "cp932", "euc_jp", "euc_jis_2004", "euc_jisx0213",
    "shift_jis_2004", "shift_jisx0213", "cp949", "johab",
})
# A UTF-8 character of 3 or 4 bytes (strict: no surrogates, no overlong forms), one of 2 bytes.
_UTF8_WIDE = (rb"(?:[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xe0[\xa0-\xbf][\x80-\xbf]|\xed[\x80-\x9f][\x80-\xbf]"
              rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})")
_UTF8_NARROW = rb"[\xc2-\xdf][\x80-\xbf]"
# Wide UTF-8 characters in a row that mark a UTF-8 passage in a page of another codec.
MIN_UTF8_RUN = 4
UTF8_ANCHOR_RE = re.compile(_UTF8_WIDE + rb"{%d}" % MIN_UTF8_RUN)
# A quick test that may say yes wrongly (never no wrongly, for 3-byte characters): unrolled
# classes scan 43 KB in 0.17 ms, the exact anchor in 1.4 ms (it runs on every GBK page).
UTF8_HINT_RE = re.compile(rb"[\xe0-\xef][\x80-\xbf]{2}" * MIN_UTF8_RUN)
# The longest valid UTF-8 stretch from one wide character to another (ASCII and 2-byte ones between).
UTF8_STRETCH_RE = re.compile(_UTF8_WIDE + rb"(?:(?:[\x00-\x7f]|" + _UTF8_NARROW + rb")*" + _UTF8_WIDE + rb")*")
# What surrogateescape turns an undecodable byte into: counted, then shown as U+FFFD.
ESCAPED_RE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True)
class DecodeNote:
    """What decoding a page had to repair: bytes replaced, UTF-8 passages read as UTF-8."""

    codec: str
    replaced: int = 0  # undecodable bytes, each shown as U+FFFD
    utf8_bytes: int = 0  # bytes of UTF-8 passages in a page otherwise read with ``codec``

    def __str__(self) -> str:
        repairs = []
        if self.replaced:
            repairs.append(f"{self.replaced} undecodable byte{'s' * (self.replaced != 1)} replaced with U+FFFD")
        if self.utf8_bytes:
            repairs.append(f"{self.utf8_bytes} bytes of UTF-8 passages read as UTF-8")
        return f"decoded as {self.codec} with {' and '.join(repairs)}"


_NOTES: ContextVar[list | None] = ContextVar("pressarchive_decode_notes", default=None)


@contextmanager
def decode_notes():
    """Collect the :class:`DecodeNote` of pages decoded inside the block, instead of logging them.

    For callers that know the page's source and URL and log one line with them::

        with decode_notes() as notes:
            result = extraction.extract(body, url)
        for note in dict.fromkeys(notes):  # a page decoded twice gives the same note twice
            logger.warning("source %r: %s in %s", source_id, note, url)
    """
    notes: list[DecodeNote] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


@dataclass(frozen=True)
class _Decoded:
    text: str
    codec: str
    replaced: int = 0
    utf8_bytes: int = 0

    def note(self) -> DecodeNote | None:
        if not (self.replaced or self.utf8_bytes):
            return None
        return DecodeNote(self.codec, self.replaced, self.utf8_bytes)


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


def _replacing(body: bytes, codec: str) -> tuple[str, int] | None:
    """``body`` decoded with every undecodable byte as U+FFFD, and how many there were."""
    try:
        text = body.decode(codec, errors="surrogateescape")
    except LookupError:
        return None
    replaced = len(ESCAPED_RE.findall(text))
    return (ESCAPED_RE.sub("\ufffd", text) if replaced else text), replaced


def _bom(body: bytes) -> _Decoded | None:
    for mark, codec in BOMS:
        if body.startswith(mark):
            text, replaced = _replacing(body, codec)
            return _Decoded(text, codec.replace("-sig", ""), replaced)
    return None


def declared_charset(body: bytes) -> str | None:
    """The charset named by a ``<meta>`` tag near the top of the page, normalised."""
    match = META_CHARSET_RE.search(body[:DECLARATION_WINDOW])
    codec = normalise_codec(match.group(1).decode("ascii", "ignore")) if match else None
    # A <meta> naming UTF-16/32 was readable as ASCII, so it cannot be true (WHATWG).
    return "utf-8" if codec and codec.startswith(("utf-16", "utf-32")) else codec


def _looks_chinese(text: str) -> bool:
    return _share(text, HAN_RE) >= MIN_HAN_SHARE


def _share(text: str, pattern: re.Pattern) -> float:
    """Share of the non-ASCII characters of ``text`` (U+FFFD left out) that ``pattern`` matches."""
    non_ascii = [char for char in text if ord(char) > 127 and char != "\ufffd"]
    if not non_ascii:
        return 0.0
    return sum(1 for char in non_ascii if pattern.match(char)) / len(non_ascii)


def _non_ascii_bytes(body: bytes) -> int:
    return len(body) - len(body.translate(None, bytes(range(128, 256))))


def utf8_passages(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each UTF-8 passage: a valid UTF-8 stretch holding a run of wide characters."""
    if not UTF8_HINT_RE.search(body) or not UTF8_ANCHOR_RE.search(body):
        return []
    return [match.span() for match in UTF8_STRETCH_RE.finditer(body) if UTF8_ANCHOR_RE.search(match.group())]


def decode_mixed(body: bytes, codec: str) -> _Decoded | None:
    """``body`` read with ``codec``, its UTF-8 passages as UTF-8 and undecodable bytes as U+FFFD."""
    parts, position, replaced, utf8_bytes = [], 0, 0, 0
    for start, end in [*utf8_passages(body), (len(body), len(body))]:
        decoded = _replacing(body[position:start], codec)
        if decoded is None:
            return None
        parts += [decoded[0], body[start:end].decode("utf-8")]
        replaced += decoded[1]
        utf8_bytes += end - start
        position = end
    return _Decoded("".join(parts), codec, replaced, utf8_bytes)


def _mostly(body: bytes, codec: str, min_share: float, script: re.Pattern) -> _Decoded | None:
    """``body`` in the CJK ``codec`` if it reads most bytes and the text is mostly in ``script``."""
    decoded = decode_mixed(body, codec)
    if decoded is None:
        return None
    if decoded.replaced > MAX_CJK_BAD_SHARE * _non_ascii_bytes(body):
        return None
    return decoded if _share(decoded.text, script) >= min_share else None


def _nearly(body: bytes, codec: str | None) -> _Decoded | None:
    """`body` decoded with replacement if `codec` fails on only a few stray bytes."""
    decoded = _replacing(body, codec) if codec else None
    if decoded is None or decoded[1] > MAX_BAD_SHARE * len(body):
        return None
    return _Decoded(decoded[0], codec, decoded[1])


def _guess(body: bytes, declared: list[str | None]) -> _Decoded:
    """Bytes no codec decodes cleanly: nearly-UTF-8, mostly-declared, Chinese, then charset-normalizer."""
    decoded = _nearly(body, "utf-8")
    if decoded is not None:
        return decoded
    for codec in filter(None, declared):
        if codec in CJK_CODECS:
            decoded = _mostly(body, codec, MIN_HAN_SHARE, CJK_RE)
        else:
            decoded = _nearly(body, codec)
        if decoded is not None:
            return decoded
    decoded = _mostly(body, "gb18030", MIN_HAN_SHARE, HAN_RE)
    if decoded is not None:
        return decoded
    # imported late: slow import, rarely needed
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    if best is not None:
        codec = normalise_codec(best.encoding) or best.encoding
        text = _try_decode(body, codec)
        if text is not None:
            return _Decoded(text, codec)
    text, replaced = _replacing(body, "cp1252")
    return _Decoded(text, "cp1252", replaced)


def _decode(body: bytes, http_charset: str | None) -> _Decoded:
    bom = _bom(body)
    if bom:
        return bom
    if not body.isascii():
        text = _try_decode(body, "utf-8")
        if text is not None:
            return _Decoded(text, "utf-8")
    declared = [normalise_codec(http_charset), declared_charset(body)]
    for codec in declared:
        text = _try_decode(body, codec)
        if text is not None:
            if codec in CJK_CODECS and utf8_passages(body):
                # GB18030 reads a UTF-8 passage without an error, as nonsense Han characters.
                return decode_mixed(body, codec)
            return _Decoded(text, codec)
    if body.isascii():
        return _Decoded(body.decode("ascii"), "utf-8")
    logger.debug("charset declaration missing or wrong; guessing")
    return _guess(body, declared)


def decode_html(body: bytes, http_charset: str | None = None) -> tuple[str, str]:
    """Decode a fetched page; returns (text, Python codec name used).

    Repairs (bytes replaced, UTF-8 passages) are reported as a :class:`DecodeNote`:
    to the innermost :func:`decode_notes` block, or else as one warning line.
    """
    decoded = _decode(body, http_charset)
    note = decoded.note()
    if note is not None:
        collected = _NOTES.get()
        if collected is not None:
            collected.append(note)
        else:
            logger.warning("page %s", note)
    return decoded.text, decoded.codec

"""Raw capture: every HTTP exchange of the crawl written to WARC 1.1 files with warcio.

:class:`WarcWriter` writes one request and one response record per exchange
(gzip per record, ``WARC-Payload-Digest`` and ``WARC-Block-Digest``, the request
``WARC-Concurrent-To`` its response), opens each file with a ``warcinfo`` record,
and starts a new file once the current one passes ``max_size``. Files are named
``<prefix>-YYYYmmddTHHMMSSZ-NNNNN.warc.gz`` so their names sort by time. Each
exchange is built in memory and written with a single ``write`` + ``flush``, so a
crawl killed at any moment leaves files that ``warcio check`` still accepts.

:func:`read_record` gives back one response (status, headers, decoded body) from a
``(file, offset)`` location, for re-extraction without the network.

The crawl writes them through ``crawler/middlewares/warc.py``; re-extraction
(``archive/reextract.py``) reads them back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import datetime_to_iso_date
from warcio.warcwriter import WARCWriter

from archive import __version__

logger = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 1_000_000_000  # the writer's own default; a crawl passes WARC_MAX_SIZE
DEFAULT_PREFIX = "pressarchive"  # (a crawl passes WARC_PREFIX)
WARC_VERSION = "WARC/1.1"
# gzip level of each record's member. warcio uses 9, which spent more of the crawl's reactor
# time than fetching the page (benchmarks/crawl.py); 6 (zlib's default) is ~3x faster and the
# files ~2% larger. Any level is a valid gzip member for WARC readers.
GZIP_LEVEL = 6


class _GzipMember:
    def __init__(self, out):
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
        self.out = out

    def write(self, buff):
        self.out.write(self.compressor.compress(buff))

    def flush(self):
        self.out.write(self.compressor.flush())
        self.out.flush()


class _RecordWriter(WARCWriter):
    """warcio's writer with each record compressed at GZIP_LEVEL (one gzip member per record)."""

    def _write_warc_record(self, out, record):
        if not self.gzip:
            return super()._write_warc_record(out, record)
        self.gzip = False
        try:
            member = _GzipMember(out)
            super()._write_warc_record(member, record)
        finally:
            self.gzip = True


SOFTWARE = f"pressarchive/{__version__} (warcio/{version('warcio')})"
# Scrapy hands the middleware a de-chunked body; a kept "Transfer-Encoding: chunked"
# would make WARC readers try to de-chunk it again. The original value is kept
# under this name instead (the convention of pywb and other replay tools).
DROPPED_HEADERS = ("transfer-encoding",)
ORIGINAL_HEADER_PREFIX = "X-Archive-Orig-"

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class WarcLocation:
    """Where a response record lives: file name relative to the WARC folder, byte range."""

    file: str
    offset: int
    length: int

    def as_dict(self) -> dict:
        return asdict(self)


# --- writing -------------------------------------------------------------------------------


def _warc_date(when: datetime | None) -> str:
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None)
    return datetime_to_iso_date(when, use_micros=True)


def _archivable_headers(headers: Headers) -> Headers:
    kept = []
    for name, value in headers:
        if name.lower() in DROPPED_HEADERS:
            kept.append((ORIGINAL_HEADER_PREFIX + name, value))
        else:
            kept.append((name, value))
    return kept


def _request_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class WarcWriter:
    """Append HTTP exchanges to rotating, gzip-per-record WARC 1.1 files in ``folder``."""

    def __init__(self, folder: Path | str, max_size: int = DEFAULT_MAX_SIZE, prefix: str = DEFAULT_PREFIX,
                 info: dict | None = None):
        self.folder = Path(folder)
        self.max_size = max_size
        self.prefix = prefix
        self.info = {"software": SOFTWARE, "format": "WARC File Format 1.1",
                     "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
                     "hostname": socket.gethostname(), "robots": "obey", **(info or {})}
        self.bytes_written = 0
        self.records = 0  # response records
        self.files: list[str] = []
        self._records = _RecordWriter(None, gzip=True, warc_version=WARC_VERSION)
        self._file = None
        self._name: str | None = None
        self._warcinfo_id: str | None = None
        self._serial = 0

    # files ---------------------------------------------------------------------------

    def _open_next(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        while True:
            self._serial += 1
            name = f"{self.prefix}-{stamp}-{self._serial:05d}.warc.gz"
            try:
                # never append to another run's file; it stays open until the next file
                # unbuffered: a record is one write, and a write that fails (a full disk) leaves
                # nothing behind in a buffer to be written later, after other records
                self._file = open(self.folder / name, "xb", buffering=0)  # noqa: SIM115
                break
            except FileExistsError:
                continue
        self._name = name
        self.files.append(name)
        warcinfo = self._records.create_warcinfo_record(name, self.info)
        self._warcinfo_id = warcinfo.rec_headers.get_header("WARC-Record-ID")
        self._write(self._serialise(warcinfo))

    def _serialise(self, *records) -> bytes:
        buffer = io.BytesIO()
        self._records.out = buffer
        for record in records:
            self._records.write_record(record)
        return buffer.getvalue()

    def _write(self, data: bytes) -> int:
        """Append ``data`` (whole gzip members); a killed crawl loses at most the exchange being
        written. A write that fails (a full disk) is cut off again, so the file holds whole records
        only, and the error goes to the caller."""
        offset = self._file.tell()
        try:
            view = memoryview(data)
            while view:
                view = view[self._file.write(view):]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), offset)
                self._file.seek(offset)
            raise
        self.bytes_written += len(data)
        return offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> WarcWriter:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # records -------------------------------------------------------------------------

    def write_exchange(
        self,
        url: str,
        request_headers: Headers,
        request_method: str,
        response_status: int,
        response_reason: str | None,
        response_headers: Headers,
        body: bytes,
        http_version: str = "HTTP/1.1",
        *,
        date: datetime | None = None,
        ip_address: str | None = None,
    ) -> WarcLocation:
        """Write one response record and its request record; return the response's location."""
        if self._file is None or self._file.tell() >= self.max_size:
            self.close()
            self._open_next()
        warc_date = _warc_date(date)
        extra = {"WARC-Date": warc_date, "WARC-Warcinfo-ID": self._warcinfo_id}
        if ip_address:
            extra["WARC-IP-Address"] = ip_address
        reason = response_reason or _reason(response_status)
        response = self._records.create_warc_record(
            url, "response", payload=io.BytesIO(body), length=len(body), warc_headers_dict=extra,
            http_headers=StatusAndHeaders(f"{response_status} {reason}", _archivable_headers(response_headers),
                                          protocol=http_version),
        )
        request_headers = list(request_headers)
        if not any(name.lower() == "host" for name, _ in request_headers):
            request_headers.insert(0, ("Host", urlsplit(url).netloc))
        request = self._records.create_warc_record(
            url, "request", warc_headers_dict={
                "WARC-Date": warc_date, "WARC-Warcinfo-ID": self._warcinfo_id,
                "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
            },
            http_headers=StatusAndHeaders(f"{request_method} {_request_target(url)} {http_version}",
                                          request_headers, is_http_request=True),
        )
        response_bytes = self._serialise(response)
        offset = self._write(response_bytes + self._serialise(request))
        self.records += 1
        return WarcLocation(self._name, offset, len(response_bytes))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# --- reading -------------------------------------------------------------------------------


def _decode_content(body: bytes, encoding: str | None) -> bytes:
    """Undo Content-Encoding (gzip, deflate, br and zstd when their modules are installed)."""
    for coding in reversed([c.strip().lower() for c in (encoding or "").split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip"):
            body = zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(body)
        elif coding == "deflate":
            try:
                body = zlib.decompress(body)
            except zlib.error:  # raw deflate, as some servers send it
                body = zlib.decompress(body, -zlib.MAX_WBITS)
        elif coding == "br":
            import brotli

            body = brotli.decompress(body)
        elif coding == "zstd":
            import zstandard

            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        elif coding != "identity":
            raise ValueError(f"unsupported Content-Encoding {coding!r}")
    return body


def _response(record) -> tuple[int, Headers, bytes]:
    http = record.http_headers
    headers = list(http.headers)
    raw = record.raw_stream.read()
    if (http.get_header("Transfer-Encoding") or "").lower() == "chunked":
        from warcio.bufferedreaders import ChunkedDataReader

        raw = ChunkedDataReader(io.BytesIO(raw)).read()
    return int(http.get_statuscode()), headers, _decode_content(raw, http.get_header("Content-Encoding"))


def _safe_path(folder: Path | str, file: str) -> Path:
    folder = Path(folder).resolve()
    path = (folder / file).resolve()
    if folder not in path.parents:
        raise ValueError(f"WARC file {file!r} is outside {folder}")
    return path


def read_record(folder: Path | str, file: str, offset: int) -> tuple[int, Headers, bytes]:
    """The response stored at ``offset`` of ``folder/file``: (status, headers, decoded body).

    The body has chunked transfer and Content-Encoding undone: the bytes an extractor
    wants. The headers are the archived ones (``Content-Encoding`` still listed).
    """
    with open(_safe_path(folder, file), "rb") as stream:
        stream.seek(offset)
        record = next(iter(ArchiveIterator(stream)), None)
        if record is None or record.rec_type != "response":
            kind = record.rec_type if record is not None else "nothing"
            raise ValueError(f"{file} at offset {offset} holds {kind}, not a response record")
        return _response(record)


@dataclass
class StoredResponse:
    url: str
    date: str
    location: WarcLocation
    status: int
    headers: Headers
    body: bytes  # decoded, as read_record gives it


def iter_records(path: Path | str) -> Iterator[StoredResponse]:
    """Every response record of one WARC file, in order."""
    path = Path(path)
    with open(path, "rb") as stream:
        iterator = ArchiveIterator(stream)
        for record in iterator:
            if record.rec_type != "response":
                continue
            status, headers, body = _response(record)
            offset = iterator.get_record_offset()
            iterator.read_to_end(record)
            yield StoredResponse(
                url=record.rec_headers.get_header("WARC-Target-URI"),
                date=record.rec_headers.get_header("WARC-Date"),
                location=WarcLocation(path.name, offset, iterator.get_record_length()),
                status=status, headers=headers, body=body,
            )


class CaptureUnreadable(ValueError):
    """The bytes at a WARC location are not a readable response record (a wrong offset, a
    truncated or corrupted file, an encoding this install cannot undo)."""


def read_capture(folder: Path | str, file: str, offset: int) -> StoredResponse:
    """The response stored at ``offset`` of ``folder/file``, with its target URI and WARC date.

    What the site serves as a release's archived original. Raises ``FileNotFoundError``
    when the file is not in ``folder`` (moved, or never copied along with the archive) and
    :class:`CaptureUnreadable` for anything else that keeps the record from being read,
    ``file`` naming a path outside ``folder`` included: one exception for a caller to
    turn into a message, whatever warcio, zlib or the file system raised.
    """
    try:
        path = _safe_path(folder, file)
    except ValueError as error:
        raise CaptureUnreadable(str(error)) from None
    if not path.is_file():
        raise FileNotFoundError(f"WARC file {file} is not in {Path(folder)}")
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            iterator = ArchiveIterator(stream)
            record = next(iter(iterator), None)
            if record is None or record.rec_type != "response":
                kind = record.rec_type if record is not None else "nothing"
                raise CaptureUnreadable(f"{file} at offset {offset} holds {kind}, not a response record")
            status, headers, body = _response(record)
            iterator.read_to_end(record)
            return StoredResponse(
                url=record.rec_headers.get_header("WARC-Target-URI"),
                date=record.rec_headers.get_header("WARC-Date"),
                location=WarcLocation(file, offset, iterator.get_record_length()),
                status=status, headers=headers, body=body,
            )
    except CaptureUnreadable:
        raise
    except Exception as error:  # noqa: BLE001 - bytes at a bad offset make warcio fail in many ways
        # (OSError, zlib.error, ArchiveLoadFailed, a parser error, or an AttributeError on a record
        # without HTTP headers): all of them mean the same, there is no record here
        raise CaptureUnreadable(f"{file} at offset {offset}: not a readable response record "
                                f"({type(error).__name__}: {error})") from None


# --- Scrapy ----------------------------------------------------------------------------------

"""``pressarchive watch``: saved searches, and the delivery of their entries by webhook and email.

The entries themselves are computed in :mod:`archive.watches` (``watch run``, and after every
crawl: :func:`after_crawl`). Here they are sent, each channel of each watch on its own:

* **webhook**: one JSON POST per watch and run with its pending entries (each with a stable
  ``id``), tried ``PRESSARCHIVE_WEBHOOK_ATTEMPTS`` times with exponential backoff
  (``PRESSARCHIVE_WEBHOOK_BACKOFF`` seconds, doubled each time). A 2xx answer delivers them;
  anything else (an error status, a redirect, which is never followed, a timeout, a refused
  connection) leaves them pending and marks the channel ``failing`` with the error.
  The address goes through the crawl's private-address policy (crawler/middlewares/ssrf.py):
  http(s) only; the operator wrote the URL, so its own origin may be a loopback or private
  address, as a source's configured origin may; link-local (cloud metadata), multicast and
  unspecified addresses are refused; the connection goes to the address that was vetted.
* **email**: one digest per watch and run over SMTP (``PRESSARCHIVE_SMTP_HOST``, ``_PORT``
  587, ``_USER``, ``_PASSWORD``, ``_FROM``, ``_STARTTLS`` 1 by default: STARTTLS is required
  before login), UTF-8 throughout.

Delivery never fails or blocks a crawl for long: each channel of a watch has
``PRESSARCHIVE_DELIVERY_BUDGET`` seconds (every attempt and wait included), errors are
recorded (``watch list``, ``status``) and the entries are tried again next run.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from pathlib import Path

import click

from crawler.cli.options import check_db, db_option, fail, sources_option

EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+$")
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
MAX_URL_CHARS = 2048


def _settings():
    from crawler import settings

    return settings


# -- checks of what the user typed ---------------------------------------------------------------


def webhook_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (scheme, host, port, characters), or None."""
    from crawler.middlewares.ssrf import SCHEMES, origin_of

    if len(url) > MAX_URL_CHARS or any(ord(c) < 33 or c == "\x7f" for c in url):
        return f"bad webhook URL {url[:80]!r}: at most {MAX_URL_CHARS} characters, no spaces or control characters"
    origin = origin_of(url)
    if origin is None or origin.scheme not in SCHEMES:
        return f"bad webhook URL {url!r}: an http:// or https:// URL with a host is needed"
    return None


def _statement_types() -> set[str]:
    from archive.statement_type import TITLE_RULES, URL_RULES

    return {name for name, _ in TITLE_RULES} | {name for name, _ in URL_RULES} | {"other"}


def _check_filters(db, sources_file, source_ids, languages, types) -> None:
    if source_ids:
        from archive.watches import archive_source_ids
        from crawler.sources import SourceError, load_sources

        known = archive_source_ids(db)
        try:
            known |= {source.id for source in load_sources(sources_file)}
        except SourceError:
            pass  # the archive's sources still count
        unknown = [s for s in source_ids if s not in known]
        if unknown:
            fail(f"unknown source {unknown[0]!r}: not in the archive nor in the registry "
                 "(`pressarchive sources` lists them)")
    for language in languages:
        if not LANGUAGE.match(language):
            fail(f"bad --language {language!r}: a language code such as en, zh or zh-CN")
    kinds = _statement_types()
    for kind in types:
        if kind not in kinds:
            fail(f"unknown --type {kind!r}: one of {', '.join(sorted(kinds))}")


def _open(db_path: Path, create: bool = False):
    from archive.schema import open_archive

    check_db(db_path, write=True, create=create)
    try:
        return open_archive(db_path)
    except sqlite3.Error as exc:
        fail(f"cannot open the archive {db_path}: {exc}")


# -- commands ------------------------------------------------------------------------------------


@click.group("watch")
def watch_group():
    """Saved searches: their new, edited and removed matches after every crawl, as Atom feeds
    (`pressarchive serve`), webhooks and email digests."""


@watch_group.command("add")
@click.argument("name")
@click.argument("query")
@click.option("--source", "source_ids", multiple=True, metavar="ID", help="Only releases of this source (repeatable).")
@click.option("--language", "languages", multiple=True, metavar="L",
              help="Only releases in this language, e.g. en or zh (zh also matches zh-CN; repeatable).")
@click.option("--type", "types", multiple=True, metavar="T",
              help="Only this statement type, e.g. statement, readout, joint_statement (repeatable).")
@click.option("--webhook", metavar="URL", help="POST each run's new entries as JSON to this http(s) URL.")
@click.option("--email", metavar="ADDR", help="Mail each run's new entries as one digest to this address (SMTP "
                                              "settings from PRESSARCHIVE_SMTP_* environment variables).")
@sources_option
@db_option()
def add_command(name, query, source_ids, languages, types, webhook, email, sources_file, db_path):
    """Save QUERY (the search box's language: words, "phrases", OR, -word, prefix*, Chinese) as the
    watch NAME. From the next crawl on, releases that newly match, and edits and removals of
    releases that match, become its entries. A QUERY that starts with "-" goes after "--":
    `watch add NAME --db archive.db -- "-draft dialogue"`."""
    from archive.clock import now_iso
    from archive.watches import Watch, WatchError, add_watch

    if webhook is not None and webhook_problem(webhook):
        fail(webhook_problem(webhook))
    if email is not None and not EMAIL.match(email):
        fail(f"bad --email {email!r}: one address such as analyst@example.org")
    db = _open(db_path, create=True)
    try:
        _check_filters(db, sources_file, source_ids, languages, types)
        watch = add_watch(db, Watch(name, query, list(dict.fromkeys(source_ids)), list(dict.fromkeys(languages)),
                                    list(dict.fromkeys(types)), webhook, email), now_iso())
    except WatchError as exc:
        fail(str(exc))
    finally:
        db.close()
    channels = ", ".join(watch.channels()) or "no delivery channel: its Atom feed only"
    click.echo(f"watch {watch.name} added ({channels})")


@watch_group.command("list")
@db_option(help="SQLite archive file.")
def list_command(db_path):
    """The watches: name, query, filters, entries by kind, and each channel's last delivery."""
    from archive.watches import all_watches, deliveries, entry_counts

    db = _open(db_path)
    try:
        watches = all_watches(db)
        for watch in watches:
            counts = entry_counts(db, watch.name)
            click.echo(f"{watch.name}: {watch.query}")
            if watch.filters():
                click.echo(f"  filters: {watch.filters()}")
            click.echo(f"  entries: {counts['new']} new, {counts['changed']} changed, {counts['removed']} removed"
                       f"; last run {watch.last_run or 'never'}")
            for row in deliveries(db, watch.name):
                target = watch.webhook if row["channel"] == "webhook" else watch.email
                click.echo(f"  {row['channel']} {target}: {delivery_line(row)}")
    finally:
        db.close()
    click.echo(f"{len(watches)} watches", err=True)


def delivery_line(row: dict) -> str:
    """``ok, last delivery 2026-...; 0 pending`` or ``FAILING since ...: the error; 3 pending``."""
    pending = f"{row['pending']} pending"
    if row["status"] == "failing":
        return (f"FAILING ({row['attempts']} failed attempts, last {row['last_attempt']}): {row['last_error']}; "
                f"last delivery {row['last_success'] or 'never'}; {pending}")
    return f"{row['status'] or 'not tried yet'}, last delivery {row['last_success'] or 'never'}; {pending}"


@watch_group.command("remove")
@click.argument("name")
@db_option(help="SQLite archive file.")
def remove_command(name, db_path):
    """Delete the watch NAME, its entries and its delivery state (releases are never touched)."""
    from archive.watches import WatchError, remove_watch

    db = _open(db_path)
    try:
        entries = remove_watch(db, name)
    except WatchError as exc:
        fail(str(exc))
    finally:
        db.close()
    click.echo(f"watch {name} removed ({entries} entries)")


@watch_group.command("run")
@db_option(help="SQLite archive file.")
def run_command(db_path):
    """Compute every watch's entries now and deliver the pending ones (as after a crawl).
    Exit code 1 when a delivery channel failed (its entries stay pending for the next run)."""
    db = _open(db_path)
    db.close()
    failed = run_and_deliver(db_path, echo=click.echo)
    raise SystemExit(1 if failed else 0)


# -- running and delivering ----------------------------------------------------------------------


def after_crawl(db_path) -> None:
    """Run the watches after a crawl; any error is one line on stderr, never the crawl's failure."""
    from archive.watches import any_watch

    if not any_watch(db_path):
        return
    try:
        run_and_deliver(db_path, echo=click.echo)
    except Exception as exc:  # noqa: BLE001 - the crawl's result stands whatever happens here
        click.echo(f"Error: watches not run: {exc}", err=True)


def run_and_deliver(db_path, echo=None) -> int:
    """Compute the entries of every watch, then deliver each channel's pending ones; return how
    many channels failed. ``echo``: prints one line per watch with news or a delivery."""
    from archive.clock import now_iso
    from archive.schema import open_archive
    from archive.search_index import ensure_search
    from archive.watches import all_watches, has_watches, run_watches

    echo = echo or (lambda line, err=False: None)
    db = open_archive(db_path)
    try:
        if not has_watches(db):
            return 0
        ensure_search(db)  # (up to date after a crawl: a quick look)
        counts = run_watches(db, now_iso())
        failed = 0
        for watch in all_watches(db):
            news = counts.get(watch.name, {})
            sent = {channel: deliver(db, watch, channel) for channel in watch.channels()}
            sent = {channel: result for channel, result in sent.items() if result != 0}  # (nothing pending)
            failed += sum(1 for result in sent.values() if isinstance(result, str))
            if any(news.values()) or sent:
                echo(f"watch {watch.name}: {news.get('new', 0)} new, {news.get('changed', 0)} changed, "
                     f"{news.get('removed', 0)} removed" + "".join(
                         f"; {channel} " + (f"FAILED: {r}" if isinstance(r, str) else f"{r} entries delivered")
                         for channel, r in sent.items()))
        return failed
    finally:
        db.close()


def deliver(db, watch, channel: str) -> int | str:
    """Send a watch's pending entries on one channel: the number delivered, or the error (a str)."""
    from archive.clock import now_iso
    from archive.watches import pending_entries, record_failure, record_success

    settings = _settings()
    entries = pending_entries(db, watch.name, channel, settings.PRESSARCHIVE_DELIVERY_MAX_ENTRIES)
    if not entries:
        return 0
    deadline = time.monotonic() + settings.PRESSARCHIVE_DELIVERY_BUDGET
    send = send_webhook if channel == "webhook" else send_email
    attempts, error = send(watch, entries, deadline)
    if error is None:
        record_success(db, watch.name, channel, entries[-1]["id"], now_iso())
        return len(entries)
    record_failure(db, watch.name, channel, attempts, error, now_iso())
    return error


class DeliveryError(Exception):
    """A channel that could not deliver; the message says why, in one line."""


def send_webhook(watch, entries, deadline: float) -> tuple[int, str | None]:
    """POST the entries, with retries and backoff within the deadline: (attempts, error or None)."""
    from archive.watches import webhook_payload

    settings = _settings()
    body = json.dumps(webhook_payload(watch, entries), ensure_ascii=False).encode("utf-8")
    wait, attempts, error = settings.PRESSARCHIVE_WEBHOOK_BACKOFF, 0, "no attempt within the time budget"
    while attempts < settings.PRESSARCHIVE_WEBHOOK_ATTEMPTS:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        attempts += 1
        try:
            post_json(watch.webhook, body, min(settings.PRESSARCHIVE_DELIVERY_TIMEOUT, left))
            return attempts, None
        except DeliveryError as exc:
            error = str(exc)
            if isinstance(exc, Refused):
                break  # the address will not change within the run
        if attempts < settings.PRESSARCHIVE_WEBHOOK_ATTEMPTS:
            if time.monotonic() + wait >= deadline:
                break
            time.sleep(wait)
            wait *= 2
    return attempts, error


class Refused(DeliveryError):
    """The webhook's address is one the private-address policy refuses."""


def vetted_address(url: str) -> tuple[str, int, str]:
    """(address to connect to, port, host name) for ``url``, after the private-address policy."""
    import ipaddress

    from crawler.middlewares.ssrf import (
        Origins,
        known_address,
        non_public_reason,
        origin_of,
    )

    problem = webhook_problem(url)
    if problem:
        raise Refused(problem)
    origin = origin_of(url)
    address = known_address(origin.host)
    if address is None:
        try:
            infos = socket.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DeliveryError(f"cannot resolve {origin.host}: {exc}") from None
        address = ipaddress.ip_address(infos[0][4][0].split("%", 1)[0])
        address = getattr(address, "ipv4_mapped", None) or address
    reason = non_public_reason(address)
    trusted = Origins()
    trusted.add(origin)  # the operator wrote this origin: it may be loopback or private, as a source's may
    if reason and (address.is_link_local or address.is_multicast or address.is_unspecified
                   or not trusted.admit(origin, address)):
        raise Refused(f"refused {url}: {origin.host} is a {reason}")
    return str(address), origin.port, origin.host


def post_json(url: str, body: bytes, timeout: float) -> None:
    """One POST of ``body`` to ``url`` at its vetted address; DeliveryError unless it answers 2xx."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    from crawler import __version__

    address, port, host = vetted_address(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context()

        class Pinned(http.client.HTTPSConnection):
            def connect(self):  # to the vetted address, with the host's name for SNI and the certificate
                sock = socket.create_connection((address, port), self.timeout)
                self.sock = context.wrap_socket(sock, server_hostname=host)

        connection = Pinned(host, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    headers = {"Host": netloc, "Content-Type": "application/json; charset=utf-8",
               "User-Agent": f"pressarchive/{__version__} (watch webhook)"}
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"POST {url}: {exc or type(exc).__name__}") from None
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        where = response.getheader("Location")
        raise DeliveryError(f"POST {url}: HTTP {response.status}"
                            + (f" (redirect to {where} not followed)" if where else ""))


def send_email(watch, entries, deadline: float) -> tuple[int, str | None]:
    """One digest over SMTP: (1, error or None)."""
    import smtplib
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    from archive.watches import digest_subject, digest_text

    env = os.environ
    host = env.get("PRESSARCHIVE_SMTP_HOST")
    if not host:
        return 0, "PRESSARCHIVE_SMTP_HOST is not set"
    try:
        port = int(env.get("PRESSARCHIVE_SMTP_PORT") or 587)
    except ValueError:
        return 0, f"PRESSARCHIVE_SMTP_PORT is not a number: {env.get('PRESSARCHIVE_SMTP_PORT')!r}"
    user, password = env.get("PRESSARCHIVE_SMTP_USER"), env.get("PRESSARCHIVE_SMTP_PASSWORD")
    starttls = env.get("PRESSARCHIVE_SMTP_STARTTLS", "1") not in ("0", "false", "no", "")
    message = EmailMessage()
    message["Subject"] = digest_subject(watch.name, entries)
    message["From"] = env.get("PRESSARCHIVE_SMTP_FROM") or user or "pressarchive@localhost"
    message["To"] = watch.email
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid("pressarchive")
    message.set_content(digest_text(watch, entries), charset="utf-8")
    timeout = max(0.1, min(_settings().PRESSARCHIVE_DELIVERY_TIMEOUT, deadline - time.monotonic()))
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            smtp.ehlo()
            if starttls:
                smtp.starttls()
                smtp.ehlo()
            if user:
                smtp.login(user, password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        return 1, f"SMTP {host}:{port}: {exc or type(exc).__name__}"
    return 1, None

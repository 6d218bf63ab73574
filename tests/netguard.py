"""Network guard: no test sends a packet outside loopback.

A pytest plugin (``pytest_plugins = ["netguard"]`` in ``tests/conftest.py``) that,
for the whole session, wraps ``socket.socket.connect``, ``connect_ex`` and
``sendto``: a connection or datagram to an address outside 127.0.0.0/8 and ::1
(IPv4-mapped ``::ffff:127.x.x.x`` included) raises :class:`OutsideLoopback`
before the system call, so no packet leaves. ``AF_UNIX`` and other local
families pass. A host *name* other than ``localhost`` is refused too: connecting
to it would ask DNS first.

The error is a ``PermissionError`` (errno EACCES) so that Twisted and asyncio
treat it as a failed connection instead of crashing; a crawl would then just
log an error and go on. So every refusal is also recorded, and the test during
which it happened fails at teardown, whatever the code under test did with the
exception.

Child processes (the CLI crawls) are not covered by the plugin itself; a child
can call :func:`install` first, as ``tests/test_origins.py`` does, and report
:data:`violations` at exit.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest

#: Every refused attempt of this process: (what was called, the address).
violations: list[tuple[str, object]] = []

_originals: dict[str, object] = {}


class OutsideLoopback(PermissionError):
    """A connect or send to an address outside loopback, refused by the test network guard."""


def is_loopback(address) -> bool:
    """True for an (host, port, ...) tuple whose host is a loopback address or ``localhost``."""
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%", 1)[0]
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: connecting would resolve it first
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback


def _check(sock, call: str, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX, netlink...: no packet on the network
    if not is_loopback(address):
        violations.append((call, address))
        raise OutsideLoopback(errno.EACCES, f"netguard: tests must not reach {address!r} ({call}); "
                                            "only 127.0.0.0/8 and ::1")


def _guarded_connect(self, address):
    _check(self, "connect", address)
    return _originals["connect"](self, address)


def _guarded_connect_ex(self, address):
    _check(self, "connect_ex", address)
    return _originals["connect_ex"](self, address)


def _guarded_sendto(self, data, *args):
    _check(self, "sendto", args[-1] if args else None)
    return _originals["sendto"](self, data, *args)


def install() -> None:
    """Wrap the socket methods (idempotent)."""
    if _originals:
        return
    for name, guarded in (("connect", _guarded_connect), ("connect_ex", _guarded_connect_ex),
                          ("sendto", _guarded_sendto)):
        _originals[name] = getattr(socket.socket, name)
        setattr(socket.socket, name, guarded)


def uninstall() -> None:
    for name, original in _originals.items():
        setattr(socket.socket, name, original)
    _originals.clear()


def pytest_configure(config):
    install()


def pytest_unconfigure(config):
    uninstall()


@pytest.fixture(autouse=True)
def _no_packet_outside_loopback():
    """Fail the test if anything it ran tried to reach beyond loopback (even if that error was swallowed)."""
    before = len(violations)
    yield
    new = violations[before:]
    if new:
        del violations[before:]
        pytest.fail(f"netguard: the test tried to reach outside loopback: {new}", pytrace=False)

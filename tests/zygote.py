"""A pre-started Python for the suite's Python children (conftest.py: run_cli, run_child, start_child).

Every crawl a test runs is a child process (Twisted's reactor cannot restart inside pytest),
and each child spent about a second of CPU importing Scrapy, Twisted, numpy, lxml and the rest
before running a line of the product. This module is a small server (one per pytest-xdist
worker) that imports those **third-party** libraries once and then forks: each fork becomes the
child ``python -m MODULE ...``, ``python -c CODE ...`` or a console script would have been,
with the test's arguments, working folder, environment and stdin/stdout/stderr (passed over a
Unix socket), and the product's own modules (``crawler``, ``pipelines``, ``archive``) imported
fresh in the child, from the same ``sys.path`` a real child has, so that module-level settings
read the child's environment. The fork's exit status comes back as a real process's would
(``-N`` when killed by signal N): run to the end (``Zygote.run``, like ``subprocess.run``) or
started (``Zygote.popen``, a :class:`ForkedProcess` used like ``subprocess.Popen``: pipes, signals,
a new session). The preloaded objects are frozen (``gc.freeze``: a fork's collections skip them),
and each fork keeps two spare forks that become the ``python -c`` children multiprocessing starts
later (the cleaning pool's forkserver and resource tracker: :func:`_keep_spares`). Measured: about
0.7 CPU-s less a child, and 8 demo crawls 17.6-18.1 -> 11.0-13.8 CPU-s with the frozen objects and
spares. The product code under test is unchanged; tests that exercise how a process starts
(terminals, another user, another ``PYTHONPATH``) keep starting real ones.

Preloading is checked: the server refuses to start if a preloaded library imported the
product, installed Twisted's reactor or started a thread (a fork keeps only the calling
thread).
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import sys

# What a crawl imports from outside the product (measured from sys.modules at the end of
# `pressarchive demo`); importing them here is what the forks save.
PRELOAD = (
    "scrapy", "scrapy.crawler", "scrapy.core.engine", "scrapy.core.scraper", "scrapy.core.downloader",
    "scrapy.core.downloader.handlers.http11", "scrapy.core.downloader.contextfactory", "scrapy.http",
    "scrapy.spiders", "scrapy.linkextractors", "scrapy.robotstxt", "scrapy.extensions.logstats",
    "scrapy.downloadermiddlewares.robotstxt", "scrapy.utils.log", "scrapy.settings", "twisted.web.client",
    "twisted.internet.asyncioreactor", "twisted.internet.endpoints", "numpy", "sqlite_utils", "lxml.html",
    "lxml.etree", "parsel", "w3lib.html", "tldextract", "warcio", "warcio.archiveiterator",
    "warcio.warcwriter", "click", "dateutil.parser", "protego", "multiprocessing.forkserver",
    "concurrent.futures.process", "jmespath", "itemadapter", "email.utils", "http.cookiejar",
    # and what the cleaning pool's forkserver imports (it is a spare fork too: _keep_spares)
    "trafilatura", "justext", "htmldate", "courlan", "babel", "re2", "tld", "lxml_html_clean", "difflib",
)
PRODUCT = ("crawler", "pipelines", "archive")
HEADER = struct.Struct("!I")


def preload() -> None:
    import importlib
    import threading

    import netguard  # noqa: F401  (tests/netguard.py: installed in every fork)

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library: the child imports what it needs itself
            pass
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in PRODUCT)
    problems = []
    if leaked:
        problems.append(f"the preload imported the product: {leaked[:5]}")
    if "twisted.internet.reactor" in sys.modules:
        problems.append("the preload installed Twisted's reactor")
    if threading.active_count() != 1:
        problems.append(f"the preload started threads: {threading.enumerate()}")
    if problems:
        raise SystemExit("tests/zygote.py: " + "; ".join(problems))


def serve(path: str) -> None:
    """Accept requests on the Unix socket ``path`` until stdin closes (the test worker ended)."""
    import selectors

    preload()
    import gc

    gc.freeze()  # the preloaded objects: never collected in a fork, and never touched by its collections
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    server_pid = os.getpid()
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select(timeout=0.02):
            if key.fileobj is sys.stdin:
                if not sys.stdin.readline():  # the worker is gone: so are we
                    return
                continue
            conn, _ = listener.accept()
            request, fds = _receive(conn)
            pid = os.fork()
            if pid == 0:
                selector.close()
                listener.close()
                for other in children.values():  # the other children's connections are not this one's
                    other.close()
                _become_child(request, fds, conn)  # never returns: the child exits like a process
            for fd in fds:
                os.close(fd)
            conn.sendall(HEADER.pack(pid))
            children[pid] = conn
        assert os.getpid() == server_pid
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn = children.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(struct.pack("!i", code))
                except OSError:  # a started process nobody waited for (Popen left to the garbage collector)
                    pass
                conn.close()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data, ancdata, _, _ = conn.recvmsg(1 << 20, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    size = HEADER.unpack(data[:HEADER.size])[0]
    body = data[HEADER.size:]
    while len(body) < size:
        body += conn.recv(size - len(body))
    return json.loads(body), list(fds)


def _become_child(request: dict, fds: list[int], conn: socket.socket) -> None:
    """Turn this fork into ``python ARGV`` (``-m MODULE ...``, ``-c CODE ...`` or ``SCRIPT ...``)
    run from ``cwd`` with ``env``."""
    import io
    import runpy

    conn.close()
    if request.get("session"):
        os.setsid()  # Popen(start_new_session=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=encoding)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=encoding, write_through=False)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=encoding, errors="backslashreplace",
                                  line_buffering=True)
    sys.__stdout__, sys.__stderr__, sys.__stdin__ = sys.stdout, sys.stderr, sys.stdin
    _guard(request["violations"])
    _keep_spares()
    # SystemExit, an uncaught exception or KeyboardInterrupt leaves this fork as it leaves a real
    # Python: the interpreter prints the traceback, runs atexit handlers, sets the status.
    argv = request["argv"]
    if argv[0] == "-m":  # python -m MODULE ARGS
        sys.argv, sys.path[0] = [argv[1], *argv[2:]], os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":  # python -c CODE ARGS
        import types

        sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)  # noqa: S102  (what python -c does)
    else:  # a console script: python SCRIPT ARGS
        sys.argv, sys.path[0] = list(argv), os.path.dirname(argv[0])
        runpy.run_path(argv[0], run_name="__main__")
    sys.exit(0)


# Spare processes for the Python children multiprocessing starts with spawnv_passfds (the cleaning
# pool's forkserver and resource tracker).
SPARES = 2


def _keep_spares(count: int = SPARES) -> None:
    """Fork ``count`` spares now, while this fork is single-threaded, and let multiprocessing's
    ``python -c CODE`` children (the cleaning pool's forkserver and its resource tracker, started
    later by a crawl whose reactor has threads) be one of them instead of a new ``python``: the same
    code, fds and folder, without importing the libraries again. A spare nobody asked for leaves when
    this process does."""
    from multiprocessing import util

    spares: list[tuple[int, socket.socket]] = []
    for _ in range(count):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            for _pid, other in spares:
                other.close()
            _spare(theirs)  # never returns
        theirs.close()
        spares.append((pid, ours))
    original = util.spawnv_passfds

    def spawnv_passfds(path, args, passfds):
        # python [this interpreter's flags, which the spare has] -c CODE
        if not spares or not _this_python(os.fsdecode(path)) or len(args) < 3 or args[-2] != "-c" \
                or list(args[1:-2]) != util._args_from_interpreter_flags():
            return original(path, args, passfds)
        pid, conn = spares.pop(0)
        passfds = sorted(map(int, passfds))
        body = json.dumps({"code": args[-1], "fds": passfds, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        try:
            conn.sendmsg([HEADER.pack(len(body)) + body],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", passfds))] if passfds else [])
        except OSError:
            return original(path, args, passfds)
        finally:
            conn.close()
        return pid

    util.spawnv_passfds = spawnv_passfds


def _spare(conn: socket.socket) -> None:
    """Wait to become ``python -c CODE`` with the given fds at their numbers (as ``spawnv_passfds``
    leaves them: those and 0, 1, 2 open, every other one closed); leave at once if not asked."""
    import fcntl
    import types

    try:
        request, fds = _receive(conn)
    except (OSError, ValueError, struct.error):
        os._exit(0)
    conn.close()
    targets = request["fds"]
    high = max([*targets, *fds, 2]) + 1
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, high) for fd in fds]
    for fd in fds:
        os.close(fd)
    for fd, target in zip(moved, targets):
        os.dup2(fd, target, inheritable=False)
    keep = sorted({0, 1, 2, *targets})
    for low, next_kept in zip(keep, [*keep[1:], os.sysconf("SC_OPEN_MAX")]):
        os.closerange(low + 1, next_kept)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv, sys.path[0] = ["-c"], ""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    exec(compile(request["code"], "<string>", "exec"), main.__dict__)  # noqa: S102  (what python -c does)
    sys.exit(0)


def python_argv(command: list[str]) -> list[str] | None:
    """What follows the interpreter in ``command`` when a fork of this Python can run it: ``python
    -m ...``, ``python -c ...``, or a console script of this Python (its ``#!`` line names this
    interpreter); None otherwise."""
    command = [os.fspath(part) for part in command]
    if not command:
        return None
    if _this_python(command[0]):
        return list(command[1:]) if len(command) > 2 and command[1] in ("-m", "-c") else None
    try:
        with open(command[0], "rb") as script:
            first = script.readline(512)
    except OSError:
        return None
    if first.startswith(b"#!") and _this_python(first[2:].decode(errors="replace").strip()):
        return [command[0], *command[1:]]
    return None


def _this_python(path: str) -> bool:
    """A ``python*`` of this environment's bin folder (a venv's python links to the same binary as
    another venv's: the folder tells them apart)."""
    here = os.path.dirname(os.path.abspath(sys.executable))
    return os.path.dirname(os.path.abspath(path)) == here and os.path.basename(path).startswith("python")


def starts_alike(env: dict, base: dict) -> bool:
    """Whether a Python started with ``env`` starts as one started with ``base`` (the server's):
    the variables read before any code runs (``PYTHON*``, locale) are the same."""
    def startup(values: dict) -> dict:
        return {key: value for key, value in values.items() if key.startswith(("PYTHON", "LC_", "LANG"))}
    return startup(env) == startup(base)


def _guard(report: str) -> None:
    """The network guard of tests/netguard.py in this child too (a real child has none): a connect
    outside loopback is refused, and written to ``report`` at exit for the test to fail on."""
    import atexit

    import netguard

    netguard.install()

    def write() -> None:
        if netguard.violations:
            with open(report, "w", encoding="utf-8") as out:
                json.dump([[call, repr(address)] for call, address in netguard.violations], out)

    atexit.register(write)


class Zygote:
    """The test side: start the server, run commands in forks of it."""

    def __init__(self, folder, env: dict) -> None:
        import subprocess

        self.folder, self.env = str(folder), env
        self.path = os.path.join(self.folder, "zygote.sock")
        self.server = subprocess.Popen([sys.executable, __file__, self.path], env=env, cwd=str(folder),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.server.stdout.readline().strip() != "ready":
            self.server.wait(10)
            raise RuntimeError(f"tests/zygote.py did not start (exit {self.server.returncode})")

    def run(self, command: list[str], cwd, env: dict, timeout: float):
        """Like ``subprocess.run(command, capture_output=True, text=True, timeout=timeout)`` for a
        command :func:`python_argv` accepts: done when the fork exits (output in files, so that a
        descendant still holding them does not keep the test waiting); past ``timeout`` it is killed."""
        import subprocess
        import tempfile

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            child = self.popen(command, cwd, env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            try:
                code = child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
                raise
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(command, code, out.read().decode("utf-8", "replace"),
                                               err.read().decode("utf-8", "replace"))

    def popen(self, command: list[str], cwd, env: dict, stdin=None, stdout=None, stderr=None, text: bool = False,
              start_new_session: bool = False) -> ForkedProcess:
        """Like ``subprocess.Popen(command, ...)`` with these arguments (``None``, ``PIPE``, ``DEVNULL``,
        ``STDOUT`` for stderr, a file object or descriptor), for a command :func:`python_argv` accepts."""
        import subprocess
        import tempfile

        opened: list[int] = []  # our copies of what the child gets, closed once it has them
        ours: dict[str, int] = {}  # our ends of PIPEs

        def child_end(value, name: str, default: int, writing: bool) -> int:
            if value is None:
                return default
            if value == subprocess.DEVNULL:
                fd = os.open(os.devnull, os.O_WRONLY if writing else os.O_RDONLY)
            elif value == subprocess.PIPE:
                read, write = os.pipe()
                fd, ours[name] = (write, read) if writing else (read, write)
            elif isinstance(value, int):
                return value
            else:
                return value.fileno()
            opened.append(fd)
            return fd

        in_fd = child_end(stdin, "stdin", 0, False)
        out_fd = child_end(stdout, "stdout", 1, True)
        err_fd = out_fd if stderr == subprocess.STDOUT else child_end(stderr, "stderr", 2, True)
        scratch = tempfile.mkdtemp(prefix="fork-")
        report = os.path.join(scratch, "violations.json")
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            body = json.dumps({"argv": python_argv(command), "cwd": str(cwd), "env": env, "violations": report,
                               "session": start_new_session}).encode()
            conn.sendmsg([HEADER.pack(len(body)) + body],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [in_fd, out_fd, err_fd]))])
            pid = HEADER.unpack(_exactly(conn, HEADER.size))[0]
        finally:
            for fd in opened:
                os.close(fd)
        return ForkedProcess(command, pid, conn, ours, text, scratch)

    def close(self) -> None:
        self.server.stdin.close()
        import subprocess

        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()


class ForkedProcess:
    """A fork of the server running a command, used as a ``subprocess.Popen``: ``pid``, ``returncode``,
    ``poll``, ``wait``, ``communicate``, ``send_signal``/``terminate``/``kill``, ``stdin``/``stdout``/
    ``stderr`` for PIPEs. The fork is the server's child: its exit status comes over the connection."""

    def __init__(self, args, pid: int, conn: socket.socket, pipes: dict, text: bool, scratch: str) -> None:
        self.args, self.pid, self.returncode = args, pid, None
        self._conn, self._scratch, self._readers = conn, scratch, {}
        self._output: dict[str, list[bytes]] = {}
        self.stdin = self.stdout = self.stderr = None
        for name, fd in pipes.items():
            stream = os.fdopen(fd, "w" if name == "stdin" else "r", encoding="utf-8") if text else \
                os.fdopen(fd, "wb" if name == "stdin" else "rb")
            setattr(self, name, stream)

    def poll(self) -> int | None:
        if self.returncode is None:
            self._conn.setblocking(False)
            try:
                self._status()
            except BlockingIOError:
                pass
            finally:
                if self.returncode is None:
                    self._conn.setblocking(True)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        if self.returncode is None:
            self._conn.settimeout(timeout)
            try:
                self._status()
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
        return self.returncode

    def _status(self) -> None:
        import shutil

        import netguard

        self.returncode = struct.unpack("!i", _exactly(self._conn, 4))[0]
        self._conn.close()
        report = os.path.join(self._scratch, "violations.json")
        if os.path.exists(report):  # the test fails at teardown (tests/netguard.py)
            with open(report, encoding="utf-8") as refused:
                netguard.violations.extend(("child " + call, address) for call, address in json.load(refused))
        shutil.rmtree(self._scratch, ignore_errors=True)

    def communicate(self, input=None, timeout: float | None = None):
        """Popen.communicate: the PIPEs read to their end (by threads, so that neither fills up),
        then the exit; on a timeout it can be called again."""
        import subprocess
        import threading
        import time

        if input is not None and self.stdin is not None:
            self.stdin.write(input)
        if self.stdin is not None and not self.stdin.closed:
            self.stdin.close()
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None and name not in self._readers:
                self._output[name] = []
                reader = threading.Thread(target=lambda s=stream, o=self._output[name]: o.append(s.read()),
                                          daemon=True)
                reader.start()
                self._readers[name] = reader
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers.values():
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.01, deadline - time.monotonic()))
        results = []
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is None:
                results.append(None)
            else:
                results.append(self._output[name][0] if self._output[name] else stream.read())
                stream.close()
        return tuple(results)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


def _exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("tests/zygote.py closed the connection")
        data += chunk
    return data


if __name__ == "__main__":
    serve(sys.argv[1])

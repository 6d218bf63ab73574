"""Shared by the browser tests: a served archive, a real headless Chromium, axe-core.

- :func:`serving` runs the real ``pressarchive serve`` on a free port of 127.0.0.1.
- :func:`chromium` opens Debian's Chromium (through chromedriver) at a given window
  size, with the flags the brief asks for and a fresh profile.
- :func:`axe_problems` injects axe-core (the npm package, installed by ``.ci/run``
  into ``tests/axe/node_modules``) into the page and returns its serious and
  critical violations.
- :func:`on_first_screen` tells whether an element is inside the first screen.

Use ``pytestmark = needs_chromium`` in a module that drives the browser.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

DESKTOP = (1280, 900)
PHONE = (390, 844)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(path: Path, *extra: str):
    """``pressarchive serve --db PATH`` on a free port of 127.0.0.1; yields ``(base_url, log)``
    where ``log()`` returns what the server printed so far (stdout and stderr together)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", "from crawler.cli.serve import serve_command; serve_command()",
               "--db", str(path), "--host", "127.0.0.1", "--port", str(port), *extra]
    log_path = path.parent / f"serve-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def log() -> str:
        return log_path.read_text(encoding="utf-8", errors="replace")

    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/-/versions.json", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"serve did not start: {log()}")
            time.sleep(0.2)
    try:
        yield base, log
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def chromium(profile: Path, size: tuple[int, int] = DESKTOP):
    """A headless Chromium whose viewport is ``size`` (CSS pixels)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    try:
        # --window-size sets the window, not the viewport: correct to the asked viewport
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        if list(inner) != list(size):
            outer = driver.get_window_size()
            driver.set_window_size(outer["width"] + size[0] - inner[0], outer["height"] + size[1] - inner[1])
        yield driver
    finally:
        driver.quit()


def axe_problems(driver, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's violations of the loaded page with one of ``impacts``: a list of
    ``{"id", "impact", "help", "nodes": [html...]}`` (empty when the page passes)."""
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run `npm ci` in tests/axe (.ci/run does)")
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(r => done(r.violations), e => done({error: String(e)}));"
    )
    if isinstance(result, dict) and "error" in result:
        pytest.fail(f"axe-core failed: {result['error']}")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [node["html"][:200] for node in v["nodes"][:5]]}
        for v in result if v["impact"] in impacts
    ]


def on_first_screen(driver, element) -> bool:
    """True when the element's top edge is inside the viewport of the page as loaded (not scrolled)."""
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.height > 0 && r.top + window.scrollY >= 0 && r.top + window.scrollY < window.innerHeight;",
        element,
    )


def line_count(driver, element) -> int:
    """How many lines of text the element takes (a title broken one character per line takes many)."""
    return driver.execute_script(
        "const el = arguments[0]; const style = getComputedStyle(el);"
        "let line = parseFloat(style.lineHeight);"
        "if (!line) { line = parseFloat(style.fontSize) * 1.2; }"
        "return Math.round(el.getBoundingClientRect().height / line);",
        element,
    )

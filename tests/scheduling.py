"""How pytest-xdist hands the suite to its workers: longest first, modules split where they can be.

xdist's ``--dist loadfile`` sends whole modules, the modules with most tests first. Here
most of the time sits in a few long tests (real crawls, a killed worker, a 2,400-release
archive), often in modules of few tests, so the run ended with one worker finishing a
long module alone. This scheduler:

- keeps a module whole only when its tests share a module- or class-scoped fixture (a
  crawl made once and read by every test): read from the module's source;
  every other test is a unit of its own, so the long tests of one module run side by side;
- hands the units out longest first (LPT), by the durations of an earlier run kept in
  ``tests/durations.json`` (per test id, seconds). Units it has no duration for (a new
  test) count as one second; a stale file only makes the order less good, never the
  result different. ``PRESSARCHIVE_STORE_DURATIONS=1 pytest`` rewrites the file.

Tests are run in the same processes with the same fixtures; only who runs what, and when,
changes.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

from xdist.scheduler.loadscope import LoadScopeScheduling

ROOT = Path(__file__).resolve().parent.parent
DURATIONS = Path(__file__).resolve().parent / "durations.json"
DEFAULT_SECONDS = 1.0
SHARED_FIXTURE = re.compile(r"""@pytest\.fixture\([^)]*scope\s*=\s*["'](?:module|class|package)["']""")


def load_durations() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def shares_fixtures(module: str, cache: dict[str, bool]) -> bool:
    """Whether the module defines a fixture shared by several of its tests."""
    if module not in cache:
        try:
            cache[module] = bool(SHARED_FIXTURE.search((ROOT / module).read_text(encoding="utf-8")))
        except OSError:
            cache[module] = True  # unknown: keep it whole, as loadfile would
    return cache[module]


class LongestFirstScheduling(LoadScopeScheduling):
    """``--dist loadfile`` where it is needed, one test per unit elsewhere, longest units first."""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self._shared: dict[str, bool] = {}
        self._durations = load_durations()

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if shares_fixtures(module, self._shared) else nodeid

    def _cost(self, nodeids) -> float:
        return sum(self._durations.get(nodeid, DEFAULT_SECONDS) for nodeid in nodeids)

    def _assign_work_unit(self, node) -> None:
        if not getattr(self, "_ordered", False):
            # the first call comes after schedule() filled the queue: order it once
            units = sorted(self.workqueue.items(), key=lambda unit: -self._cost(unit[1]))
            self.workqueue = OrderedDict(units)
            self._ordered = True
        super()._assign_work_unit(node)


class DurationRecorder:
    """Writes ``tests/durations.json`` at the end of a run (setup + call + teardown per test)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report):
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session):
        if self.seconds:
            data = {nodeid: round(s, 2) for nodeid, s in sorted(self.seconds.items())}
            DURATIONS.write_text(json.dumps(data, indent=0) + "\n", encoding="utf-8")

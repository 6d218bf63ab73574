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


class LongestFirstScheduling(LoadScopeScheduling):
    """``--dist loadfile`` where it is needed, one test per unit elsewhere, longest units first.

    The crawled archive of ``tests/gensite.py`` (fixture ``generated_archive``) is built once
    per run by the first test that asks for it while the others wait on a lock. So one unit
    that needs it goes first (it builds it) and the other such units are held back until that
    unit's first test is done: no worker sits waiting on the lock while other work is left.
    """

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self._sources: dict[str, str] = {}
        self._durations = load_durations()
        self._ordered = False
        self._held: OrderedDict = OrderedDict()
        self._builder: str | None = None

    def _source(self, module: str) -> str:
        if module not in self._sources:
            try:
                self._sources[module] = (ROOT / module).read_text(encoding="utf-8")
            except OSError:
                self._sources[module] = ""
        return self._sources[module]

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        text = self._source(module)
        # a module whose source cannot be read is kept whole, as loadfile would
        return module if not text or SHARED_FIXTURE.search(text) else nodeid

    def _needs_archive(self, scope: str) -> bool:
        return "generated_archive" in self._source(scope.split("::", 1)[0])

    def _cost(self, nodeids) -> float:
        return sum(self._durations.get(nodeid, DEFAULT_SECONDS) for nodeid in nodeids)

    def _order(self) -> None:
        units = sorted(self.workqueue.items(), key=lambda unit: -self._cost(unit[1]))
        needing = [unit for unit in units if self._needs_archive(unit[0])]
        if needing:
            # the builder: a unit of several tests, so that its first test runs at once
            builder = next((unit for unit in needing if len(unit[1]) >= 2), needing[0])
            self._builder = builder[0]
            self._held = OrderedDict(unit for unit in needing if unit[0] != self._builder)
            units = [builder] + [unit for unit in units if not self._needs_archive(unit[0])]
        self.workqueue = OrderedDict(units)
        self._ordered = True

    def _release(self) -> None:
        held, self._held = self._held, OrderedDict()
        self.workqueue = OrderedDict([*held.items(), *self.workqueue.items()])

    def _assign_work_unit(self, node) -> None:
        if not self._ordered:  # the first call comes after schedule() filled the queue
            self._order()
        if not self.workqueue:  # schedule() gives every worker a unit; held ones, if that is all
            if not self._held:
                return
            self._release()
        super()._assign_work_unit(node)

    def _reschedule(self, node) -> None:
        if self._held and not self.workqueue:  # nothing else to hand out: never idle, never stop
            self._release()
        super()._reschedule(node)

    def mark_test_complete(self, node, item_index: int, duration: float = 0) -> None:
        if self._held and self._split_scope(self.registered_collections[node][item_index]) == self._builder:
            self._release()
        super().mark_test_complete(node, item_index, duration)

    @property
    def tests_finished(self) -> bool:
        return not self._held and super().tests_finished

    @property
    def has_pending(self) -> bool:
        return bool(self._held) or super().has_pending


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

"""Suite time: today's test suite against the suite as it was when the suite-time issue was filed.

Run by hand from the repository root, with this checkout's venv::

    .venv/bin/python benchmarks/suite.py [--base f413619] [--runs filed,same,all] [--work DIR] [--keep]

``--base`` (default: the commit the suite-time issue was filed at) is exported with ``git archive``
into ``--work`` (a temporary folder unless given) and installed into a venv of its own the way its
README says (``python3 -m venv .venv && .venv/bin/pip install -q '.[test]'``). Then, one after the
other on this machine:

- ``filed``: that suite, run as it was then (``pytest -q`` in its folder, its own settings);
- ``same``: the same tests in today's suite: the node ids the filed suite collects, given to
  today's pytest (``pytest @ids``, today's settings: workers, forks, scheduling), so the assertions
  are those that were timed then; a filed node id missing from today's suite is printed and
  makes the run fail, it is never silently left out;
- ``all``: today's whole suite (``pytest``), tests added since included.

For each: wall seconds, the machine's CPU-seconds over the run (``/proc/stat``, every core:
pytest, its workers, and every crawl, server and browser the tests start), passed / skipped /
failed as pytest reports them, and the ratio to ``filed``. The machine should be otherwise idle;
its speed can vary during a day, so only runs of one invocation compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILED = "f413619"  # the commit issue 21 ("make it at most half as long") was filed at
RUNS = ("filed", "same", "all")


def machine_cpu_seconds() -> float:
    """CPU time of every core so far (user, nice, system, irq, softirq), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed(args: list[str], cwd: Path, log: Path) -> dict:
    """Run ``args`` in ``cwd`` with its output in ``log``: wall, machine CPU, pytest's summary."""
    cpu, start = machine_cpu_seconds(), time.monotonic()
    with log.open("w") as out:
        returncode = subprocess.run(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    wall, cpu = time.monotonic() - start, machine_cpu_seconds() - cpu
    tail = log.read_text(errors="replace").strip().rsplit("\n", 1)[-1]
    return {"wall": wall, "cpu": cpu, "returncode": returncode, "summary": tail.strip("= ")}


def export_base(commit: str, folder: Path) -> Path:
    """``commit``'s tree in ``folder/base`` with its own venv, installed as its README says."""
    base = folder / "base"
    if not (base / ".venv" / "bin" / "pytest").exists():
        base.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        print(f"installing {commit} into {base}/.venv ...", flush=True)
        subprocess.run(["python3", "-m", "venv", ".venv"], cwd=base, check=True)
        subprocess.run([".venv/bin/pip", "install", "-q", ".[test]"], cwd=base, check=True)
    return base


def node_ids(pytest: Path, cwd: Path) -> list[str]:
    """The test ids ``pytest --collect-only -q`` lists in ``cwd``."""
    listed = subprocess.run([str(pytest), "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=cwd,
                            capture_output=True, text=True, check=True).stdout
    return [line for line in listed.splitlines() if "::" in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default=FILED, help=f"commit of the filed suite (default {FILED})")
    parser.add_argument("--runs", default=",".join(RUNS), help="which runs, in this order (default filed,same,all)")
    parser.add_argument("--work", type=Path, help="folder for the base checkout and logs (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep --work afterwards")
    args = parser.parse_args(argv)
    runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    if not runs or any(run not in RUNS for run in runs):
        parser.error(f"--runs takes a comma-separated list of {', '.join(RUNS)}")
    known = subprocess.run(["git", "cat-file", "-e", f"{args.base}^{{commit}}"], cwd=ROOT, capture_output=True,
                           check=False)
    if known.returncode:
        print(f"benchmark: commit {args.base} is not in this repository ({ROOT}); a shallow clone needs "
              "`git fetch --unshallow`", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="suite-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pytest = Path(sys.executable).parent / "pytest"
    try:
        base = export_base(args.base, work)
        filed_ids = node_ids(base / ".venv" / "bin" / "pytest", base)
        today = set(node_ids(pytest, ROOT))
        missing = [node for node in filed_ids if node not in today]
        if missing:
            print(f"{len(missing)} tests of {args.base} are not in today's suite:", *missing[:20], sep="\n  ")
            return 1
        ids = work / "filed-ids.txt"
        ids.write_text("\n".join(filed_ids) + "\n", encoding="utf-8")
        commands = {
            "filed": ([str(base / ".venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider"], base),
            "same": ([str(pytest), "-q", "-p", "no:cacheprovider", f"@{ids}"], ROOT),
            "all": ([str(pytest), "-q", "-p", "no:cacheprovider"], ROOT),
        }
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; today: {head.strip()} "
              f"({len(today)} tests); filed: {args.base} ({len(filed_ids)} tests); logs in {work}")
        results = {}
        for run in runs:
            print(f"{time.strftime('%H:%M:%S')} {run}: {' '.join(commands[run][0])}", flush=True)
            results[run] = timed(*commands[run], work / f"{run}.log")
        print(f"\n{'run':<6} {'wall s':>8} {'CPU-s':>8} {'x filed':>8}  pytest")
        for run, result in results.items():
            ratio = f"{result['wall'] / results['filed']['wall']:.2f}" if "filed" in results else "-"
            print(f"{run:<6} {result['wall']:>8.1f} {result['cpu']:>8.1f} {ratio:>8}  {result['summary']}")
        return 0 if all(result["returncode"] == 0 for result in results.values()) else 1
    finally:
        if not (args.keep or args.work):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

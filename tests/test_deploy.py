"""The crontab line and the systemd service + timer in deploy/ (and the README) are valid."""

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*$")
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]

pytestmark = pytest.mark.skipif(not DEPLOY.exists(), reason="deploy/ is only in a source checkout")


def unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / name)
    return parser


def test_crontab_lines_are_valid_and_in_readme():
    lines = [l for l in (DEPLOY / "crontab").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert len(lines) == 2
    for line in lines:
        fields = line.split(None, 5)
        for value, (low, high) in zip(fields[:5], RANGES):
            assert CRON_FIELD.match(value), value
            for number in map(int, re.findall(r"\d+", value.split("/")[0])):
                assert low <= number <= high
        assert "pressarchive" in fields[5]
    assert "pressarchive crawl --db archive.db" in lines[0]
    readme = (DEPLOY.parent / "README.md").read_text()
    assert lines[0] in readme


def test_systemd_units_parse_and_point_at_each_other():
    service, timer = unit("pressarchive-crawl.service"), unit("pressarchive-crawl.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert "pressarchive crawl" in service["Service"]["ExecStart"]
    assert service["Service"]["KillSignal"] == "SIGTERM"
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_units(tmp_path):
    executable = Path(sys.executable).with_name("pressarchive")
    if not executable.exists():
        pytest.skip("pressarchive console script not installed beside this Python")
    for name in ("pressarchive-crawl.service", "pressarchive-crawl.timer"):
        text = (DEPLOY / name).read_text().replace("/opt/pressarchive/.venv/bin/pressarchive", str(executable))
        text = text.replace("User=pressarchive", "User=root")
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "pressarchive-crawl.timer"), str(tmp_path / "pressarchive-crawl.service")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    calendar = subprocess.run(["systemd-analyze", "calendar", unit("pressarchive-crawl.timer")["Timer"]["OnCalendar"]],
                              capture_output=True, text=True, timeout=60)
    assert calendar.returncode == 0 and "Next elapse" in calendar.stdout

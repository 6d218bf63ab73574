"""The code's layout is its data flow: crawler -> pipelines -> archive, and only the archive speaks SQL.

``crawler/`` finds and fetches, ``pipelines/`` cleans and hands over, ``archive/`` keeps
(README, "How the code is laid out"). A module may import from its own package and the
ones after it in that order, never from one before it (Scrapy wires the pipelines and
middlewares in by dotted strings in crawler/settings.py, not by imports). SQL statements
appear in ``archive/`` only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = {"crawler": 2, "pipelines": 1, "archive": 0}
MODULES = sorted(path for package in ORDER for path in (ROOT / package).rglob("*.py"))
SQL = re.compile(r"^\s*(select\b.*\bfrom\b|insert\s+(or\s+\w+\s+)?into\b|update\s+\S+\s+set\b|delete\s+from\b|"
                 r"create\s+(unique\s+)?(table|index|virtual|trigger|view)\b|drop\s+(table|index|trigger|view)\b|"
                 r"alter\s+table\b|pragma\s+\w+)", re.IGNORECASE | re.DOTALL)


def imported(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def test_every_package_is_checked():
    assert len(MODULES) > 40
    assert {path.relative_to(ROOT).parts[0] for path in MODULES} == set(ORDER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path):
    package = path.relative_to(ROOT).parts[0]
    upward = [f"line {line}: {name}" for name, line in imported(path)
              if ORDER.get(name.split(".")[0], -1) > ORDER[package]]
    assert not upward, f"{path.relative_to(ROOT)} imports from a package before it in the flow: {upward}"


def string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno
        elif isinstance(node, ast.JoinedStr):
            text = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
            yield text, node.lineno


@pytest.mark.parametrize("path", [p for p in MODULES if p.relative_to(ROOT).parts[0] != "archive"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_archive_speaks_sql(path):
    statements = [f"line {line}: {text.strip()[:60]}" for text, line in string_constants(path) if SQL.match(text)]
    assert not statements, f"{path.relative_to(ROOT)} holds SQL (it belongs in archive/): {statements}"


def test_the_sql_check_finds_sql():
    assert SQL.match("select id from releases where url = ?")
    assert SQL.match("\n  UPDATE crawl_runs set new = 1")
    assert SQL.match("pragma journal_mode=wal")
    assert not SQL.match("Select the sources to crawl")
    assert not SQL.match("update the search index")

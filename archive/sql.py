"""Small helpers for the SQL the archive writes: lists of values in ``in (...)`` clauses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

IN_LIST = 500  # values per "in (...)" list: well under SQLite's bound-parameter limit


def chunks(values: Iterable, size: int = IN_LIST) -> Iterator[list]:
    """``values`` in lists of at most ``size``, in the order given."""
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(values) -> str:
    """The placeholders of an ``in (...)`` list of these values: ``?, ?, ?``."""
    return ", ".join("?" * len(values))

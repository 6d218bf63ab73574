"""Registry regexes run on RE2: linear time whatever the pattern (a registry is config from anyone).

Used for URL patterns (crawler/sources.py), statement-type rules (archive/statement_type.py)
and cleaning selectors (pipelines/cleaning.py). No URL longer than :data:`MAX_URL_CHARS` is
ever matched or fetched.
"""

from __future__ import annotations

from functools import lru_cache

import re2

MAX_URL_CHARS = 2048  # the sitemap protocol's limit; a longer URL is never a release nor a listing page


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every rejected pattern on stderr
    return options


_RE2_OPTIONS = _re2_options()


@lru_cache(maxsize=1024)
def safe_regex(pattern: str):
    """``pattern`` compiled with RE2 (linear-time matching); raises ``re2.error``.

    The object has ``search``, ``match``, ``fullmatch``, ``groups`` and ``groupindex``
    like a compiled :mod:`re` pattern; its matches have ``group()`` and ``m["name"]``.
    """
    return re2.compile(pattern, _RE2_OPTIONS)

"""Lines that are not the statement: share widgets, cookie and newsletter notices, "Date modified",
flattened menus (``Home | News | ...``) and a first line repeating the headline.

Line rules only (the page's structure is body.py's and gaps.py's business), so they apply the
same to every path that produced the text.
"""

from __future__ import annotations

import re

from pipelines.extraction.text import (
    CJK_RE,
    SENTENCE_END_RE,
    WORD_RE,
    _fold,
    normalise_text,
)

# Whole lines that are site furniture, not release text (checked on short lines only).
BOILERPLATE_LINE_RE = re.compile(
    r"^\W*("
    r"date modified|last (modified|updated|reviewed|revised)\b"
    r"|((this|the) )?(web ?)?(page|file|site|document|content)( was| has been)? last (modified|updated|reviewed|revised)\b"
    r"|(web ?)?(page|file|document|content) (modified|updated|reviewed|revised)\s*(:|on\b)"
    r"|page details|report a problem|share this( page| article)?"
    r"|share (on|via)\b|follow us|print( this page)?$|printer[- ]friendly( version| page| format)?\W*$"
    r"|e-?mail (this|a copy|to a friend)|back to top|top of page|you are here"
    r"|home\s*[>›»/|]|skip to (main )?content|cookies?\b|we use cookies|this (web)?site uses cookies"
    r"|copyright\b|©|\(c\) ?\d{4}|all rights reserved|版权所有|accept (all )?cookies|related (links|news|articles|content|topics|stories)\b"
    r"|(subscribe|sign up)( now| today| here)?\W*$|advertisement\W*$|sponsored( content)?\W*$"
    r"|(sign up|subscribe|register) (for|to) .{0,60}\b(newsletters?|news|e-?mails?|updates|alerts|delivery)\b"
    r"|date de modification|signaler un problème|partager cette page|imprimer"
    r"|letzte änderung|zuletzt aktualisiert|seite (drucken|teilen)|diese seite (drucken|teilen|weiterempfehlen)|nach oben|zum seitenanfang"
    r"|打印本页|打印|关闭窗口|关闭|分享到|返回顶部|【\s*(打印|关闭|大|中|小|字体)"
    r")",
    re.IGNORECASE,
)


BOILERPLATE_MAX_LINE = 120


# A menu flattened into a line: "Home | News | Contact us" (in a table cell the separators are
# escaped, "\\|"). Three separators or more and only short items: navigation, not text.
MENU_SEPARATOR_RE = re.compile(r"\s+\\\|\s+")


MENU_MIN_SEPARATORS = 3


MENU_ITEM_TOKENS = 4


LONG_MENU_ITEM_TOKENS = 8


# The same in running text with plain " | " separators (two suffice: "Transcript | mp4 | mp3"),
# and a line holding nothing but separators (a menu flattened one item per line).
PLAIN_MENU_SEPARATOR_RE = re.compile(r"\s+\|\s+")


PLAIN_MENU_MIN_SEPARATORS = 2


MENU_ROW_CELLS = 8


SEPARATOR_LINE_RE = re.compile(r"^[\s|•·/\\>»›\-–—]+$")


def _short_item(item: str) -> bool:
    return len(item) <= 20 * MENU_ITEM_TOKENS and _tokens(item) <= MENU_ITEM_TOKENS


def _table_cells(line: str) -> list[str]:
    """The non-empty cells of a table row "| a | b |" (an escaped "\\|" inside a cell is no border)."""
    cells = (cell.strip() for cell in line.strip().strip("|").split(" | "))
    return [cell for cell in cells if cell]


def is_menu_line(line: str) -> bool:
    """A line that is only a separator-delimited list of short links (a flattened nav bar):
    "Home \\| News \\| Contact \\| Site map" in a table cell, or "Transcript | Download mp4 |
    Download mp3" in running text (table rows, which start with "|", are not menus)."""
    if line.lstrip().startswith("|"):
        # A table row of many short word cells ("| Home | News | Regions | ... |") is a menu bar
        # laid out as a table; data rows hold numbers or fewer, longer cells.
        cells = _table_cells(line)
        if (len(cells) >= MENU_ROW_CELLS and all(_menu_item_line(cell) for cell in cells)
                and sum(1 for cell in cells if re.search(r"\d", cell)) <= len(cells) // 4):
            return True
    separator = MENU_SEPARATOR_RE
    if len(MENU_SEPARATOR_RE.findall(line)) < MENU_MIN_SEPARATORS:
        if line.lstrip().startswith("|") or len(PLAIN_MENU_SEPARATOR_RE.findall(line)) < PLAIN_MENU_MIN_SEPARATORS:
            return False
        separator = PLAIN_MENU_SEPARATOR_RE
    items = [item.strip(" |") for item in separator.split(line)]
    items = [item for item in items if item]
    return all(_short_item(item) and not SENTENCE_END_RE.search(item) for item in items)


def _menu_item_line(line: str) -> bool:
    return _short_item(line) and not SENTENCE_END_RE.search(line)


def _tokens(item: str) -> int:
    """Words, a run of Han characters counting one per three characters."""
    words = WORD_RE.findall(item)
    han = sum(1 for w in words if CJK_RE.match(w))
    return len(words) - han + (han + 2) // 3


def _long_menu_item(line: str) -> bool:
    """A link of up to LONG_MENU_ITEM_TOKENS words that is not a sentence (a truncated
    headline, "...", is a link to the story, not a sentence)."""
    stripped = line.strip()
    if stripped.startswith("|"):  # a table row
        return False
    if stripped.endswith(("...", "…")):
        stripped = stripped.rstrip(".… ")
    return (len(stripped) <= 10 * LONG_MENU_ITEM_TOKENS and _tokens(stripped) <= LONG_MENU_ITEM_TOKENS
            and not SENTENCE_END_RE.search(stripped))


def drop_menu_runs(lines: list[str]) -> list[str]:
    """Drop menus flattened one item per line: short link lines between separator-only
    lines ("What's New", "|", "Contact Us", "|", "Search"). A run needs at least
    MENU_MIN_SEPARATORS separator lines; separator-only lines are dropped everywhere.

    An item beside a lone "|" that stands between two items may be a longer link (up to
    LONG_MENU_ITEM_TOKENS words): "Other U.S. Government Information", a truncated headline
    "International Community to Iran: UN Reso...". Only "|": bullets and dashes also start
    list items; and only between items: a compiler message's "  |" stands beside code lines."""
    if sum(1 for line in lines if SEPARATOR_LINE_RE.match(line)) < MENU_MIN_SEPARATORS - 1:
        return [line for line in lines if not SEPARATOR_LINE_RE.match(line)]
    separator = [bool(SEPARATOR_LINE_RE.match(line)) for line in lines]
    short = [separator[i] or _menu_item_line(line) for i, line in enumerate(lines)]
    long = [not short[i] and _long_menu_item(line) for i, line in enumerate(lines)]
    pipe = [0 < j < len(lines) - 1 and lines[j].strip() == "|" and (short[j - 1] or long[j - 1])
            and (short[j + 1] or long[j + 1]) for j in range(len(lines))]
    member = [short[i] or (long[i] and any(pipe[j] for j in (i - 1, i + 1) if 0 <= j < len(lines)))
              for i in range(len(lines))]
    keep = [True] * len(lines)
    start = 0
    while start < len(lines):
        end, separators = start, 0
        while end < len(lines) and member[end]:
            separators += separator[end]
            end += 1
        if separators >= MENU_MIN_SEPARATORS - 1 and end - start > separators:
            # Only items adjacent to a separator belong to the menu.
            for index in range(start, end):
                near = any(separator[j] for j in (index - 1, index, index + 1) if start <= j < end)
                keep[index] = not near
        start = max(end, start + 1)
    return [line for line, kept, sep in zip(lines, keep, separator) if kept and not sep]


def is_furniture(line: str) -> bool:
    """A line (or a table cell) that is site furniture: a boilerplate phrase or a flattened menu."""
    return (len(line) <= BOILERPLATE_MAX_LINE and BOILERPLATE_LINE_RE.match(line) is not None) or is_menu_line(line)


def is_furniture_row(line: str) -> bool:
    """A table row (a layout table's footer or toolbar) whose every non-empty cell is furniture:
    "| Printer-friendly Version | Email A Copy |"."""
    if not line.lstrip().startswith("|"):
        return False
    cells = _table_cells(line)
    return bool(cells) and all(is_furniture(cell) for cell in cells)


def drop_boilerplate_lines(text: str) -> str:
    lines = []
    for line in normalise_text(text).split("\n"):
        if is_furniture(line) or is_furniture_row(line):
            continue
        lines.append(line)
    return "\n".join(drop_menu_runs(lines))


def drop_repeated_headline(text: str, title: str | None) -> str:
    """The text without a first line that only repeats the headline (stored apart as ``title``;
    trafilatura keeps the ``<h1>`` as the first line of the body). A text that is nothing but
    the headline is left alone."""
    first, _, rest = text.partition("\n")
    if title and rest.strip() and _fold(first) == _fold(title):
        return rest
    return text

"""trafilatura's recall mode, used to fill gaps inside the article, never to add a page's chrome.

:func:`merge_recall` keeps the default-mode text and puts back the list items, subheadings and
flattened layout tables recall mode found between its lines, when they read as article text.
"""

from __future__ import annotations

from collections import Counter

from pipelines.extraction.text import SENTENCE_END_RE, _tokens

# Recall-mode text is merged in only when it fills gaps inside the base text's span
# with sentence-like lines (or long table rows), never when it only adds text around it.
RECALL_SENTENCE_SHARE = 0.45


RECALL_LONG_LINE_TOKENS = 200


RECALL_SPAN_COVERAGE = 0.9


# A long recall line (a table flattened to one row) replaces the base text only when it
# holds most of it and adds at most half again as much.
RECALL_TABLE_COVERAGE = 0.7


RECALL_TABLE_GROWTH = 1.5


def merge_recall(base: str, recall: str) -> str:
    """trafilatura's text, completed by what its recall mode finds inside the same article.

    The default mode drops list items, subheadings and table rows from the middle of
    plain old pages (CleanEval-style government pages, Chinese table layouts); recall
    mode keeps them but also keeps related-links blocks, comments and footers around
    the article. So recall text is used only when

    - a long line of it (a layout table flattened into one row) contains most of the
      base text and the whole recall text is at most RECALL_TABLE_GROWTH times
      longer: the base text was a fragment of that table; or
    - its lines between the first and the last base line (the article span)
      cover the base text, and the lines it adds there are mostly sentences or
      long rows: the span is returned, and whatever recall adds outside it is not.
    """
    if not recall or recall == base or len(_tokens(recall)) < len(_tokens(base)):
        return base  # the same text on most pages: nothing to compare
    kept = set(base.split("\n"))
    lines = recall.split("\n")
    extra = [line for line in lines if line.strip() and line not in kept]
    if not extra:
        return base
    base_tokens = Counter(_tokens(base))
    total = max(1, sum(base_tokens.values()))
    long_lines = [line for line in extra if len(_tokens(line)) >= RECALL_LONG_LINE_TOKENS]
    if long_lines and len(_tokens(recall)) <= RECALL_TABLE_GROWTH * total:
        overlap = sum((base_tokens & Counter(_tokens("\n".join(long_lines)))).values())
        if overlap >= RECALL_TABLE_COVERAGE * total:
            return recall
    positions = [i for i, line in enumerate(lines) if line in kept]
    if not positions:
        return base
    span = lines[min(positions):max(positions) + 1]
    added = [line for line in span if line.strip() and line not in kept]
    if not added:
        return base
    in_span = set(span)
    covered = sum(len(_tokens(line)) for line in base.split("\n") if line in in_span)
    if covered < RECALL_SPAN_COVERAGE * total:
        return base
    sentences = sum(1 for line in added if SENTENCE_END_RE.search(line))
    long_rows = sum(len(_tokens(line)) for line in added) / len(added) >= RECALL_LONG_LINE_TOKENS
    if sentences / len(added) >= RECALL_SENTENCE_SHARE or long_rows:
        return "\n".join(span)
    return base

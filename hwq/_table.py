"""The one text-table formatter of hwq: the profile, the accelerator report and sweep, the model
summary, the training results, the search results and the export report print their tables
through it, so they line up the same way.

No dependency (rich, tabulate) is used: four fixed-column tables of plain strings need twenty lines,
and the output must stay byte-stable for logs, docs and tests that compare it.
"""
from __future__ import annotations

from typing import Sequence


def text_table(head: Sequence[str], body: Sequence[Sequence[str]], *,
               total: Sequence[str] | None = None, left: int = 1,
               notes: Sequence[str] | None = None) -> str:
    """A table of strings: each column as wide as its widest cell, cells two spaces apart, the
    first ``left`` columns left-aligned (names) and the rest right-aligned (numbers); a rule of
    dashes under ``head``, and when ``total`` is given, another rule and the total row at the end.
    ``notes``: one string per body row, written two spaces after it when not empty ("pinned").

    Raises ValueError when a row has not as many cells as ``head``, or ``notes`` not one per row."""
    rows = [list(head), *map(list, body)] + ([list(total)] if total is not None else [])
    for r in rows:
        if len(r) != len(head):
            raise ValueError(f"table row {r!r} has {len(r)} cells: expected {len(head)}, one per "
                             f"column of {list(head)!r}")
    if notes is not None and len(notes) != len(body):
        raise ValueError(f"table notes: {len(notes)} given for {len(body)} rows: expected one per "
                         "row ('' for none)")
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))
    rule = "-" * len(line(head))
    out = [line(head), rule] + [line(r) + (f"  {notes[i]}" if notes and notes[i] else "")
                                 for i, r in enumerate(body)]
    if total is not None:
        out += [rule, line(total)]
    return "\n".join(out)

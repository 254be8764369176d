"""Plain-text tables for people: the one table printer of the command-line tools (``cpnctl``,
``cpn-lab``, ``cpn-demo``). Aligned columns, no borders, no wrapping, so the output reads in a
terminal and greps in a log alike."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def format_table(rows: Sequence[Sequence[object]], right_from: int | None = None) -> str:
    """``rows`` as aligned text columns, a rule under the first (header) row; columns from
    ``right_from`` on are right-aligned. Cells are shown with ``str``; trailing blanks are
    cut from every line."""
    text = [[str(cell) for cell in row] for row in rows]
    if not text:
        return ""
    widths = [max(len(r[i]) for r in text) for i in range(len(text[0]))]
    lines = []
    for n, row in enumerate(text):
        cells = []
        for i, cell in enumerate(row):
            right = right_from is not None and i >= right_from
            cells.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)

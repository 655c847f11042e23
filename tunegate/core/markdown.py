"""Reading the release report (``eval/report.md``): one section, and its tables as rows.

The PR comment (`tunegate/evaluation/comment.py`) quotes the report's "Largest regressions" section;
the dashboard (`tunegate/serving/dashboard.py`) shows the same section's tables as HTML tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REGRESSIONS = "Largest regressions"


def section(report: str, heading: str) -> list[str]:
    """The lines under the level-2 `heading` up to the next level-2 heading; [] if absent."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", report, re.S | re.M)
    return match.group(1).strip("\n").splitlines() if match else []


@dataclass
class Block:
    """A paragraph or bullet (``text``), or a table (``header`` and ``rows``) with the line
    before it as its ``caption``."""

    text: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def blocks(lines: list[str]) -> list[Block]:
    """Paragraphs and tables, in order (a table's ``|---|`` rule is dropped)."""
    out: list[Block] = []
    table: Block | None = None
    for line in lines:
        if line.lstrip().startswith("|"):
            cells = _cells(line)
            if table is None:
                table = Block(text=out.pop().text if out and not out[-1].header else "", header=cells)
                out.append(table)
            elif not all(set(c) <= set("-: ") for c in cells):
                table.rows.append(cells)
            continue
        table = None
        if line.strip():
            out.append(Block(text=line.strip()))
    return out

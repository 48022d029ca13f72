"""Pure helpers: medians, percentiles, ratios and the printed table. No I/O, no servers."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence


def percentile(values: Iterable[float], q: float) -> Optional[float]:
    """The q-th percentile (0..100) with linear interpolation between closest ranks; None when empty."""
    data = sorted(values)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return data[lo]
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Iterable[float]) -> Optional[float]:
    return percentile(values, 50)


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def mb_per_s(nbytes: int, seconds: Optional[float]) -> Optional[float]:
    """Throughput in MB/s (1 MB = 10^6 bytes)."""
    if seconds is None or seconds <= 0:
        return None
    return nbytes / seconds / 1e6


def fmt(value, unit: str = "") -> str:
    """A figure for the table: 3 significant digits, ratios as x, percentages as %."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value}{unit}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "%":
        return f"{value * 100:.0f}%"
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text}{unit}" if unit in ("", "%") else f"{text} {unit}"


def target_mark(met: Optional[bool]) -> str:
    return {True: "met", False: "MISSED", None: ""}[met]


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ("#", "figure", "value", "target")) -> str:
    """A fixed-width text table (also valid Markdown when `markdown`-rendered by `markdown_table`)."""
    table = [list(header), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) if i < len(r) else 0 for r in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        cells = [(row[i] if i < len(row) else "").ljust(widths[i]) for i in range(len(header))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ("#", "figure", "value", "target")) -> str:
    def esc(cell: str) -> str:
        return str(cell).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [esc(row[i]) if i < len(row) else "" for i in range(len(header))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

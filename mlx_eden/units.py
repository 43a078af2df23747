"""One memory unit for the whole project: GiB (2**30 bytes), which is what Apple calls "GB".

The planner, `--budget-gb`, the dashboard, the events (`*_gb` fields), memory.jsonl and the HTML
report all use it, so a 32 GiB budget reads "32.0" everywhere. Before, the events used 1e9-byte
GB and the same budget showed as "34.4 GB" on the dashboard next to "32.00 GiB" in the plan.
"""

from __future__ import annotations

GIB = 1 << 30
MIB = 1 << 20


def to_gib(n: float) -> float:
    """Bytes as a GiB number (what every `*_gb` field holds)."""
    return n / GIB


def gib(n: float) -> str:
    """Bytes as a GiB string, or MiB below one GiB."""
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / MIB:.1f} MiB"

"""Benchmarks with committed results (bench/results/). Run with `python -m bench.<name>`."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def measured_on() -> dict[str, str]:
    """Where and when a result was measured: the fields every results file carries."""
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }

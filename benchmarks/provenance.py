"""Where a figure comes from: the git commit of the code that produced it, and the load.

Every benchmark report and every fault-scenario result records these, so a table can
say which commit each figure was measured at (and whether the tree had local changes).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Generated outputs: a run that rewrites them has not changed the code it measures.
GENERATED = ("docs", "tests/faults/results")


def git_commit(root: Path = ROOT) -> str:
    """``<sha>`` of HEAD, ``<sha>+dirty`` with uncommitted changes to tracked files
    (generated outputs aside: :data:`GENERATED`), ``unknown`` outside a git checkout."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                    *(f":(exclude){p}" for p in GENERATED)).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


def load_avg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages now (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None

"""A scaling timeline: one JSON line per queue per tick (a decision row,
elastiq/decisions.py), appended as the loop runs."""

from __future__ import annotations

import json
from pathlib import Path

from elastiq.decisions import DecisionRow
from elastiq.errors import WireFormatError


class TimelineWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)

    def __call__(self, row: dict) -> None:
        self._file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self._file.close()


def read_timeline(path: Path) -> list[DecisionRow]:
    """Every row; WireFormatError (with the line number) for a line that is not one."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(DecisionRow.from_dict(json.loads(line)))
            except (ValueError, WireFormatError) as exc:
                raise WireFormatError(f"{path}:{n}: {exc}") from None
    return rows

"""The autoscaler's decision row: one per queue per tick.

The controller writes it (autoscaler/controller.py); it goes to the timeline file (one JSON
line each, ``elastiq autoscale --timeline``), the /desired board, the metrics exporter and
``--json``; ``elastiq plot``, the demo, the live recorder and the simulator's comparison read
it back. The JSON keys are the field names, in field order (as before this module); keys
a reader does not know are kept in ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from elastiq.errors import WireFormatError

_INTS = ("current", "desired", "waiting", "in_flight", "ready", "draining")
_NUMS = ("oldest_age_s", "arrival_rate", "service_time_s", "window_s")


@dataclass(frozen=True)
class DecisionRow:
    t: float                         # UNIX seconds of the tick
    queue: str
    current: int | None = None       # None: no decision this tick (backend error, backing off)
    desired: int | None = None
    reason: str = ""
    action: str = "hold"             # hold | up +n | down -n | ... (dry run) | error
    capacity_limited: bool = False
    waiting: int | None = None
    in_flight: int | None = None
    oldest_age_s: float | None = None
    ready: int | None = None
    draining: int = 0
    arrival_rate: float | None = None
    service_time_s: float | None = None
    window_s: float | None = None    # the scale-down window in force (its floor, doubled by the back-off)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def decided(self) -> bool:
        """A decision was made this tick (not an error or back-off row)."""
        return self.current is not None

    @property
    def changes_pool(self) -> bool:
        return self.decided and self.desired != self.current

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}, **self.extra}

    @classmethod
    def from_dict(cls, doc: object) -> DecisionRow:
        """Raises WireFormatError for a row without ``t``/``queue`` or with a key of the wrong type."""
        if not isinstance(doc, dict):
            raise WireFormatError(f"decision row: a JSON object expected, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: doc[k] for k in known if doc.get(k) is not None}
        _check(values)
        values["t"] = float(values["t"])
        for k in _NUMS:
            if k in values:
                values[k] = float(values[k])
        return cls(**values, extra={k: v for k, v in doc.items() if k not in known})


def _check(values: dict) -> None:
    def bad(key: str, what: str):
        return WireFormatError(f"decision row: {key} is not {what}: {values.get(key)!r:.80}")

    if not _is_num(values.get("t")):
        raise bad("t", "a number")
    for key in ("queue", "reason", "action"):
        if key in values and not isinstance(values[key], str):
            raise bad(key, "a string")
    if "queue" not in values:
        raise bad("queue", "a string")
    for key in _INTS:
        if key in values and (not isinstance(values[key], int) or isinstance(values[key], bool)):
            raise bad(key, "an integer")
    for key in _NUMS:
        if key in values and not _is_num(values[key]):
            raise bad(key, "a number")
    if not isinstance(values.get("capacity_limited", False), bool):
        raise bad("capacity_limited", "true/false")


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

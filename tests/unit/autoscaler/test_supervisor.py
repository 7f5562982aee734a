"""The local supervisor and the process backend's crash-loop backoff, with stubs (no processes)."""

from __future__ import annotations

from autoscaler.backends.base import BackendError, Replica
from autoscaler.backends.process import ProcessBackend
from autoscaler.supervisor import Supervisor


class StubBackend:
    def __init__(self, fail_after: int | None = None):
        self.running: dict[str, list[Replica]] = {}
        self.fail_after = fail_after
        self.starts = 0

    def list(self, group):
        return list(self.running.get(group, []))

    def start(self, group):
        if self.fail_after is not None and self.starts >= self.fail_after:
            raise BackendError("crash loop")
        self.starts += 1
        r = Replica(f"{group}-{self.starts}", group, str(self.starts))
        self.running.setdefault(group, []).append(r)
        return r


def test_supervisor_starts_what_is_missing_and_reports_errors():
    b = StubBackend(fail_after=3)
    views = []
    sup = Supervisor(b, {"a": 2, "b": 1}, publish=views.append)
    assert sup.tick() == {"a": {"desired": 2, "running": 2, "error": None},
                          "b": {"desired": 1, "running": 1, "error": None}}
    b.running["a"].pop()                      # a worker died
    assert sup.tick()["a"] == {"desired": 2, "running": 1, "error": "crash loop"}
    assert views[-1]["a"]["error"] == "crash loop"


def test_crash_loop_backoff_doubles_and_planned_exits_do_not_count(tmp_path):
    now = [1000.0]
    exits = []
    b = ProcessBackend(tmp_path, on_exit=exits.append, crash_limit=3, crash_window_s=60,
                       max_backoff_s=60, clock=lambda: now[0])
    info = {"worker_id": "w", "group": "g", "started_at": 990.0}
    for _ in range(5):
        b._exited(info, 0)                    # warm stops
        b._exited(info, 75)                   # recycled for memory
    assert "g" not in b._backoff and len(exits) == 10 and all(e["planned"] for e in exits)
    for code in (1, -9, 1):
        b._exited(info, code)
    until, length = b._backoff["g"]
    assert length == 2.0 and until == 1002.0
    try:
        b.start("g")
        raise AssertionError("a crash-looping group must not start")
    except BackendError as exc:
        assert "keep crashing" in str(exc)
    b._exited(info, 1)                        # still crashing: the backoff doubles
    assert b._backoff["g"][1] == 4.0
    assert exits[-1] == {"worker_id": "w", "group": "g", "code": 1, "at": 1000.0, "planned": False,
                         "uptime_s": 10.0}

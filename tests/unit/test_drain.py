"""Scale-in victim choice and drain completion: pure functions, no services."""

from autoscaler.backends.base import Replica
from autoscaler.drain import drain_status, pick_victims
from elastiq.heartbeats import Heartbeat


def rep(wid, started):
    return Replica(wid, "minilm", "1", started)


def test_idle_ready_workers_go_first_then_least_busy():
    replicas = [rep("busy", 1), rep("idle-old", 2), rep("idle-new", 3), rep("starting", 4)]
    beats = {w: Heartbeat(w, busy=n, ready=True) for w, n in (("busy", 5), ("idle-old", 0), ("idle-new", 0))}
    assert [r.worker_id for r in pick_victims(replicas, beats, 2)] == ["idle-new", "idle-old"]
    assert [r.worker_id for r in pick_victims(replicas, beats, 3)][-1] == "starting"
    assert [r.worker_id for r in pick_victims(replicas, beats, 4)][-1] == "busy"
    assert pick_victims(replicas, beats, 0) == []


def test_a_draining_worker_is_stopped_only_when_idle_or_gone():
    assert not drain_status(Heartbeat("w", draining=True, busy=2), 0, 10, 300).done
    assert not drain_status(Heartbeat("w", draining=False, busy=0), 0, 10, 300).done   # not yet seen the request
    assert drain_status(Heartbeat("w", draining=True, busy=0), 0, 10, 300).done
    assert drain_status(None, 0, 10, 300).done
    late = drain_status(Heartbeat("w", draining=True, busy=1), 0, 301, 300)
    assert late.done and "warm shutdown" in late.reason and "1 running" in late.reason

"""Controller.reconcile_once(now) tick by tick: a StubBackend, scripted signals, an injected clock.

The world (waiting jobs, each worker's heartbeat) is a table the test edits between ticks;
the controller's decisions and the backend calls it made are what is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.backends.stub import StubBackend
from autoscaler.controller import Controller
from autoscaler.policy import PolicyConfig
from autoscaler.signals import worker_info
from autoscaler.snapshot import HostSnapshot, QueueSnapshot, Snapshot
from elastiq import contract
from elastiq.heartbeats import Heartbeat

GROUP = "m"
QUEUE = contract.queue_for(GROUP)


@dataclass
class World:
    """What the signals would read from Redis and the heartbeats."""
    waiting: int = 0
    beats: dict = field(default_factory=dict)

    def beat(self, wid: str, *, ready=True, busy=0, draining=False) -> None:
        self.beats[wid] = Heartbeat(wid, queues=(QUEUE,), ready=ready, busy=busy, busy_by_queue={QUEUE: busy},
                                    draining=draining, slots=16, started_at=0.0)


class ScriptedSignals:
    def __init__(self, world: World):
        self.world = world

    def heartbeats(self):
        return dict(self.world.beats)

    def snapshot(self, queue, worker_ids, now, beats=None, started=None):
        beats = self.world.beats if beats is None else beats
        mine = [beats[w] for w in worker_ids if w in beats]
        q = QueueSnapshot(queue=queue, waiting=self.world.waiting,
                          in_flight=sum(b.busy for b in beats.values()), oldest_age_s=0.0,
                          arrival_rate=None, service_time_s=None, workers=len(worker_ids),
                          ready_workers=sum(1 for b in mine if b.ready),
                          busy_workers=sum(1 for b in mine if b.busy), slots_per_worker=16,
                          worker_info=worker_info(worker_ids, beats, started or {}))
        return Snapshot(now, q, HostSnapshot(cpus=64, free_cpu=60, free_memory_mb=64_000, worker_rss_mb=300))


class DictRedis:
    """The two calls the drain protocol makes (set / delete a drain flag)."""
    def __init__(self):
        self.data = {}

    def set(self, key, value, ex=None):
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)


def make(config=None, **kw):
    clock = [1000.0]
    world, redis = World(), DictRedis()
    backend = StubBackend(lambda: clock[0])
    ctl = Controller(redis=redis, backend=backend, groups=[GROUP], signals=ScriptedSignals(world),
                     config=config or PolicyConfig(min_workers=1, max_workers=4), **kw)
    return ctl, backend, world, redis, clock


def tick(ctl, clock, dt=1.0):
    clock[0] += dt
    return ctl.reconcile_once(clock[0])[0]


def test_a_backlog_starts_workers_and_loading_ones_are_not_started_again():
    ctl, backend, world, _, clock = make()
    backend.start(GROUP)
    world.beat(f"{GROUP}-1")
    world.waiting = 200                                   # 200 / 16 per worker -> well above 4
    row = tick(ctl, clock)
    assert row["action"] == "up +3" and row["desired"] == 4
    assert [c for c, _ in backend.calls] == ["start"] * 4   # the first one by hand, three by the controller
    row = tick(ctl, clock)                                # the three are loading (no heartbeat yet)
    assert row["action"] == "hold" and len(backend.replicas) == 4


def test_scale_in_drains_idle_workers_first_and_stops_them_only_once_drained():
    ctl, backend, world, redis, clock = make(PolicyConfig(min_workers=1, max_workers=4, stabilisation_min_s=10))
    for _ in range(3):
        world.beat(backend.start(GROUP).worker_id)
    world.beat(f"{GROUP}-2", busy=1)                      # one of three is running a job
    world.waiting = 0
    rows = [tick(ctl, clock) for _ in range(12)]          # past the 10 s window
    down = next(r for r in rows if r["action"].startswith("down"))
    assert down["action"] == "down -2" and down["desired"] == 1   # one job in flight needs one worker
    asked = {k.removeprefix(contract.DRAIN_PREFIX) for k in redis.data}
    assert asked == {f"{GROUP}-1", f"{GROUP}-3"}          # the idle ones, never the busy one
    assert not any(c == "stop" for c, _ in backend.calls)  # asked to drain, not yet stopped
    world.beat(f"{GROUP}-1", draining=True)               # it stopped consuming, and is idle
    world.beat(f"{GROUP}-3", draining=True, busy=1)       # this one picked a job up before the flag
    tick(ctl, clock)
    assert ("stop", f"{GROUP}-1") in backend.calls and f"{GROUP}-1" not in backend.replicas
    assert contract.drain_key(f"{GROUP}-1") not in redis.data     # the flag cleared after the stop
    assert ("stop", f"{GROUP}-3") not in backend.calls    # running a job: waits
    world.beat(f"{GROUP}-3", draining=True)
    tick(ctl, clock)
    assert ("stop", f"{GROUP}-3") in backend.calls and set(backend.replicas) == {f"{GROUP}-2"}


def test_a_backend_error_backs_off_then_recovers():
    ctl, backend, world, _, clock = make()
    world.beat(backend.start(GROUP).worker_id)
    backend.failing = "engine down"
    row = tick(ctl, clock)
    assert row["action"] == "error" and "engine down" in row["reason"]
    assert tick(ctl, clock, dt=0.5)["action"] == "hold"   # inside the 2 s backoff: not even tried
    backend.failing = None
    assert tick(ctl, clock, dt=2.0)["action"] == "hold" and ctl.state[GROUP].failures == 0


def test_dry_run_decides_but_starts_nothing():
    ctl, backend, world, _, clock = make(dry_run=True)
    world.beat(backend.start(GROUP).worker_id)
    world.waiting = 200
    row = tick(ctl, clock)
    assert row["desired"] == 4 and row["action"] == "up (dry run)"
    assert backend.calls == [("start", f"{GROUP}-1")]


def test_the_back_off_is_carried_from_tick_to_tick_and_shown_in_the_row():
    # A scale-in undone within max_window_s: the next scale-in waits twice the window.
    ctl, backend, world, redis, clock = make(PolicyConfig(min_workers=1, max_workers=4, stabilisation_min_s=10,
                                                          cold_start_factor=0))

    def burst_then_idle(ticks: int) -> list[dict]:
        world.waiting = 64
        rows = [tick(ctl, clock)]
        for wid in backend.replicas:
            world.beat(wid)
        world.waiting = 0
        rows += [tick(ctl, clock) for _ in range(ticks)]
        for key in list(redis.data):                      # the drained ones stop consuming, idle
            world.beat(key.removeprefix(contract.DRAIN_PREFIX), draining=True)
        tick(ctl, clock)
        return rows

    world.beat(backend.start(GROUP).worker_id)
    first = burst_then_idle(12)
    assert first[0]["action"] == "up +3" and "undone" not in first[0]["reason"]
    downs = [i for i, r in enumerate(first) if r["action"].startswith("down")]
    assert downs == [10] and first[10]["window_s"] == 10 and len(backend.replicas) == 1
    second = burst_then_idle(25)
    assert second[0]["action"] == "up +3" and "undone: the next one waits 20s" in second[0]["reason"]
    downs = [i for i, r in enumerate(second) if r["action"].startswith("down")]
    assert downs == [20] and second[5]["window_s"] == 20, [r["reason"] for r in second]

"""Swarm's scale-down choice (mirrored from swarmkit's replicated orchestrator) and the
victims the swarm backend may drain because of it."""

from __future__ import annotations

import pytest

from autoscaler.backends.swarm import slots_of, worker_id_of
from autoscaler.backends.swarm_order import (
    SlotView,
    pick_victims,
    removal_order,
    removed_slots,
    safe_to_lower,
)


def S(slot, node="A", running=True):
    return SlotView(slot, node, running)


@pytest.mark.parametrize("name, slots, replicas, removed", [
    ("one node: the highest slot goes when all run", [S(1), S(2), S(3)], 2, {3}),
    ("one node: a finished task goes before running ones", [S(1), S(2, running=False), S(3)], 2, {2}),
    ("one node: two finished go", [S(1, running=False), S(2), S(3, running=False)], 1, {1, 3}),
    ("node balance first: the finished task on the emptier node stays",
     [S(1, "A"), S(2, "A"), S(3, "B", running=False)], 2, {2}),
    ("finished on the fuller node goes", [S(1, "A"), S(2, "A", running=False), S(3, "B")], 2, {2}),
    ("two nodes balanced: a finished one goes",
     [S(1, "A"), S(2, "B"), S(3, "A"), S(4, "B", running=False)], 3, {4}),
    ("unassigned slot goes first", [S(1), S(2, None, running=False), S(3)], 2, {2}),
    ("nothing to remove", [S(1), S(2)], 2, set()),
])
def test_removed_slots(name, slots, replicas, removed):
    assert removed_slots(slots, replicas) == removed, name


def test_more_than_twelve_slots_is_not_predicted():
    slots = [S(i, "A" if i % 2 else "B") for i in range(1, 14)]
    assert removed_slots(slots, 12) is None       # Go's pdqsort breaks ties unstably there
    assert not safe_to_lower(slots, {13})


def test_removal_order_keeps_running_first_per_node():
    order = removal_order([S(2, "A", running=False), S(1, "A"), S(3, "B")])
    assert [s.slot for s in order] == [1, 3, 2]


def test_safe_to_lower_only_when_exactly_the_finished_go():
    assert safe_to_lower([S(1), S(2, running=False)], {2})
    # the finished task sits alone on B: Swarm would remove running slot 2 on A instead
    assert not safe_to_lower([S(1, "A"), S(2, "A"), S(3, "B", running=False)], {3})
    assert not safe_to_lower([S(1)], set())


def test_pick_victims_skips_a_task_swarm_would_not_remove():
    slots = [S(1, "A"), S(2, "A"), S(3, "B")]
    # preference says slot 3 (idle), but it is alone on B: a busy task on A would go
    assert pick_victims(slots, [3, 2, 1], 1) == [2]
    # two victims: one from each node keeps the balance
    assert sorted(pick_victims(slots, [3, 2, 1], 2)) == [2, 3]


def test_pick_victims_single_node_takes_the_preferred():
    slots = [S(1), S(2), S(3)]
    assert pick_victims(slots, [2, 3, 1], 2) == [2, 3]
    assert pick_victims(slots, [1], 5) == [1]


def test_pick_victims_counts_already_finished_slots():
    slots = [S(1, "A"), S(2, "A", running=False), S(3, "B"), S(4, "B")]
    # slot 2 is finished on A; draining slot 1 would leave A empty while B keeps two
    assert pick_victims(slots, [1, 3], 1, finished={2}) == [3]


def task(tid, slot, state, desired="running", node="n1", cid=None, updated="2026-01-01T00:00:01Z"):
    status = {"State": state}
    if cid:
        status["ContainerStatus"] = {"ContainerID": cid, "ExitCode": 0}
    return {"ID": tid, "Slot": slot, "NodeID": node, "Status": status, "DesiredState": desired,
            "CreatedAt": updated, "UpdatedAt": updated}


def test_slots_of_live_finished_and_restarting():
    tasks = [
        task("a", 1, "running", cid="c" * 64),
        task("b", 2, "complete", desired="shutdown"),                      # drained, exited 0
        task("c", 3, "failed", desired="shutdown", updated="2026-01-01T00:00:01Z"),
        task("d", 3, "pending", desired="running", updated="2026-01-01T00:00:02Z"),  # its restart
        task("e", 4, "starting"),
        task("f", 5, "failed", desired="shutdown"),                        # restart not created yet
    ]
    live, finished = slots_of(tasks)
    assert sorted(t["ID"] for t in live) == ["a", "d", "e"]
    assert [t["ID"] for t in finished] == ["b"]
    assert worker_id_of("minilm", tasks[0]) == "minilm-" + "c" * 12
    assert worker_id_of("minilm", tasks[4]) == "minilm-task-e"


def test_slots_of_newest_task_decides_a_slot():
    # an older completed task and a newer failed one: the slot is restarting, not finished
    tasks = [task("a", 1, "complete", desired="shutdown", updated="2026-01-01T00:00:01Z"),
             task("b", 1, "failed", desired="shutdown", updated="2026-01-01T00:00:05Z")]
    assert slots_of(tasks) == ([], [])


def test_slots_of_ignores_slots_a_scale_down_already_removed():
    # a drained task whose slot was removed lingers (desired REMOVE) until the task reaper
    # deletes it: it no longer holds a slot, so nothing may lower the count for it again
    tasks = [task("a", 1, "running", cid="c" * 64),
             task("b", 2, "complete", desired="remove"),
             task("c", 3, "complete", desired="shutdown")]
    live, finished = slots_of(tasks)
    assert [t["ID"] for t in live] == ["a"]
    assert [t["ID"] for t in finished] == ["c"]


class FakeSwarm:
    """The engine calls the swarm backend's ``list`` makes, over fixed tasks; records updates."""

    def __init__(self, replicas: int, tasks: list[dict]):
        self.task_list, self.updates = tasks, []
        self.service = {"ID": "svc", "Version": {"Index": 7}, "Spec": {
            "Name": "w", "Labels": {"elastiq.pool": "p", "elastiq.group": "minilm"},
            "Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"RestartPolicy": {"Condition": "on-failure"},
                             "ContainerSpec": {"Env": ["ELASTIQ_WORKER_EXIT_WHEN_DRAINED=1"]}}}}
        self.api = self

    def services(self, filters):
        return [dict(self.service)]

    def tasks(self, filters):
        return self.task_list

    def update_service(self, *args, **kwargs):
        self.updates.append(kwargs["mode"]["Replicated"]["Replicas"])


def test_a_manual_scale_up_is_not_undone_by_lingering_removed_tasks():
    """A scale-in to 1 (two drained tasks removed, still listed with desired REMOVE), then
    ``docker service scale worker=3``: before Swarm created the new tasks the backend counted
    the removed ones as finished and lowered the count back to 1."""
    from autoscaler.backends.swarm import SwarmBackend

    fake = FakeSwarm(3, [task("a", 1, "running", cid="c" * 64),
                         task("b", 2, "complete", desired="remove"), task("c", 3, "complete", desired="remove")])
    backend = SwarmBackend("p", client=fake)
    backend._seen_replicas["svc"] = 1           # what the autoscaler last set
    assert [r.handle for r in backend.list("minilm")] == ["a"]
    assert fake.updates == [], "the manual scale-up was lowered again"


def test_swarm_is_asked_to_reconcile_again_when_it_leaves_slots_unfilled():
    """Seen on a real swarm (the last stop's CI failure): scaled to 3 while a removed slot's
    task lingered, Swarm made one new task, not two, and never another once the lingering
    task was reaped. After UNFILLED_NUDGE_S the backend sends the service's spec back with
    the same count (a change that makes Swarm reconcile), not sooner, and not again at once."""
    from autoscaler.backends.swarm import UNFILLED_NUDGE_S, SwarmBackend

    now = [100.0]
    fake = FakeSwarm(3, [task("a", 1, "running", cid="c" * 64), task("d", 3, "running", cid="d" * 64)])
    backend = SwarmBackend("p", client=fake, clock=lambda: now[0])
    backend.list("minilm")
    now[0] += UNFILLED_NUDGE_S - 1
    backend.list("minilm")
    assert fake.updates == []
    now[0] += 1
    backend.list("minilm")
    assert fake.updates == [3], "the same replica count, sent back once"
    now[0] += 1
    backend.list("minilm")
    assert fake.updates == [3]
    fake.task_list.append(task("e", 2, "running", cid="e" * 64))    # Swarm filled the slot
    now[0] += 2 * UNFILLED_NUDGE_S
    backend.list("minilm")
    assert fake.updates == [3]


def test_worker_id_from_the_services_template():
    from autoscaler.backends.swarm import id_template

    spec = {"TaskTemplate": {"ContainerSpec": {"Env": ["A=1", "ELASTIQ_WORKER_ID=minilm-{{.Task.ID}}"]}}}
    t = task("abc123", 2, "pending")
    assert worker_id_of("minilm", t, id_template(spec), "svc") == "minilm-abc123"
    assert worker_id_of("minilm", t, "w-{{ .Service.Name }}.{{.Task.Slot}}", "svc") == "w-svc.2"
    assert id_template({"TaskTemplate": {"ContainerSpec": {"Env": ["ELASTIQ_WORKER_ID=fixed"]}}}) is None


class FakeAPI:
    """The few Docker API answers SwarmBackend reads (the backend on a real swarm: tests/docker)."""

    def __init__(self, tasks, replicas, env=("ELASTIQ_WORKER_EXIT_WHEN_DRAINED=1",), cond="on-failure"):
        self.tasks_ = tasks
        self.updates: list[int] = []
        self.spec = {"Name": "w", "Labels": {"elastiq.pool": "p", "elastiq.group": "minilm"},
                     "Mode": {"Replicated": {"Replicas": replicas}},
                     "TaskTemplate": {"ContainerSpec": {"Env": list(env) + ["ELASTIQ_WORKER_ID=minilm-{{.Task.ID}}"]},
                                      "RestartPolicy": {"Condition": cond}}}

    def services(self, filters):
        return [{"ID": "svc", "Version": {"Index": 3}, "Spec": self.spec},
                {"ID": "other", "Version": {"Index": 1}, "Spec": {**self.spec, "Labels": {"elastiq.pool": "x"}}}]

    def tasks(self, filters):
        assert filters == {"service": "svc"}
        return self.tasks_

    def update_service(self, ident, version, **kw):
        assert ident == "svc" and version == 3 and kw["task_template"] == self.spec["TaskTemplate"]
        self.updates.append(kw["mode"]["Replicated"]["Replicas"])


class FakeClient:
    def __init__(self, api):
        self.api = api


def _backend(api):
    from autoscaler.backends.swarm import SwarmBackend

    return SwarmBackend("p", client=FakeClient(api))


def test_backend_refuses_a_service_that_would_restart_drained_workers():
    from autoscaler.backends.base import BackendError

    with pytest.raises(BackendError, match="on-failure"):
        _backend(FakeAPI([], 1, cond="any")).list("minilm")
    with pytest.raises(BackendError, match="EXIT_WHEN_DRAINED"):
        _backend(FakeAPI([], 1, env=())).list("minilm")


def test_backend_lowers_the_count_only_for_finished_tasks():
    api = FakeAPI([task("a", 1, "running", node="n1"), task("b", 2, "complete", desired="shutdown", node="n1"),
                   task("c", 3, "running", node="n1")], 3)
    replicas = _backend(api).list("minilm")
    assert [r.worker_id for r in replicas] == ["minilm-a", "minilm-c"]
    assert api.updates == [2]                       # b finished: the count goes 3 -> 2
    # the finished one alone on a node with fewer copies: Swarm would remove a running task
    api = FakeAPI([task("a", 1, "running", node="n1"), task("b", 2, "running", node="n1"),
                   task("c", 3, "complete", desired="shutdown", node="n2")], 3)
    _backend(api).list("minilm")
    assert api.updates == []


def test_backend_removes_a_never_placed_task_first():
    from autoscaler.backends.base import Replica

    api = FakeAPI([task("a", 1, "running", node="n1"), task("b", 2, "running", node="n1"),
                   task("p", 3, "pending", node="")], 3)
    b = _backend(api)
    replicas = b.list("minilm")
    from elastiq.heartbeats import Heartbeat

    beats = {"minilm-a": Heartbeat("minilm-a", ready=True, busy=0), "minilm-b": Heartbeat("minilm-b", ready=True, busy=3)}
    [victim] = b.pick_victims(replicas, beats, 1)
    assert victim.worker_id == "minilm-p"           # before the idle ready one
    b.stop(Replica("minilm-p", "minilm", "p"))
    assert api.updates == [2]
    assert [r.worker_id for r in b.list("minilm")] == ["minilm-a", "minilm-b"]

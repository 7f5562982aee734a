"""The swarm backend: the worker is a replicated Docker Swarm service, placed by Swarm.

Scale-up raises the service's replica count; Swarm places the new task on a node (resource
reservations and placement constraints come from the service spec, not from here).
Scale-in keeps the pool's promise -- never take a job from a worker running it:

1. the controller picks victims (:meth:`SwarmBackend.pick_victims`: idle first, and only
   tasks Swarm's own scale-down would remove, see ``swarm_order``) and asks them to drain;
2. a drained worker (``ELASTIQ_WORKER_EXIT_WHEN_DRAINED=1``) finishes its jobs and exits 0;
   under restart condition ``on-failure`` Swarm does not restart it: its task is COMPLETE
   and still holds its slot;
3. :meth:`stop` lowers the replica count by the number of finished slots, but only when
   ``swarm_order.safe_to_lower`` says Swarm will remove exactly those; otherwise it waits
   (every :meth:`list` tries again). A running task is never the one removed by us.

Only services labelled ``elastiq.pool=<pool>`` and ``elastiq.group=<model>`` are touched.
The count is read from Swarm on every pass: after a manual ``docker service scale
worker=N`` the live tasks are simply the current count (logged as adopted, not undone).

A task's worker id is ``<model>-<container short id>`` (``contract.container_worker_id``),
the id ``compose/worker_entry.py`` gives a worker whose container hostname is its id (the
service must not set ``hostname``). A task without a container yet is ``<model>-task-<id>``.

Configuration (environment, read by :meth:`SwarmBackend.from_env`):

``ELASTIQ_SWARM_POOL``             pool id (the ``elastiq.pool`` label; default ``elastiq``)
``ELASTIQ_DOCKER_API_TIMEOUT_S``   timeout of one Docker API call (default 30)
``DOCKER_HOST``                    a manager's engine, or the services-scope socket proxy
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping

from autoscaler.backends.base import BackendError, Replica
from autoscaler.backends.docker import GROUP_LABEL, POOL_LABEL
from autoscaler.backends.engine import EngineClient, created_at, short
from autoscaler.backends.swarm_order import (
    SlotView,
    by_preference,
    pick_victims,
    safe_to_lower,
)
from elastiq import contract
from elastiq.envconfig import number
from elastiq.errors import ConfigError

log = logging.getLogger(__name__)

# Task states in swarmkit's order (api/types.proto TaskState).
STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running",
          "complete", "shutdown", "failed", "rejected", "remove", "orphaned")
_RANK = {s: i for i, s in enumerate(STATES)}
RUNNING = _RANK["running"]
UNFILLED_NUDGE_S = 3.0      # Swarm showing fewer slots than replicas this long: ask it to reconcile
_TEMPLATE = re.compile(r"\{\{\s*(\.[A-Za-z.]+)\s*\}\}")


def _rank(state: str | None) -> int:
    return _RANK.get((state or "").lower(), len(STATES))


def worker_id_of(group: str, task: dict, template: str | None = None, service_name: str = "") -> str:
    """The id the task's worker heartbeats under.

    With ``ELASTIQ_WORKER_ID`` set in the service spec to a Swarm template (the stack sets
    ``minilm-{{.Task.ID}}``: unique even with host networking, where every container has
    the node's hostname), the same template rendered here; else ``<model>-<container id>``
    (``contract.container_worker_id``: the container's hostname is its short id)."""
    if template:
        values = {".Task.ID": task["ID"], ".Task.Slot": str(task.get("Slot") or ""),
                  ".Task.Name": f"{service_name}.{task.get('Slot') or task.get('NodeID')}.{task['ID']}",
                  ".Service.Name": service_name, ".Node.ID": task.get("NodeID") or ""}
        return _TEMPLATE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
    return contract.container_worker_id(group, cid[:12]) if cid else f"{group}-task-{task['ID'][:12]}"


def id_template(spec: dict) -> str | None:
    """The service's ``ELASTIQ_WORKER_ID`` if it is a per-task template, else None."""
    env = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Env") or []
    for item in env:
        key, _, value = item.partition("=")
        if key == "ELASTIQ_WORKER_ID" and _TEMPLATE.search(value):
            return value
    return None


def slots_of(tasks: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(live, finished)``: the task of each slot Swarm counts (``UpdatableTasksInSlot``).

    live: a task whose desired state is <= running and which has not ended; finished: a slot
    whose newest task exited 0 (COMPLETE) and has no task meant to run -- it holds its slot
    until the count is lowered. Slots being restarted after a failure are neither, and so is
    a slot a scale-down has already removed: its tasks linger with desired state REMOVE until
    the task reaper deletes them (swarmkit manager/orchestrator/replicated/services.go
    ``setTasksDesiredState(..., TaskStateRemove)``, taskreaper/task_reaper.go). Counting
    those as finished would lower the count a second time for the same tasks -- after a
    manual ``docker service scale`` up, say, before Swarm has created the new tasks."""
    by_slot: dict[int, list[dict]] = {}
    for t in tasks:
        by_slot.setdefault(int(t.get("Slot") or 0), []).append(t)
    live, finished = [], []
    for slot_tasks in by_slot.values():
        meant = [t for t in slot_tasks if _rank(t.get("DesiredState")) <= RUNNING]
        if meant:
            alive = [t for t in meant if _rank(t["Status"]["State"]) <= RUNNING]
            live.extend(alive[:1])
            continue
        newest = max(slot_tasks, key=lambda t: t.get("UpdatedAt") or t.get("CreatedAt") or "")
        if (newest.get("Status") or {}).get("State") == "complete" and newest.get("DesiredState") != "remove":
            finished.append(newest)
    return live, finished


def unplaced(task: dict) -> bool:
    """A task no node has taken yet (no node has room for its reservations, say): no
    container, no worker, and Swarm's scale-down removes such a slot first."""
    return not task.get("NodeID") and _rank(task["Status"]["State"]) < _rank("assigned")


def slot_views(live: list[dict], finished: list[dict]) -> list[SlotView]:
    return [SlotView(int(t["Slot"]), t.get("NodeID") or None, t in live and t["Status"]["State"] == "running")
            for t in live + finished]


class SwarmBackend(EngineClient):
    """The replicated worker service(s) of one pool on a swarm."""

    name = "swarm"
    local_host = False          # workers run on many nodes: this host's free memory is no cap

    def __init__(self, pool: str = "elastiq", *, api_timeout_s: float = 30.0,
                 docker_host: str | None = None, client=None, clock: Callable[[], float] = time.monotonic):
        if not pool or not all(c.isalnum() or c in "-_." for c in pool):
            raise ConfigError(f"ELASTIQ_SWARM_POOL {pool!r} may use only letters, digits, '-', '_' and '.'")
        self.pool = pool
        self.api_timeout_s = api_timeout_s
        self.docker_host = docker_host
        self._client = client
        self._seen_replicas: dict[str, int] = {}      # service id -> count we last saw or set
        # Tasks the controller has stopped (drained, heartbeat gone) that Swarm still reports
        # running for a moment: not listed, so they are never counted or picked again.
        self._retiring: set[str] = set()
        self._clock = clock
        self._unfilled_since: dict[str, float] = {}   # service id -> when Swarm first showed too few slots

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SwarmBackend:
        env = os.environ if env is None else env
        return cls(env.get("ELASTIQ_SWARM_POOL", "elastiq"),
                   api_timeout_s=number(env, "ELASTIQ_DOCKER_API_TIMEOUT_S", 30.0) or 30.0,
                   docker_host=env.get("DOCKER_HOST") or None)

    # -- Backend

    def list(self, group: str) -> list[Replica]:
        """Live tasks (starting ones included, so the policy counts workers on their way)."""
        service = self._service(group)
        tasks = self._tasks(service["ID"])
        live, finished = slots_of(tasks)
        self._adopt(service)
        self._nudge_if_unfilled(service, len(live) + len(finished))
        if finished or self._retiring:
            self._reclaim(service, live, finished)
        self._retiring &= {t["ID"] for t in live}
        ids = self._ids(service)
        return [Replica(ids(t), group, t["ID"], created_at({"Created": t.get("CreatedAt")}), "running")
                for t in live if t["ID"] not in self._retiring]

    def start(self, group: str) -> Replica:
        for attempt in range(3):       # "update out of sequence": changed meanwhile, read again
            service = self._service(group)
            replicas = self._replicas(service) + 1
            try:
                self._scale(service, replicas, f"scale-up to {replicas}")
                break
            except BackendError as exc:
                if "out of sequence" not in str(exc) or attempt == 2:
                    raise
        return Replica(f"{group}-pending-{replicas}", group, "", None, "running")

    def stop(self, replica: Replica) -> None:
        """The drained worker has exited: lower the count once Swarm will remove its task."""
        service = self._service(replica.group)
        live, finished = slots_of(self._tasks(service["ID"]))
        task = next((t for t in live if t["ID"] == replica.handle), None) if replica.handle else None
        if task is not None:
            self._retiring.add(replica.handle)
            if not unplaced(task):
                log.info("swarm: %s still runs (task %s): its slot is lowered once it has exited",
                         replica.worker_id, replica.handle[:12])
        if finished or task is not None:
            self._reclaim(service, live, finished)

    def pick_victims(self, replicas: list[Replica], beats: dict, n: int) -> list[Replica]:
        """``n`` victims Swarm's scale-down will remove once they have exited, idle first."""
        from autoscaler import drain

        if not replicas:
            return []
        service = self._service(replicas[0].group)
        live, finished = slots_of(self._tasks(service["ID"]))
        views = slot_views(live, finished)
        by_slot = {int(t["Slot"]): t["ID"] for t in live}
        mine = {r.handle: r for r in replicas}
        waiting = {t["ID"] for t in live if unplaced(t)}
        preferred = [r.handle for r in replicas if r.handle in waiting] + \
            [r.handle for r in drain.pick_victims(replicas, beats, len(replicas)) if r.handle not in waiting]
        rank = {h: i for i, h in enumerate(preferred)}
        candidates = [s for s in by_preference([v for v in views if by_slot.get(v.slot) in mine],
                                               lambda s: rank.get(by_slot[s], len(rank)))]
        chosen = pick_victims(views, candidates, n, {int(t["Slot"]) for t in finished})
        if len(chosen) < n:
            log.info("swarm: %d of %d victim(s): Swarm's scale-down (node balance) would remove "
                     "another task than the others", len(chosen), n)
        return [mine[by_slot[s]] for s in chosen]

    # -- helpers

    def _reclaim(self, service: dict, live: list[dict], finished: list[dict]) -> None:
        """Lower the count by the finished tasks (and the never-placed ones the controller
        chose), when Swarm will remove exactly those."""
        replicas = self._replicas(service)
        views = slot_views(live, finished)
        if replicas != len(views):
            return      # Swarm has not reconciled a change yet: look again next pass
        waiting = [t for t in live if t["ID"] in self._retiring and unplaced(t)]
        done = {int(t["Slot"]) for t in finished + waiting}
        if not done:
            return
        if not safe_to_lower(views, done):
            log.warning("swarm: %d finished task(s) wait: lowering %s now would remove a running task",
                        len(done), service["Spec"]["Name"])
            return
        ids = self._ids(service)
        why = [f"remove the drained and exited {', '.join(ids(t) for t in finished)}"] if finished else []
        why += [f"remove the never placed {', '.join(ids(t) for t in waiting)}"] if waiting else []
        self._scale(service, replicas - len(done), "; ".join(why))

    def _nudge_if_unfilled(self, service: dict, slots: int) -> None:
        """Ask Swarm to reconcile again when it has left slots unfilled for ``UNFILLED_NUDGE_S``.

        swarmkit reconciles a service on its updates and when a task *meant to run* is
        deleted (manager/orchestrator/replicated/tasks.go, ``EventDeleteTask`` only for
        ``DesiredState <= RUNNING``), and it counts a removed slot's finished task as a slot
        until the reaper deletes it (restart.go ``UpdatableTasksInSlot``). A scale-up that
        lands while such a task lingers -- ``docker service scale worker=3`` a second after a
        scale-in -- creates too few tasks, and its deletion does not trigger another pass: the
        service stays short until something else changes. Sending its own spec back unchanged
        is such a change (no task is rolled: nothing in the spec differs)."""
        sid, replicas = service["ID"], self._replicas(service)
        if slots >= replicas:
            self._unfilled_since.pop(sid, None)
            return
        now = self._clock()
        if now - self._unfilled_since.setdefault(sid, now) < UNFILLED_NUDGE_S:
            return
        self._unfilled_since[sid] = now
        try:
            self._scale(service, replicas, f"Swarm left {replicas - slots} slot(s) unfilled for "
                                           f"{UNFILLED_NUDGE_S:.0f}s+: asking it to reconcile again")
        except BackendError as exc:     # changed meanwhile: it reconciles anyway
            log.info("swarm: reconcile nudge skipped: %s", exc)

    def _adopt(self, service: dict) -> None:
        replicas, seen = self._replicas(service), self._seen_replicas.get(service["ID"])
        if seen is not None and seen != replicas:
            log.info("swarm: %s replicas changed outside the autoscaler: %d -> %d (adopted as current)",
                     service["Spec"]["Name"], seen, replicas)
        self._seen_replicas[service["ID"]] = replicas

    def _scale(self, service: dict, replicas: int, why: str) -> None:
        """Send the service's own spec back with only the replica count changed: any other
        difference (defaults filled in, say) would make Swarm roll every task."""
        spec = service["Spec"]
        name = spec["Name"]
        try:
            self.client.api.update_service(
                service["ID"], service["Version"]["Index"], task_template=spec.get("TaskTemplate"),
                name=name, labels=spec.get("Labels"), mode={"Replicated": {"Replicas": replicas}},
                update_config=spec.get("UpdateConfig"), rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"))
        except Exception as exc:    # out of sequence (changed meanwhile), proxy refusal, engine down
            raise BackendError(f"cannot scale service {name} to {replicas}: {short(exc)}") from exc
        self._seen_replicas[service["ID"]] = replicas
        log.info("swarm: %s replicas %d -> %d (%s)", name, self._replicas(service), replicas, why)

    @staticmethod
    def _ids(service: dict):
        template, name = id_template(service["Spec"]), service["Spec"]["Name"]
        return lambda t: worker_id_of(service["_group"], t, template, name)

    @staticmethod
    def _replicas(service: dict) -> int:
        return int(((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)

    def _service(self, group: str) -> dict:
        labels = [f"{POOL_LABEL}={self.pool}", f"{GROUP_LABEL}={group}"]
        try:
            found = self.client.api.services(filters={"label": labels})
        except Exception as exc:
            raise BackendError(f"cannot list swarm services: {short(exc)}") from exc
        found = [s for s in found if (s["Spec"].get("Labels") or {}).get(POOL_LABEL) == self.pool
                 and (s["Spec"].get("Labels") or {}).get(GROUP_LABEL) == group]
        if len(found) != 1:
            raise BackendError(f"need exactly one swarm service labelled {POOL_LABEL}={self.pool}, "
                               f"{GROUP_LABEL}={group}; found {len(found)}")
        service = found[0]
        spec = service["Spec"]
        if "Replicated" not in (spec.get("Mode") or {}):
            raise BackendError(f"service {spec['Name']} is not replicated")
        cond = ((spec.get("TaskTemplate") or {}).get("RestartPolicy") or {}).get("Condition", "any")
        if cond != "on-failure":
            raise BackendError(f"service {spec['Name']} has restart condition {cond!r}: it must be 'on-failure', "
                               "or Swarm restarts every drained worker that exits")
        env = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Env") or []
        if not any(e.split("=", 1)[0] == "ELASTIQ_WORKER_EXIT_WHEN_DRAINED" and e.split("=", 1)[1].lower()
                   in ("1", "true", "yes", "on") for e in env if "=" in e):
            raise BackendError(f"service {spec['Name']} must set ELASTIQ_WORKER_EXIT_WHEN_DRAINED=1: a drained "
                               "worker has to exit for Swarm to remove its task")
        service["_group"] = group
        return service

    def _tasks(self, service_id: str) -> list[dict]:
        try:
            return self.client.api.tasks(filters={"service": service_id})
        except Exception as exc:
            raise BackendError(f"cannot list the tasks of service {service_id[:12]}: {short(exc)}") from exc

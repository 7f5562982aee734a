"""Which tasks a Swarm scale-down removes, and which victims it therefore may drain (pure).

Swarm cannot be told *which* task to remove: lowering a replicated service's replica count
lets its orchestrator choose. This module mirrors that choice so the swarm backend only
drains victims Swarm will remove, and only lowers the count when the tasks Swarm will
remove are exactly the drained ones that have finished.

Mirrored from moby/swarmkit (read at commit 3e72cb64, Aug 2026):

- ``manager/orchestrator/replicated/services.go``, ``Orchestrator.reconcile``, the
  ``specifiedSlots < numSlots`` branch: the slots are first sorted with
  ``slotsByRunningState`` (``replicated/slot.go``: a slot with a task in state RUNNING
  before one without; ties by slot number, lower first); then each slot gets an index = it
  is the n-th copy on its node (1, 2, 3... in that order; a slot without a node gets -1,
  sorted last); ``slotsByIndex`` sorts by that index; the first ``replicas`` slots are kept
  and every later one is set to desired state REMOVE. **Node balance comes first**: a
  finished task on the node with fewer copies is kept while a running task on the most
  loaded node goes. Go's ``sort.Sort`` is an insertion sort (stable) up to 12 elements
  and pdqsort (not stable) above: for more than 12 slots ties of equal index may fall
  either way, so :func:`removed_slots` refuses to predict (returns None) there.
- ``replicated/slot.go``, ``updatableAndDeadSlots`` with ``restart/restart.go``,
  ``Supervisor.UpdatableTasksInSlot``: a slot counts while it has a task whose desired
  state is <= RUNNING, *or* when its newest task must not be restarted -- a task that
  exited 0 under restart condition ``on-failure`` (``shouldRestart``: COMPLETED is not a
  failure) keeps holding its slot. So a drained worker's finished task stays counted
  until the replica count is lowered, and lowering it by one removes that task (it is not
  running) as long as node balance does not pick another one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

GO_STABLE_SORT_MAX = 12


@dataclass(frozen=True)
class SlotView:
    """One slot of a replicated service, as the orchestrator sees it."""
    slot: int
    node: str | None        # None: not assigned to a node yet
    running: bool           # a task of the slot is in state RUNNING


def removal_order(slots: Iterable[SlotView]) -> list[SlotView]:
    """Slots in the order Swarm keeps them: the last ones are removed first."""
    by_state = sorted(slots, key=lambda s: (not s.running, s.slot))      # slotsByRunningState
    per_node: dict[str, int] = {}
    indexed = []
    for s in by_state:
        if s.node:
            per_node[s.node] = per_node.get(s.node, 0) + 1
            indexed.append((per_node[s.node], s))
        else:
            indexed.append((-1, s))
    # slotsByIndex: index >= 0 ascending, -1 last; Python's sort is stable like Go's
    # insertion sort (<= 12 elements).
    indexed.sort(key=lambda p: (p[0] < 0, p[0]))
    return [s for _, s in indexed]


def removed_slots(slots: Sequence[SlotView], replicas: int) -> set[int] | None:
    """The slot numbers Swarm removes when the service goes to ``replicas``; None when the
    outcome is not determined (more than 12 slots: Go's unstable sort breaks ties)."""
    if len(slots) <= replicas:
        return set()
    if len(slots) > GO_STABLE_SORT_MAX:
        return None
    return {s.slot for s in removal_order(slots)[max(0, replicas):]}


def safe_to_lower(slots: Sequence[SlotView], finished: set[int]) -> bool:
    """Whether lowering the count by ``len(finished)`` removes exactly the finished slots."""
    if not finished:
        return False
    return removed_slots(slots, len(slots) - len(finished)) == finished


def pick_victims(slots: Sequence[SlotView], candidates: Sequence[int], n: int,
                 finished: Iterable[int] = ()) -> list[int]:
    """Up to ``n`` slots to drain, from ``candidates`` in order of preference, such that once
    they (and the already ``finished`` slots) have exited, Swarm's scale-down removes exactly
    them. A candidate whose removal Swarm would not choose (it sits on a node with fewer
    copies) is skipped: draining it would leave its finished task holding the slot while a
    running worker elsewhere is removed."""
    chosen: list[int] = []
    done = set(finished)
    while len(chosen) < n:       # each round takes the most preferred candidate that fits
        fits = (s for s in candidates if s not in chosen
                and safe_to_lower(_as_finished(slots, done | {*chosen, s}), done | {*chosen, s}))
        slot = next(fits, None)
        if slot is None:
            break
        chosen.append(slot)
    return chosen


def _as_finished(slots: Sequence[SlotView], finished: set[int]) -> list[SlotView]:
    return [SlotView(s.slot, s.node, s.running and s.slot not in finished) for s in slots]


def by_preference(slots: Sequence[SlotView], key: Callable[[int], object]) -> list[int]:
    """Slot numbers sorted by ``key`` (e.g. idle first), for :func:`pick_victims`."""
    return [s.slot for s in sorted(slots, key=lambda s: key(s.slot))]

"""The services scope of the Docker API proxy (pure): what the swarm backend may do.

It reads services and tasks and changes one number: the replica count of a service that
carries every required label, up to ``max_replicas``. A service update is otherwise the
most powerful call of a swarm manager (a new image, a bind mount of ``/``, privileged
capabilities: root on every node), so :func:`check_service_update` requires the body to be
the service's *current* spec with only ``Mode.Replicated.Replicas`` changed, and the
proxy forwards the spec it read from the engine with that one number set -- never the
client's bytes. Query parameters other than ``version`` are refused (``rollback=previous``
would restore an older spec; ``registryAuthFrom`` reads credentials).
"""

from __future__ import annotations

import copy
from typing import Any

from autoscaler.proxy_users import Refused

_EMPTY = (None, {}, [], "", 0, False)


def owns_service(policy, service: dict) -> bool:
    return policy.owns((service.get("Spec") or {}).get("Labels"))


def normalise(value: Any) -> Any:
    """Drop keys whose value is empty or zero (the engine's defaults), recursively."""
    if isinstance(value, dict):
        out = {k: normalise(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in _EMPTY}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first path where ``a`` and ``b`` differ (``a``, ``b`` normalised), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            diff = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
            if diff:
                return diff
        return None
    return None if a == b else (path or "the body")


def requested_replicas(body: Any, max_replicas: int) -> int:
    mode = body.get("Mode") if isinstance(body, dict) else None
    replicated = mode.get("Replicated") if isinstance(mode, dict) else None
    n = replicated.get("Replicas") if isinstance(replicated, dict) else None
    if set(mode or {}) != {"Replicated"} or set(replicated or {}) != {"Replicas"}:
        raise Refused("Mode must be {\"Replicated\": {\"Replicas\": N}}")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= max_replicas:
        raise Refused(f"Replicas must be an integer in [0, {max_replicas}], got {n!r}")
    return n


def check_service_update(policy, service: dict, body: Any) -> dict:
    """The spec to forward for ``POST /services/{id}/update``: the current one, with only
    the replica count the body asks for. Raises :class:`Refused`."""
    if not owns_service(policy, service):
        raise Refused(f"service {service.get('ID', '?')[:12]} does not carry the labels {dict(policy.labels)}")
    current = service.get("Spec") or {}
    if "Replicated" not in (current.get("Mode") or {}):
        raise Refused("only a replicated service may be scaled")
    if not isinstance(body, dict):
        raise Refused("body is not a JSON object")
    n = requested_replicas(body, policy.max_replicas)
    diff = first_difference(_without_mode(body), _without_mode(current))
    if diff:
        raise Refused(f"only the replica count may change; {diff} differs from the service's spec")
    out = copy.deepcopy(current)
    out["Mode"] = {"Replicated": {"Replicas": n}}
    return out


def _without_mode(spec: dict) -> dict:
    return normalise({k: v for k, v in spec.items() if k != "Mode"})


def only_version_query(query: str) -> int:
    """The ``version`` of an update's query string; anything else is refused."""
    from urllib.parse import parse_qsl

    pairs = parse_qsl(query, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "version" or not pairs[0][1].isdigit():
        raise Refused("a service update takes exactly one query parameter, version=<n>")
    return int(pairs[0][1])

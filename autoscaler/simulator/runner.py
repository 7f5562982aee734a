"""Build policies by name and run one trace against several of them."""

from __future__ import annotations

from dataclasses import replace

from autoscaler.policy import PolicyConfig
from autoscaler.simulator.baselines import CeleryAutoscalePolicy, KedaHpaPolicy, RayServePolicy
from autoscaler.simulator.model import Policy, SimParams, SimResult, simulate
from autoscaler.simulator.policies import ElastiqPolicy, StaticPolicy
from autoscaler.simulator.report import Summary, summarise
from autoscaler.traces import Trace

POLICIES = ("elastiq", "keda", "keda-tuned", "celery", "ray", "static")
BASELINES = POLICIES[1:]
EXTRA = ("elastiq-prewarm",)   # elastiq with the optional predictive pre-warm on


def make_policy(name: str, params: SimParams, config: PolicyConfig | None = None,
                ray_target: float | None = None) -> Policy:
    """A fresh policy (they keep state) sized to the simulated pool's min/max."""
    if name == "elastiq":
        return ElastiqPolicy.for_params(params, config)
    if name == "elastiq-prewarm":
        policy = ElastiqPolicy.for_params(params, replace(config or PolicyConfig(), prewarm=True))
        policy.name = name
        return policy
    if name == "keda":
        return KedaHpaPolicy.for_params(params)
    if name == "keda-tuned":
        return KedaHpaPolicy.tuned(params)
    if name == "celery":
        return CeleryAutoscalePolicy.for_params(params)
    if name == "ray":
        return RayServePolicy.for_params(params, target=ray_target)
    if name == "static":
        return StaticPolicy()
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES + EXTRA)}")


def run_trace(trace: Trace, policies=POLICIES, params: SimParams | None = None,
              config: PolicyConfig | None = None, ray_target: float | None = None) -> list[SimResult]:
    params = params or SimParams()
    return [simulate(trace, make_policy(name, params, config, ray_target), params) for name in policies]


def warm_pools(trace: Trace, params: SimParams | None = None) -> dict[int, Summary]:
    """A fixed pool of each size 1..max_workers, warm from the start: what the best any
    schedule within those sizes could hope for on this machine model (the attainable floor
    of the p95 wait, against which a target is judged reachable or not)."""
    params = params or SimParams()
    return {n: summarise(simulate(trace, StaticPolicy(workers=n, name=f"static-{n}"), params))
            for n in range(1, params.max_workers + 1)}

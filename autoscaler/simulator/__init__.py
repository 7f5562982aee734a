"""Trace replay of scaling policies: the real elastiq policy against documented baselines."""

from autoscaler.simulator.model import Observation, SimParams, SimResult, simulate  # noqa: F401
from autoscaler.simulator.runner import POLICIES, make_policy, run_trace  # noqa: F401
from autoscaler.simulator.compare import compare_to_timeline  # noqa: F401

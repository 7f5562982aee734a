"""Trace replay of scaling policies: the real elastiq policy against documented baselines."""

from autoscaler.simulator.compare import compare_to_timeline
from autoscaler.simulator.model import Observation, SimParams, SimResult, simulate
from autoscaler.simulator.runner import POLICIES, make_policy, run_trace

__all__ = ["POLICIES", "Observation", "SimParams", "SimResult", "compare_to_timeline", "make_policy", "run_trace",
           "simulate"]

"""Backends act: list replicas, start one, stop one (after the controller drained it)."""

from autoscaler.backends.base import Backend, Replica

__all__ = ["Backend", "Replica"]

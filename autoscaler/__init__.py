"""The elastiq autoscaler: signals (measure) -> policy (decide, pure) -> backends (act)."""

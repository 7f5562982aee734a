"""Reproducible measurements: ``elastiq bench NAME``. Each figure is a ratio against a
baseline measured in the same run, with the machine's core count recorded."""

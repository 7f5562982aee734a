"""The local stack: what `elastiq up/down/status/demo` start on one machine.

Above the contract floor (``elastiq/``, which imports nothing of the project above it):
these modules start redis-server and worker processes (:mod:`elastiq.local.procs`, the
plumbing the process backend also uses), run the stack (:mod:`elastiq.local.stack`), its
commands (:mod:`elastiq.local.stack_cli`) and the demo (:mod:`elastiq.local.demo`).
"""

"""``elastiq``: one thin command that dispatches to the parts.

Each subcommand lives in the module that owns it and exposes ``main(argv) -> int``;
importing is lazy, so ``elastiq submit`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

from elastiq.errors import ElastiqError

COMMANDS: dict[str, tuple[str, str]] = {
    "up":        ("elastiq.local.stack_cli:up", "start the local stack (redis, workers, flower) in the background"),
    "down":      ("elastiq.local.stack_cli:down", "stop everything `elastiq up` started"),
    "status":    ("elastiq.local.stack_cli:status", "queues, workers and dead letters [--json]"),
    "submit":    ("elastiq.local.stack_cli:submit", "submit one job and print its result as JSON"),
    "demo":      ("elastiq.local.demo:main", "the main demo: a burst of real embedding jobs, scaled"),
    "worker":    ("workers.main:main", "run one worker process in the foreground"),
    "engine":    ("workers.engines.cli:main", "export / check / list the onnx engine's graphs [--json]"),
    "autoscale": ("autoscaler.cli:main", "run the autoscaler [--once] [--dry-run] [--json]"),
    "drain":     ("autoscaler.drain_cli:main", "drain one worker (no new jobs, finish the running) and wait [--wait-s]"),
    "supervise": ("autoscaler.supervisor:main", "keep N local workers per model running (used by `up`)"),
    "plot":      ("autoscaler.plot:main", "render a recorded scaling timeline as a PNG"),
    "simulate":  ("autoscaler.simulator.cli:main", "replay a trace against scaling policies"),
    "train":     ("producer.training:main", "fine-tune in the pool, show progress, print the new model version"),
    "edge":      ("producer.edge:main", "edge client: answer locally when sure, escalate the rest to the pool"),
    "models":    ("elastiq.models_cli:main", "model versions: list | publish NAME VERSION | rollback NAME [--json]"),
    "bench":     ("benchmarks.cli:main", "run a benchmark, write JSON (and a PNG)"),
    "gateway":   ("gateway.cli:main", "the HTTP gateway: OpenAI-compatible embeddings + job endpoints"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: elastiq COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`elastiq COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from elastiq import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"elastiq: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, _, func = COMMANDS[name][0].partition(":")
    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except ElastiqError as exc:
        print(f"elastiq {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

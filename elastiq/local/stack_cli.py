"""``elastiq up | down | status | submit``: the local stack and a look inside it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from elastiq import contract, redismemory
from elastiq.exits import recent_exits
from elastiq.heartbeats import Heartbeat, read_heartbeats
from elastiq.local import stack
from elastiq.redisconn import redis_client
from elastiq.registry import Registry
from elastiq.settings import DEFAULT_REDIS_URL, Settings


def redis_url() -> str:
    """ELASTIQ_REDIS_URL, else the running local stack's, else the default."""
    if os.environ.get("ELASTIQ_REDIS_URL"):
        return os.environ["ELASTIQ_REDIS_URL"]
    state = stack.load_state(stack.home_dir())
    return state.redis_url if state and stack.is_running(state) else DEFAULT_REDIS_URL


def up(argv=None) -> int:
    p = argparse.ArgumentParser(prog="elastiq up", description="Start the local stack in the background.")
    p.add_argument("--workers", type=int, default=1, help="worker processes per model (default 1)")
    p.add_argument("--models", default="minilm", help="comma-separated models to serve")
    p.add_argument("--redis-port", type=int, help="default: 6379 if free, else a free port")
    p.add_argument("--flower-port", type=int)
    p.add_argument("--no-flower", action="store_true")
    p.add_argument("--autoscale", action="store_true", help="also run the autoscaler (process backend)")
    p.add_argument("--gateway", action="store_true",
                   help="also run the HTTP gateway on 127.0.0.1 (token: ELASTIQ_GATEWAY_TOKENS, else a new one "
                        "in $ELASTIQ_HOME/gateway.token)")
    p.add_argument("--gateway-port", type=int, help="default: a free port")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    home = stack.home_dir()
    say = (lambda *_: None) if a.json else (lambda msg: print(msg, flush=True))
    state = stack.up(home, workers=a.workers, models=[m for m in a.models.split(",") if m],
                     redis_port=a.redis_port, flower=not a.no_flower, flower_port=a.flower_port,
                     autoscale=a.autoscale, progress=say, gateway=a.gateway, gateway_port=a.gateway_port)
    if a.json:
        print(json.dumps(state.__dict__))
        return 0
    print(f"\nelastiq is up (home {home})")
    print(f"  Redis:   {state.redis_url}    export ELASTIQ_REDIS_URL={state.redis_url}")
    if state.flower_port:
        print(f"  Flower:  http://127.0.0.1:{state.flower_port}")
    if state.gateway_pid:
        token = f"token in {state.gateway_token_file}" if state.gateway_token_file else "token: ELASTIQ_GATEWAY_TOKENS"
        print(f"  Gateway: http://127.0.0.1:{state.gateway_port}/v1   ({token})")
    if state.autoscaler_pid:
        print(f"  Autoscaler metrics: http://127.0.0.1:{state.metrics_port}/metrics  timeline: {state.timeline}")
    print("  Try:     elastiq submit minilm 'hello world'    elastiq status    elastiq down")
    return 0


def down(argv=None) -> int:
    argparse.ArgumentParser(prog="elastiq down", description="Stop what `elastiq up` started.").parse_args(argv)
    n = stack.down(stack.home_dir())
    print(f"stopped {n} process(es)" if n else "nothing was running")
    return 0


def collect_status(r, registry: Registry, now: float, result_ttl_s: int | None = None) -> dict:
    from autoscaler.signals import backlog

    beats = read_heartbeats(r)
    queues = {contract.queue_for(m) for m in registry.names()}
    queues |= {q for b in beats.values() for q in b.queues}
    rows = []
    for q in sorted(queues):
        waiting, oldest, in_flight = backlog(r, q, now)
        serving = [b for b in beats.values() if b.serves(q)]
        rows.append({"queue": q, "waiting": waiting, "in_flight": in_flight,
                     "oldest_age_s": None if oldest is None else round(oldest, 3),
                     "workers": len(serving)})
    workers = [{"worker_id": w, "queues": list(b.queues), "ready": b.ready,
                "draining": b.draining, "busy": b.busy, "slots": b.slots,
                "rss_mb": b.rss_mb, "done": b.done, "failed": b.failed,
                "cold_start_s": b.cold_start_s, "engine_build_s": b.engine_build_s,
                "versions": _versions(b)}
               for w, b in sorted(beats.items())]
    dead = [json.loads(x) for x in r.lrange(contract.DEAD_LETTER_KEY, 0, 9)]
    exits = recent_exits(r, 20)
    supervised = json.loads(r.get(contract.SUPERVISOR_KEY) or "{}")
    return {"queues": rows, "workers": workers, "redis": redismemory.memory(r, result_ttl_s),
            "dead_letters": {"count": r.llen(contract.DEAD_LETTER_KEY), "latest": dead},
            "exits": {"unplanned_last_minute": sum(1 for e in exits if not e.get("planned")
                                                   and now - float(e.get("at") or 0) < 60),
                      "latest": exits[:10]},
            "supervisor": supervised}


def _versions(beat: Heartbeat) -> dict:
    """model -> the published version a worker serves (and what it refused), from its heartbeat."""
    out = {}
    for model, e in (beat.engines or {}).items():
        if isinstance(e, dict) and e.get("version"):
            out[model] = {"version": e["version"], "refused": e.get("refused") or {}}
    return out


def status(argv=None) -> int:
    p = argparse.ArgumentParser(prog="elastiq status", description="Queues, workers and dead letters.")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    settings = Settings.from_env(redis_url=redis_url())
    r = redis_client(settings)
    try:
        s = collect_status(r, Registry.from_env(), time.time(), settings.result_ttl_s)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported, typed below
        from elastiq.errors import BrokerUnavailableError

        raise BrokerUnavailableError(f"cannot read status from Redis: {exc}") from None
    if a.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{'QUEUE':<24}{'WAITING':>9}{'IN FLIGHT':>11}{'OLDEST':>9}{'WORKERS':>9}")
    for q in s["queues"]:
        age = "-" if q["oldest_age_s"] is None else f"{q['oldest_age_s']:.1f}s"
        print(f"{q['queue']:<24}{q['waiting']!s:>9}{q['in_flight']:>11}{age:>9}{q['workers']:>9}")
    print(f"\n{'WORKER':<34}{'READY':>7}{'BUSY/SLOTS':>12}{'RSS MB':>9}{'DONE':>8}  STATE")
    for w in s["workers"]:
        st = "draining" if w["draining"] else ("ready" if w["ready"] else "starting")
        print(f"{w['worker_id']:<34}{str(bool(w['ready'])):>7}{str(w['busy']) + '/' + str(w['slots']):>12}"
              f"{w['rss_mb'] or 0:>9.0f}{w['done'] or 0:>8}  {st}"
              + "".join(f"  {m}@{v['version']}" + (f" (refused {', '.join(v['refused'])})" if v["refused"] else "")
                        for m, v in w.get("versions", {}).items()))
    m = s["redis"]
    print(f"\nredis: {m['used_mb']:.0f} MB used" + (f" of {m['maxmemory_mb']:.0f}" if m["maxmemory_mb"] else "")
          + f"; answers kept {m['result_ttl_s']} s (ELASTIQ_RESULT_TTL_S)")
    if m["near_full"]:
        print(f"  ! {redismemory.advice(m)}")
    d = s["dead_letters"]
    print(f"\ndead letters: {d['count']}")
    for e in d["latest"][:5]:
        print(f"  {e.get('job_id')}  {e.get('model')}  {e.get('reason')}")
    for group, v in s["supervisor"].items():
        print(f"\nsupervisor: {group} {v.get('running')}/{v.get('desired')} running"
              + (f"  ! {v['error']}" if v.get("error") else ""))
    x = s["exits"]
    if x["latest"]:
        print(f"\nworker exits (unplanned in the last minute: {x['unplanned_last_minute']}):")
        for e in x["latest"][:5]:
            when = time.strftime("%H:%M:%S", time.localtime(float(e.get("at") or 0)))
            kind = "planned" if e.get("planned") else "CRASH"
            print(f"  {when}  {e.get('worker_id')}  code {e.get('code')}  {kind}  after {e.get('uptime_s')}s")
    return 0


def submit(argv=None) -> int:
    p = argparse.ArgumentParser(prog="elastiq submit", description="Submit one job; print its result as JSON.")
    p.add_argument("model")
    p.add_argument("texts", nargs="+")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=JSON",
                   help="a job parameter, e.g. --param top_k=2 (value parsed as JSON)")
    a = p.parse_args(argv)
    params = {}
    for item in a.param:
        key, _, raw = item.partition("=")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    from elastiq.errors import ElastiqError
    from producer import Client

    with Client(redis_url()) as client:
        try:
            job = client.submit(a.model, a.texts, **params)
            res = job.result(timeout=a.timeout)
        except ElastiqError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), file=sys.stderr)
            return 1
    print(json.dumps({"job_id": res.job_id, "model": res.model, "outputs": res.outputs,
                      "timings": res.timings}))
    return 0

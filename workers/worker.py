"""One worker process, assembled: who does what, and how it starts and stops.

::

    fetcher --reserve (Lua)--> held jobs --> batcher / suspect runner --> committer --commit (Lua)-->
       ^  wake channel                       (forward passes)               results + acks, one step
    heartbeat (TTL = liveness, drain key)   reaper (dead workers' jobs back)   watchdog (limits, RSS)
    control (Celery mailbox: inspect, cancel_consumer, shutdown)   events (Flower)

Stopping: a *warm* stop (SIGTERM, ``shutdown`` control, drain + stop, recycling) takes no
new jobs, gives the ones no forward pass has started back to the front of their queues,
lets the running passes finish and answers them, then deletes the heartbeat and exits. A
*cold* stop (SIGINT, SIGQUIT, a second SIGTERM) gives every held job back at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time

from elastiq.redisconn import redis_client, safe_url
from elastiq.reservations import Reservations
from elastiq.settings import Settings
from workers import admission, jobs, runtime
from workers.batcher import Batcher
from workers.committer import Committer
from workers.control import Control, handlers
from workers.events import Events, WorkerHeart
from workers.fetcher import Fetcher
from workers.heartbeat import Heartbeat
from workers.reaper import Reaper
from workers.state import EXIT_BROKEN, WorkerState
from workers.suspects import SuspectRunner
from workers.watchdog import Watchdog

log = logging.getLogger("elastiq.worker")


class Worker:
    def __init__(self, settings: Settings, registry, runtimes: dict, state: WorkerState, *,
                 batcher_options: dict, max_rss_mb: float | None = None, exit_when_drained: bool = False):
        self.settings = settings
        self.state = state
        self.runtimes = runtimes
        self.redis = redis_client(settings)
        max_bytes = admission.max_item_bytes(settings.limits)
        self.store = Reservations(self.redis, record_ttl_s=settings.result_ttl_s,
                                  result_ttl_s=settings.result_ttl_s, max_bytes=max_bytes)
        self.batchers = {n: Batcher(r, **batcher_options) for n, r in runtimes.items()}
        self.suspects = SuspectRunner(self.redis, state.worker_id, runtimes)
        # Celery is needed only for its remote control and events: built and connected in the
        # background once the worker takes jobs (_start_celery_side), off the cold start.
        self.events = Events(None, state.worker_id, tasks=settings.task_events, state=state)
        self.committer = Committer(self.store, state, runtimes, self.redis, events=self.events)
        ctx = jobs.Context(settings, registry, frozenset(runtimes), self.redis)
        self.fetcher = Fetcher(self.store, state, ctx, batchers=self.batchers, suspects=self.suspects,
                               committer=self.committer, redis=self.redis, events=self.events)
        self.heartbeat = Heartbeat(self.redis, state, interval_s=settings.heartbeat_interval_s,
                                   ttl_s=settings.heartbeat_ttl_s,
                                   on_drain=(lambda: self.request_stop(0)) if exit_when_drained else (lambda: None),
                                   extra=self._heartbeat_extra)
        self.reaper = Reaper(self.store, self.redis, interval_s=settings.heartbeat_interval_s,
                             grace_s=settings.heartbeat_ttl_s + settings.heartbeat_interval_s,
                             events=self.events)
        self.watchdog = Watchdog(state, [*self.batchers.values(), self.suspects],
                                 soft_s=settings.job_soft_time_limit_s, hard_s=settings.job_time_limit_s,
                                 give_back=self.give_back, stop=self.request_stop, max_rss_mb=max_rss_mb)
        self.control: Control | None = None
        self.heart = WorkerHeart(self.events)
        self._stop = threading.Event()
        self._cold = False

    def _heartbeat_extra(self) -> dict:
        return {"models": tuple(sorted(self.runtimes)),
                "engines": {n: r.describe() for n, r in self.runtimes.items()},
                "heavy_modules": tuple(runtime.heavy_modules()),
                "batching": {n: b.stats.as_dict() for n, b in self.batchers.items()}}

    # -- stopping

    def request_stop(self, code: int = 0, cold: bool = False) -> None:
        if self._stop.is_set():
            cold = True                      # asked twice: do not wait any more
        if self.state.exit_code is None and code:
            self.state.exit_code = code
        self._cold = self._cold or cold
        self.state.stopping = True
        with self.state.lock:
            self.state.lock.notify_all()
        self._stop.set()

    def give_back(self, items) -> None:
        """Release the held jobs behind ``items`` (futures, or requests with a ``.future``)."""
        by_queue: list = []
        for item in items:
            job = self.state.untrack(getattr(item, "future", item))
            if job is not None:
                by_queue.append(job)
        if not by_queue:
            return
        try:
            self.store.release(self.state.worker_id, [j.held.field for j in by_queue])
        except Exception as exc:  # noqa: BLE001 - still held: reaped when the heartbeat expires
            log.warning("could not give %d job(s) back: %s", len(by_queue), exc)
        for j in by_queue:
            self.state.give_back(j.queue)

    # -- running

    def run(self) -> int:
        self._signals()
        for t in (*(), self.suspects, self.committer):
            t.start()
        if not self._first_beat():
            return self._shutdown()
        self.state.ready_at = time.time()
        self.heartbeat.beat()                # ready, before the first reservation
        for t in (self.heartbeat, self.fetcher, self.reaper, self.watchdog):
            t.start()
        log.info("worker %s ready: broker=%s queues=%s slots=%d threads=%d cold_start=%.2fs (engine build %.2fs)",
                 self.state.worker_id, safe_url(self.settings.redis_url), self.state.queues,
                 self.state.slots, self.state.threads, self.state.ready_at - self.state.started_at,
                 self.state.engine_build_s)
        threading.Thread(target=self._start_celery_side, name="celery-side", daemon=True).start()
        while not self._stop.wait(0.5):
            self._check_threads()
        return self._shutdown()

    def _check_threads(self) -> None:
        """A worker whose fetcher, committer, heartbeat... has died would look alive and
        take nothing (or answer nothing): exit instead, so its supervisor starts a new one."""
        dead = [t.name for t in (self.fetcher, self.committer, self.heartbeat, self.suspects, self.reaper,
                                 self.watchdog, *self.batchers_threads()) if not t.is_alive()]
        if dead and not self._stop.is_set():
            log.critical("worker thread(s) %s died: exiting with %d so a fresh worker replaces this one",
                         dead, EXIT_BROKEN)
            self.request_stop(EXIT_BROKEN, cold=True)

    def batchers_threads(self) -> list[threading.Thread]:
        return [b._thread for b in self.batchers.values()]

    def _first_beat(self) -> bool:
        """Wait for the broker: a worker started before Redis is reachable (or refused by its
        TLS checks) keeps trying, as a Celery worker does, and takes no job meanwhile."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.heartbeat.beat()
                return True
            except Exception as exc:  # noqa: BLE001 - logged, retried
                log.error("cannot reach Redis at %s: %s (retrying in %.0fs)", safe_url(self.settings.redis_url),
                          exc, delay)
                self._stop.wait(delay)
                delay = min(10.0, delay * 2)
        return False

    def _start_celery_side(self) -> None:
        """Control and events: off the path to the first job (kombu/Celery import and connect)."""
        try:
            from elastiq.celeryconf import make_celery

            app = make_celery(self.settings, name="elastiq-worker")
            self.events.app = app
            self.control = Control(app, self.state.worker_id, handlers(
                self.state, self.events, lambda: self.request_stop(0), self.state.started_at))
            self.control.start()
            # worker-online only once the mailbox listens: a monitor that sees the worker come
            # online and broadcasts at once (Flower's enable_events) must reach it (a Redis
            # fanout message sent before the SUBSCRIBE is lost, not queued)
            if not self.control.listening.wait(10.0):
                log.warning("control channel not listening after 10 s; announcing the worker anyway")
            self.events.start()
            self.heart.start()
        except Exception as exc:  # noqa: BLE001 - jobs run without them
            log.warning("Celery control/events unavailable: %s", exc)

    def _signals(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop(0))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop(0, cold=True))
        signal.signal(signal.SIGQUIT, lambda *_: self.request_stop(0, cold=True))

    def _shutdown(self) -> int:
        st = self.state
        log.info("worker %s stopping (%s): %d job(s) held", st.worker_id, "cold" if self._cold else "warm",
                 st.busy())
        self.fetcher.stop()
        if self.fetcher.ident is not None:      # started (not if Redis was never reached)
            self.fetcher.join(5)
        self.give_back([p for b in (*self.batchers.values(), self.suspects) for p in b.take_pending()])
        if not self._cold:
            end = time.monotonic() + self.settings.job_time_limit_s + 10
            while st.busy() and time.monotonic() < end and not self._cold:
                time.sleep(0.05)
        self.committer.stop()
        if st.busy():                         # cold, or answers that could not be written
            self._release_everything()
        for t in (self.reaper, self.watchdog, self.heart, self.control):
            if t is not None:
                t.stop()
        self.events.stop()
        self.heartbeat.stop()                # deletes the heartbeat: nothing is held any more
        code = st.exit_code or 0
        log.info("worker %s exits with %d%s", st.worker_id, code, f": {st.stop_reason}" if st.stop_reason else "")
        return code

    def _release_everything(self) -> None:
        try:
            fields = list(self.store.held(self.state.worker_id))
            n = self.store.release(self.state.worker_id, fields)
            log.warning("gave %d held job(s) back to their queues", n)
        except Exception as exc:  # noqa: BLE001 - reaped once the heartbeat expires
            log.warning("could not give the held jobs back (%s): they return when the heartbeat expires", exc)

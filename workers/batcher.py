"""The in-process micro-batcher: one forward pass for whatever the job slots hold.

Each Celery job slot (a thread) calls :meth:`Batcher.submit` and waits on the returned
future. One batcher thread per model takes *everything* waiting the moment it is free
(no timer by default, like Triton's delay 0 and TEI: a lone job runs at once), drops jobs
whose deadline has passed, sorts the texts by token length to cut padding, and runs them
in passes bounded by ``max_batch`` texts and ``max_tokens`` padded tokens. Sorted texts
are cut into passes by a small dynamic programme that minimises
``sum(pass_cost_tokens + width x texts)`` over the passes: a pass costs a fixed amount
(Python and kernel launch overhead, worth about ``pass_cost_tokens`` padded tokens on
CPU) plus its padded tokens, so a few long texts get their own pass instead of padding
many short ones (``elastiq bench mixed``). Every message is still acknowledged on its
own by its slot.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from elastiq.errors import JobExpiredError
from workers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class BatchInfo:
    batch_size: int          # texts in the largest forward pass this job was part of
    inference_ms: float      # time of the passes that held this job's texts
    padded_tokens: int = 0
    real_tokens: int = 0
    started_at: float | None = None     # wall clock: its first forward pass began
    finished_mono: float | None = None  # monotonic: its last forward pass ended


@dataclass
class _Request:
    texts: list[str]
    deadline: float | None
    future: Future = field(default_factory=Future)
    outputs: list = field(default_factory=list)
    info: BatchInfo = field(default_factory=lambda: BatchInfo(0, 0.0))


@dataclass
class BatchStats:
    """Counters exported in the heartbeat and to Prometheus."""

    batches: int = 0
    texts: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0
    expired: int = 0
    sizes: dict[int, int] = field(default_factory=dict)   # batch size -> count
    model_cpu_s: float = 0.0      # CPU of tokenising + forward passes (this thread's time)

    def as_dict(self) -> dict:
        ratio = self.padded_tokens / self.real_tokens if self.real_tokens else None
        return {"batches": self.batches, "texts": self.texts, "expired": self.expired,
                "padded_tokens": self.padded_tokens, "real_tokens": self.real_tokens,
                "model_cpu_s": round(self.model_cpu_s, 4),
                "padding_ratio": ratio, "sizes": {str(k): v for k, v in sorted(self.sizes.items())}}


class Batcher:
    def __init__(self, runtime: Runtime, *, max_batch: int = 32, max_tokens: int = 8192,
                 max_wait_ms: float = 0.0, sort_by_length: bool = True,
                 pass_cost_tokens: int = 32, clock=time.time):
        if max_batch < 1 or max_tokens < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_tokens must be >= 1, max_wait_ms >= 0")
        self.runtime = runtime
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_ms / 1000
        self.sort_by_length = sort_by_length
        self.pass_cost_tokens = pass_cost_tokens
        self.clock = clock
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        # the requests of the pass running now, and since when (monotonic): the watchdog's view
        self.current: list[_Request] = []
        self.current_since: float | None = None
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{runtime.name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str], deadline: float | None = None) -> Future:
        request = _Request(list(texts), deadline)
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        self._queue.put(None)

    def take_pending(self) -> list[_Request]:
        """Remove and return the requests no forward pass has taken yet."""
        return self._drain_now()

    def fail_current(self, exc: BaseException) -> list[_Request]:
        """Fail the requests of the pass running now (it is stuck); returns them."""
        failed = list(self.current)
        for r in failed:
            _resolve(r.future, exc=exc)
        return failed

    # -- the batcher thread

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            requests = [first] + self._drain(len(first.texts))
            self.current, self.current_since = requests, time.monotonic()
            try:
                self._run(requests)
            except BaseException as exc:  # a model error fails this batch, not the thread
                log.exception("forward pass failed for %d job(s)", len(requests))
                for r in requests:
                    _resolve(r.future, exc=exc)
            finally:
                self.current, self.current_since = [], None

    def _drain_now(self) -> list[_Request]:
        got: list[_Request] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return got
            if item is None:
                self._queue.put(None)
                return got
            got.append(item)

    def _drain(self, have: int) -> list[_Request]:
        """Everything already waiting; with max_wait_ms > 0, also wait that long for more."""
        got: list[_Request] = []
        end = time.monotonic() + self.max_wait_s
        while True:
            try:
                item = self._queue.get_nowait() if self.max_wait_s == 0 or have >= self.max_batch \
                    else self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return got
            if item is None:  # keep the close marker for the loop
                self._queue.put(None)
                return got
            got.append(item)
            have += len(item.texts)

    def _run(self, requests: list[_Request]) -> None:
        now = self.clock()
        live = []
        for r in requests:
            if r.deadline is not None and now > r.deadline:
                self.stats.expired += 1
                _resolve(r.future, exc=JobExpiredError(
                    f"deadline passed {now - r.deadline:.3f}s before the job could run; not run"))
            else:
                live.append(r)
        if not live:
            return
        items = [(r, i) for r in live for i in range(len(r.texts))]
        cpu = time.thread_time()
        ids = self.runtime.encode([r.texts[i] for r, i in items])
        self.stats.model_cpu_s += time.thread_time() - cpu
        order = list(range(len(items)))
        if self.sort_by_length:
            order.sort(key=lambda k: len(ids[k]))
        for r in live:
            r.outputs = [None] * len(r.texts)
        chunks = self._split_sorted(order, ids) if self.sort_by_length else self._chunks(order, ids)
        for chunk in chunks:
            wall = time.time()
            for k in chunk:
                info = items[k][0].info
                info.started_at = info.started_at or wall
            started, cpu = time.perf_counter(), time.thread_time()
            outs = self.runtime.forward([ids[k] for k in chunk])
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.stats.model_cpu_s += time.thread_time() - cpu
            width = max(len(ids[k]) for k in chunk)
            real = sum(len(ids[k]) for k in chunk)
            self._count(len(chunk), width * len(chunk), real)
            for k, out in zip(chunk, outs):
                r, i = items[k]
                r.outputs[i] = out
                r.info.batch_size = max(r.info.batch_size, len(chunk))
            for r in {id(items[k][0]): items[k][0] for k in chunk}.values():
                r.info.inference_ms += elapsed_ms
                r.info.padded_tokens += width * len(chunk)
                r.info.real_tokens += real
                r.info.finished_mono = time.monotonic()
        for r in live:
            _resolve(r.future, result=(r.outputs, r.info))

    def _split_sorted(self, order: list[int], ids: list[list[int]]) -> list[list[int]]:
        """Cut length-sorted ``order`` into passes of least total cost (see module doc).

        ``best[i]`` = least cost of running the first ``i`` texts; the last pass of that
        is ``order[j:i]``, whose width is the length of its last (longest) text.
        """
        n = len(order)
        lens = [max(1, len(ids[k])) for k in order]
        best = [0.0] + [float("inf")] * n
        cut = [0] * (n + 1)
        for i in range(1, n + 1):
            width = lens[i - 1]
            for j in range(i - 1, max(0, i - self.max_batch) - 1, -1):
                if j < i - 1 and width * (i - j) > self.max_tokens:
                    break
                cost = best[j] + self.pass_cost_tokens + width * (i - j)
                if cost < best[i]:
                    best[i], cut[i] = cost, j
        chunks, i = [], n
        while i > 0:
            chunks.append(order[cut[i]:i])
            i = cut[i]
        return chunks[::-1]

    def _chunks(self, order: list[int], ids: list[list[int]]):
        """Consecutive runs of ``order`` within max_batch texts and max_tokens padded."""
        chunk: list[int] = []
        width = 0
        for k in order:
            w = max(width, len(ids[k]))
            if chunk and (len(chunk) + 1 > self.max_batch or w * (len(chunk) + 1) > self.max_tokens):
                yield chunk
                chunk, w = [], len(ids[k])
            chunk.append(k)
            width = w
        if chunk:
            yield chunk

    def _count(self, size: int, padded: int, real: int) -> None:
        s = self.stats
        s.batches += 1
        s.texts += size
        s.padded_tokens += padded
        s.real_tokens += real
        s.sizes[size] = s.sizes.get(size, 0) + 1


def _resolve(future: Future, result=None, exc: BaseException | None = None) -> None:
    """Set a future once: a request failed by the watchdog may still finish later."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass

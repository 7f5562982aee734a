"""Owned reservations: a job taken off its queue is held *by a named live worker*.

Redis has no acks. kombu's Redis transport takes a message with ``BRPOP`` and writes it to
an ``unacked`` hash afterwards, and gives it back only after a visibility timeout: a dead
worker's jobs wait (15 min at our old default), and a worker killed between the two steps
loses the message. Here every step that moves a job is one Lua script, so it is atomic:

- :meth:`Reservations.reserve` -- only while the worker's heartbeat key exists: pop up to
  ``n`` messages, highest priority first, round-robin over the worker's queues, and record
  each in the worker's *held* hash ``elastiq:held:<worker>`` (field ``<list>\\n<seq>``,
  value the queue item, byte for byte). It counts the delivery in the job's record and
  returns ``(deliveries, alone)`` with each message (workers/jobs.py uses them to find
  poison inputs).
- :meth:`commit` -- for each finished job still held by this worker: delete it from the
  held hash, store its result the way Celery's Redis backend does (``SET`` + ``PUBLISH``
  on ``celery-task-meta-<id>``) and mark its record. A job no longer held (the worker was
  presumed dead and its jobs were handed out again) is *not* answered by it: one answer per
  job, from its current owner.
- :meth:`release` -- give held jobs back to the front of their lists (drain, shutdown).
- :meth:`reap` -- a worker whose heartbeat key has expired is dead: put everything it held
  back at the front of its lists. Idempotent; any process may call it (workers and the
  autoscaler do); two reapers racing restore each job once.

A held job therefore comes back ``heartbeat_ttl_s`` (+ one reaper pass) after its worker
dies, whatever the job's length; a live worker keeps its jobs however slow they are.
Until reaped, a dead worker's held jobs count as waiting (:meth:`orphaned`).

Job-record keys are derived inside the scripts from the job id, so this needs a single
Redis (not Redis Cluster), as kombu's Redis transport does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from elastiq import contract, jobrecord

log = logging.getLogger(__name__)

_RESERVE = jobrecord.lua("""
-- KEYS: heartbeat, held, holders, then 4 priority lists per queue, in priority order
-- ARGV: worker, n, now, record_ttl, max_bytes, seq, job_prefix, stats_prefix, queues...
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local worker, n, now = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local record_ttl, max_bytes, seq = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local job_prefix, stats_prefix = ARGV[7], ARGV[8]
local nq = #ARGV - 8
local out, taken = {}, 0
local per_queue = {}
while taken < n do
  local any = false
  for q = 1, nq do
    if taken >= n then break end
    for step = 1, 4 do
      local list = KEYS[3 + (q - 1) * 4 + step]
      local raw = redis.call('RPOP', list)
      if raw then
        any, taken, seq = true, taken + 1, seq + 1
        local fld = list .. '\\n' .. seq
        redis.call('HSET', KEYS[2], fld, raw)
        per_queue[q] = (per_queue[q] or 0) + 1
        local deliveries, alone, cancelled = 0, false, false
        if #raw <= max_bytes then
          local ok, msg = pcall(cjson.decode, raw)
          local id = ok and type(msg) == 'table' and type(msg.headers) == 'table' and msg.headers.id
          if type(id) == 'string' and #id > 0 and #id <= 200 then
            local rec = job_prefix .. id
            deliveries = redis.call('HINCRBY', rec, '$DELIVERIES', 1)
            alone = redis.call('HGET', rec, '$ALONE')
            cancelled = redis.call('HGET', rec, '$CANCELLED')
            redis.call('HSET', rec, '$STATE', '$STARTED', '$WORKER', worker)
            redis.call('HSETNX', rec, '$FIRST_WORKER', worker)
            redis.call('EXPIRE', rec, record_ttl)
          end
        end
        out[#out + 1] = fld
        out[#out + 1] = raw
        out[#out + 1] = deliveries
        out[#out + 1] = alone or ''
        out[#out + 1] = cancelled or ''
        break
      end
    end
  end
  if not any then break end
end
for q, count in pairs(per_queue) do
  redis.call('HINCRBY', stats_prefix .. ARGV[8 + q], 'started', count)
end
if taken > 0 then redis.call('SADD', KEYS[3], worker) end
return out
""")

_COMMIT = jobrecord.lua("""
-- KEYS: held.  ARGV: result_ttl, record_ttl, job_prefix, stats_prefix, then per job:
-- field, job id, result key, result JSON, state (done | failed | dead), queue
local result_ttl, record_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local job_prefix, stats_prefix = ARGV[3], ARGV[4]
local out = {}
for i = 5, #ARGV, 6 do
  local fld, id, key, value, state, queue = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  if redis.call('HDEL', KEYS[1], fld) == 1 then
    if key ~= '' then
      redis.call('SET', key, value, 'EX', result_ttl)
      redis.call('PUBLISH', key, value)
    end
    if id ~= '' then
      redis.call('HSET', job_prefix .. id, '$STATE', state)
      redis.call('EXPIRE', job_prefix .. id, record_ttl)
    end
    if queue ~= '' then redis.call('HINCRBY', stats_prefix .. queue, state, 1) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
""")

_RELEASE = jobrecord.lua("""
-- KEYS: held.  ARGV: job_prefix, then fields. Not run: the delivery is taken back.
local n = 0
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('RPUSH', string.match(ARGV[i], '^(.*)\\n[^\\n]*$'), raw)
    local ok, msg = pcall(cjson.decode, raw)
    local id = ok and type(msg) == 'table' and type(msg.headers) == 'table' and msg.headers.id
    if type(id) == 'string' and redis.call('HINCRBY', ARGV[1] .. id, '$DELIVERIES', -1) < 0 then
      redis.call('HSET', ARGV[1] .. id, '$DELIVERIES', 0)
    end
    n = n + 1
  end
end
return n
""")

_REAP = jobrecord.lua("""
-- KEYS: heartbeat, held, holders.  ARGV: worker, job_prefix.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local all = redis.call('HGETALL', KEYS[2])
local ids = {}
for i = 1, #all, 2 do
  redis.call('RPUSH', string.match(all[i], '^(.*)\\n[^\\n]*$'), all[i + 1])
  local ok, msg = pcall(cjson.decode, all[i + 1])
  local id = ok and type(msg) == 'table' and type(msg.headers) == 'table' and msg.headers.id
  if type(id) == 'string' then
    redis.call('HINCRBY', ARGV[2] .. id, '$REAPED', 1)
    redis.call('HSET', ARGV[2] .. id, '$STATE', '$QUEUED')
    ids[#ids + 1] = id
  else
    ids[#ids + 1] = ''
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return ids
""")


@dataclass(frozen=True)
class Held:
    """One reserved queue item."""

    field: str          # key in the held hash: "<list>\\n<seq>"
    raw: str            # the queue item, byte for byte
    deliveries: int     # this job's delivery count, this one included (0: no job id)
    alone: str | None   # a worker that died while running this job alone, if any
    cancelled: bool = False    # the client cancelled it before a worker took it

    @property
    def list_key(self) -> str:
        return self.field.rsplit("\n", 1)[0]


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Reservations.commit` writes for one held item."""

    field: str
    job_id: str | None = None
    result: str | None = None      # Celery result meta, JSON; None = ack only
    state: str = contract.DONE     # done | failed | dead
    queue: str | None = None


class Reservations:
    def __init__(self, redis, *, record_ttl_s: int = 3600, result_ttl_s: int = 3600,
                 max_bytes: int = 1 << 24):
        """``max_bytes``: items longer than this are held without being decoded (the
        worker refuses them; workers/admission.py)."""
        self.redis = redis
        self.record_ttl_s = int(record_ttl_s)
        self.result_ttl_s = int(result_ttl_s)
        self.max_bytes = int(max_bytes)
        self._reserve = redis.register_script(_RESERVE)
        self._commit = redis.register_script(_COMMIT)
        self._release = redis.register_script(_RELEASE)
        self._reap = redis.register_script(_REAP)

    def reserve(self, worker_id: str, queues: list[str], n: int, now: float, seq: int) -> list[Held] | None:
        """Take up to ``n`` jobs; None if this worker has no live heartbeat (nothing taken)."""
        keys = [contract.heartbeat_key(worker_id), contract.held_key(worker_id), contract.HOLDERS_KEY]
        for q in queues:
            keys += contract.queue_keys(q)
        args = [worker_id, n, repr(now), self.record_ttl_s, self.max_bytes, seq,
                contract.JOB_PREFIX, contract.STATS_PREFIX, *queues]
        reply = self._reserve(keys=keys, args=args)
        if reply == -1:
            return None
        return [Held(reply[i], reply[i + 1], int(reply[i + 2]), reply[i + 3] or None, bool(reply[i + 4]))
                for i in range(0, len(reply), 5)]

    def commit(self, worker_id: str, outcomes: list[Outcome]) -> list[bool]:
        """Answer and forget held jobs, in one step; False for a job this worker no longer holds."""
        if not outcomes:
            return []
        args: list = [self.result_ttl_s, self.record_ttl_s, contract.JOB_PREFIX, contract.STATS_PREFIX]
        for o in outcomes:
            key = contract.result_key(o.job_id) if o.job_id and o.result is not None else ""
            args += [o.field, o.job_id or "", key, o.result or "", o.state, o.queue or ""]
        reply = self._commit(keys=[contract.held_key(worker_id)], args=args)
        return [bool(x) for x in reply]

    def release(self, worker_id: str, fields: list[str]) -> int:
        """Put held jobs back at the front of their lists, not run."""
        if not fields:
            return 0
        return int(self._release(keys=[contract.held_key(worker_id)], args=[contract.JOB_PREFIX, *fields]))

    def reap(self, worker_id: str) -> list[str] | None:
        """Restore a dead worker's held jobs; None if it is alive (its heartbeat exists)."""
        reply = self._reap(keys=[contract.heartbeat_key(worker_id), contract.held_key(worker_id),
                                 contract.HOLDERS_KEY], args=[worker_id, contract.JOB_PREFIX])
        return None if reply is None else list(reply)

    def holders(self) -> set[str]:
        return set(self.redis.smembers(contract.HOLDERS_KEY))

    def held(self, worker_id: str) -> dict[str, str]:
        return self.redis.hgetall(contract.held_key(worker_id))

    def dead_holders(self) -> list[str]:
        """Workers that hold jobs but have no heartbeat (dead, or not yet reaped)."""
        ids = sorted(self.holders())
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for w in ids:
            pipe.exists(contract.heartbeat_key(w))
        return [w for w, alive in zip(ids, pipe.execute()) if not alive]


_SNAPSHOT = """
-- Read-only. KEYS: the queue's 4 lists, holders.  ARGV: heartbeat prefix, held prefix,
-- submitted-at header.  Returns {waiting in lists, oldest tail item per list x4,
-- held by live workers, held by dead workers, oldest submit time held by dead workers}.
local waiting, tails = 0, {}
local lists = {}
for i = 1, 4 do
  waiting = waiting + redis.call('LLEN', KEYS[i])
  tails[i] = redis.call('LINDEX', KEYS[i], -1) or ''
  lists[KEYS[i]] = true
end
local live, dead, oldest = 0, 0, ''
for _, w in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if redis.call('EXISTS', ARGV[1] .. w) == 1 then
    for _, f in ipairs(redis.call('HKEYS', ARGV[2] .. w)) do
      if lists[string.match(f, '^(.*)\\n[^\\n]*$')] then live = live + 1 end
    end
  else
    local all = redis.call('HGETALL', ARGV[2] .. w)
    for i = 1, #all, 2 do
      if lists[string.match(all[i], '^(.*)\\n[^\\n]*$')] then
        dead = dead + 1
        local ok, msg = pcall(cjson.decode, all[i + 1])
        local t = ok and type(msg) == 'table' and type(msg.headers) == 'table' and tonumber(msg.headers[ARGV[3]])
        if t and (oldest == '' or t < tonumber(oldest)) then oldest = tostring(t) end
      end
    end
  end
end
return {waiting, tails[1], tails[2], tails[3], tails[4], live, dead, oldest}
"""


@dataclass(frozen=True)
class Backlog:
    """One queue's jobs, read in one atomic step: in the lists, held by live workers (in
    flight: exact, unlike a heartbeat that is up to an interval old), and held by dead
    workers (waiting to be reaped: backlog, never invisible)."""

    listed: int
    oldest_items: tuple[str, ...]   # the next item of each priority list ("" if empty)
    live: int
    dead: int
    dead_oldest_at: float | None

    @property
    def waiting(self) -> int:
        return self.listed + self.dead


def backlog(redis, queue: str) -> Backlog:
    script = redis.register_script(_SNAPSHOT)
    r = script(keys=[*contract.queue_keys(queue), contract.HOLDERS_KEY],
               args=[contract.HEARTBEAT_PREFIX, contract.HELD_PREFIX, contract.HEADER_SUBMITTED_AT])
    return Backlog(int(r[0]), tuple(r[1:5]), int(r[5]), int(r[6]), float(r[7]) if r[7] else None)


def orphaned(redis, queue: str) -> tuple[int, float | None]:
    """Jobs of ``queue`` held by dead workers, and the oldest one's submit time."""
    b = backlog(redis, queue)
    return b.dead, b.dead_oldest_at


def reap_dead(store: Reservations, redis, *, grace_s: float,
              on_reaped: Callable[[str, list[str]], None] | None = None) -> dict[str, list[str]]:
    """One reaper pass: restore what dead workers held; ``{worker: job ids restored}``.

    After Redis itself restarts, every heartbeat may have expired while it was down, and
    live workers beat again within an interval; so nothing is reaped until Redis has been
    up for ``grace_s``: a live worker is never robbed because the broker blinked.
    """
    if int(redis.info("server").get("uptime_in_seconds", 0)) < grace_s:
        return {}
    restored: dict[str, list[str]] = {}
    for worker in store.dead_holders():
        ids = store.reap(worker)
        if not ids:
            continue
        restored[worker] = ids
        log.warning("worker %s is gone (heartbeat expired): %d held job(s) back at the front of "
                    "their queues", worker, len(ids))
        if on_reaped is not None:
            on_reaped(worker, [i for i in ids if i])
    if restored:
        pipe = redis.pipeline(transaction=False)
        for key in redis.scan_iter(match=contract.QUEUE_PREFIX + "*", count=500):
            pipe.publish(contract.wake_channel(contract.queue_of_list(key)), "reaped")
        pipe.execute()
    return restored

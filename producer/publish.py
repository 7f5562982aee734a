"""Queue many jobs in one round trip: records, messages and the wake-up, in one step.

One Lua call per chunk writes each job's record (``queued``), pushes its Celery protocol-2
message (elastiq/messages.py) onto the model's list, and publishes on the queue's wake
channel, so idle workers take the jobs at once. Atomic: a chunk is queued whole or not at
all.
"""

from __future__ import annotations

from elastiq import contract, jobrecord

CHUNK = 500      # jobs per round trip

_SUBMIT = jobrecord.lua("""
-- KEYS[1]: the list.  ARGV: job_prefix, record_ttl, model, submitted_at, wake channel,
-- then job id, queue item pairs
for i = 6, #ARGV, 2 do
  local rec = ARGV[1] .. ARGV[i]
  redis.call('HSET', rec, '$STATE', '$QUEUED', '$MODEL', ARGV[3], '$SUBMITTED_AT', ARGV[4])
  redis.call('EXPIRE', rec, ARGV[2])
  redis.call('LPUSH', KEYS[1], ARGV[i + 1])
end
redis.call('PUBLISH', ARGV[5], (#ARGV - 5) / 2)
return (#ARGV - 5) / 2
""")


class Publisher:
    def __init__(self, redis, record_ttl_s: int):
        self.record_ttl_s = int(record_ttl_s)
        self._submit = redis.register_script(_SUBMIT)

    def publish(self, list_key: str, model: str, submitted_at: float, items: list[tuple[str, str]]) -> None:
        """``items``: (job id, queue item) pairs, all for ``list_key``."""
        queue = contract.queue_of_list(list_key)
        for i in range(0, len(items), CHUNK):
            args: list = [contract.JOB_PREFIX, self.record_ttl_s, model, repr(submitted_at),
                          contract.wake_channel(queue)]
            for job_id, raw in items[i:i + CHUNK]:
                args += (job_id, raw)
            self._submit(keys=[list_key], args=args)

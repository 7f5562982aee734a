"""A real ``elastiq gateway`` process (uvicorn) on a free loopback port, for the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from elastiq.local import procs
from tests.conftest import ROOT

TOKEN = "test-token-" + "a1b2c3d4" * 4


class GatewayProcess:
    def __init__(self, redis_url: str, log_dir: Path, *, env: dict | None = None, token: str | None = TOKEN,
                 args: tuple[str, ...] = ()):
        self.redis_url = redis_url
        self.log_path = log_dir / f"gateway-{os.getpid()}-{time.monotonic_ns()}.log"
        self.env = env or {}
        self.token = token
        self.args = args
        self.port = procs.free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout_s: float = 60) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIQ_GATEWAY_")}
        env.update({"ELASTIQ_REDIS_URL": self.redis_url,
                    "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")})
        if self.token:
            env["ELASTIQ_GATEWAY_TOKENS"] = self.token
        env.update(self.env)
        cmd = [sys.executable, "-m", "elastiq.cli", "gateway", "--port", str(self.port), *self.args]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not answer in {timeout_s}s:\n{self.log()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def queued_jobs(redis, models=("minilm", "debug", "tiny-clf")) -> tuple[int, int]:
    """(messages waiting in every list of these models' queues, job records)."""
    from elastiq import contract

    waiting = sum(redis.llen(k) for m in models for k in contract.queue_keys(contract.queue_for(m)))
    records = sum(1 for _ in redis.scan_iter(match=contract.JOB_PREFIX + "*", count=1000))
    return waiting, records

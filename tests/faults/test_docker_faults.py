"""Scenario 6: the Docker API fails (HTTP 500s, then calls that hang past the client
timeout) under the docker backend. The controller reports each error, backs off, does not
start or stop anything while it cannot see (no flap), and recovers when the API returns.

The faults come from a small TCP proxy in front of the real Docker Engine's socket (a
fault injector like Toxiproxy, not a mock): ``pass`` pipes bytes, ``error`` answers 500,
``hang`` accepts and never answers.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from elastiq.local import procs
from tests.conftest import require

pytestmark = [pytest.mark.faults, pytest.mark.docker]

DOCKER_SOCK = "/var/run/docker.sock"


class FaultProxy(threading.Thread):
    def __init__(self):
        super().__init__(name="docker-fault-proxy", daemon=True)
        self.mode = "pass"
        self.port = procs.free_port()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(64)
        self.held: list[socket.socket] = []
        self.active: list[socket.socket] = []
        self.requests = {"pass": 0, "error": 0, "hang": 0}

    def set_mode(self, mode: str) -> None:
        """Switch, and cut the open connections (the SDK keeps one alive across calls)."""
        self.mode = mode
        for c in self.active + self.held:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.active.clear()
        self.held.clear()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn, self.mode), daemon=True).start()

    def handle(self, conn: socket.socket, mode: str) -> None:
        self.requests[mode] += 1
        if mode == "hang":
            self.held.append(conn)
            return
        if mode == "error":
            try:
                conn.recv(65536)
                body = b'{"message": "injected fault"}'
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            finally:
                conn.close()
            return
        up = socket.socket(socket.AF_UNIX)
        try:
            up.connect(DOCKER_SOCK)
        except OSError:
            conn.close()
            return

        def pipe(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        self.active += [conn, up]
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        pipe(conn, up)

    def close(self) -> None:
        self.srv.close()
        for c in self.held:
            c.close()


@pytest.mark.scenario("06_docker_api_faults", "Docker API answers 500 (6 s) then hangs past the 2 s client timeout (8 s)")
def test_docker_api_errors_back_off_report_no_flap_recover(redis_url, redis, docker_client, image, scenario):
    require(os.path.exists(DOCKER_SOCK), "no Docker Engine socket")
    direct = docker_client
    from autoscaler.backends.docker import DockerBackend
    from autoscaler.controller import Controller
    from autoscaler.policy import PolicyConfig

    pool = f"faults-{uuid.uuid4().hex[:6]}"
    proxy = FaultProxy()
    proxy.start()
    env = {"ELASTIQ_REDIS_URL": redis_url, "ELASTIQ_WORKER_THREADS": "1", "ELASTIQ_WORKER_SLOTS": "2"}
    backend = DockerBackend(image, pool=pool, network="host", cpus=1.0, memory_mb=1024,
                            stop_timeout_s=10, api_timeout_s=2, env=env,
                            docker_host=f"tcp://127.0.0.1:{proxy.port}")
    cleanup = DockerBackend(image, pool=pool, stop_timeout_s=10)
    rows: list[dict] = []
    ctl = Controller(redis=redis, backend=backend, groups=["minilm"], record=rows.append, max_backoff_s=4.0,
                     config=PolicyConfig(min_workers=1, max_workers=2, stabilisation_min_s=300))

    from autoscaler.backends.docker import POOL_LABEL

    def containers():      # straight to the engine, not through the proxy
        return sorted(c.id for c in direct.containers.list(all=True, filters={"label": f"{POOL_LABEL}={pool}"}))

    def ticks(seconds):
        end = time.time() + seconds
        while time.time() < end:
            ctl.reconcile_once(time.time())
            time.sleep(0.5)                        # the loop's interval: each phase lasts `seconds`

    try:
        ticks(3)                                   # healthy: one worker container
        before = containers()
        n_ok = len(rows)
        proxy.set_mode("error")
        t_fault = time.time()
        ticks(6)
        proxy.set_mode("hang")
        ticks(8)
        during = containers()
        fault_rows = rows[n_ok:]
        proxy.set_mode("pass")
        t_clear = time.time()
        recovered_at = None
        end = time.time() + 30
        while time.time() < end:
            row = ctl.reconcile_once(time.time())[0]
            if row["action"] in ("hold", "up +1", "down -1") and "error" not in row["reason"] \
                    and "backing off" not in row["reason"]:
                recovered_at = time.time()
                break
            time.sleep(0.5)
        after = containers()
        failures_peak = max((ctl.state["minilm"].failures, 0))
    finally:
        try:
            cleanup.stop_all()
        finally:
            proxy.close()
    errors = [r for r in fault_rows if r["action"] == "error"]
    holds = [r for r in fault_rows if "backing off" in r["reason"]]
    acts = [r for r in fault_rows if r["action"].startswith(("up", "down"))]
    scenario.record(    # no jobs in this scenario: containers are counted on the engine directly
        recovery_s_max=round(recovered_at - t_clear, 2) if recovered_at else None,
        errors_reported=len(errors), ticks_backing_off=len(holds), scale_actions_during_faults=len(acts),
        containers_before=len(before), containers_during=len(during), containers_after=len(after),
        api_requests=proxy.requests, fault_s=round(t_clear - t_fault, 1), failures_at_end=failures_peak,
        sample_error=errors[0]["reason"][:160] if errors else None,
        notes="recovery = fault cleared to the first normal decision (backoff capped at 4 s here)")
    assert len(before) == 1, before
    assert errors and holds, [r["reason"] for r in fault_rows][:5]
    assert not acts, acts                          # no start/stop while blind: no flap
    assert during == before and after == before    # the same single container throughout
    assert recovered_at is not None, rows[-3:]

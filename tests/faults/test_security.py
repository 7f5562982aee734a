"""Secure by default, end to end: Redis password + TLS with certificate checks for the
client and the workers; a wrong CA, a missing password, or plain text are refused; a
certificate for another host is refused by the client and by the worker, and a URL that
would switch the checks off is refused; the local stack listens on loopback only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time

import pytest

from elastiq.errors import BrokerUnavailableError
from elastiq.local import procs
from tests.conftest import ROOT, WorkerPool, require
from tests.faults.conftest import ResultTap, exit_code, tally, wait_for

pytestmark = pytest.mark.faults

PASSWORD = "s3cret-elastiq-test"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem"


@pytest.fixture
def certs(tmp_path):
    require(shutil.which("openssl") is not None, "openssl is not installed")
    d = tmp_path / "certs"
    d.mkdir()
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", "server.pem", cwd=d)
    # signed by the same trusted CA, but for another host: only the hostname check refuses it
    (d / "elsewhere.cnf").write_text("subjectAltName=DNS:redis.elsewhere.example,IP:10.255.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis.elsewhere.example",
            "-keyout", "elsewhere.key", "-out", "elsewhere.csr", cwd=d)
    openssl("x509", "-req", "-in", "elsewhere.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "elsewhere.cnf", "-out", "elsewhere.pem", cwd=d)
    return d


def start_tls_redis(certs, tmp_path, cert: str = "server"):
    """A TLS-only, password-protected redis-server with ``cert``; plus a unix socket for the
    test's own observer connection (no TLS, so it sees the server whatever its certificate)."""
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    port = procs.free_port()
    data = tmp_path / f"tls-redis-{cert}"
    data.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs / f"{cert}.pem"), "--tls-key-file", str(certs / f"{cert}.key"),
         "--tls-ca-cert-file", str(certs / "ca.pem"), "--tls-auth-clients", "no",
         "--unixsocket", str(data / "redis.sock"), "--unixsocketperm", "700",
         "--requirepass", PASSWORD, "--dir", str(data), "--appendonly", "yes", "--save", "",
         "--logfile", str(data / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    require(procs.wait_port(port, 10), "redis-server has no TLS support (redis-server --tls-port)")
    return proc, port, data / "redis.sock"


@pytest.fixture
def tls_redis(certs, tmp_path):
    proc, port, _ = start_tls_redis(certs, tmp_path)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def try_submit(url, ca, monkeypatch):
    """Submit one job with this URL and CA; the exception text, or None on success."""
    from producer import Client

    if ca:
        monkeypatch.setenv("ELASTIQ_REDIS_CA", str(ca))
    else:
        monkeypatch.delenv("ELASTIQ_REDIS_CA", raising=False)
    try:
        with Client(url) as c:
            c.submit("debug", ["x"])
    except (BrokerUnavailableError, Exception) as exc:  # noqa: BLE001 - the refusal is the point
        return f"{type(exc).__name__}: {exc}"
    return None


def flower_sees_worker(url, ca, wid, tmp_path) -> bool:
    """Start Flower on loopback with the same settings; ask it (over the broker) for workers."""
    import urllib.request

    port = procs.free_port()
    env = {**os.environ, "ELASTIQ_REDIS_URL": url, "ELASTIQ_REDIS_CA": str(ca), "PYTHONPATH": str(ROOT)}
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "elastiq.local.flower_app", "flower",
                               "--address=127.0.0.1", f"--port={port}", f"--basic_auth=ops:{PASSWORD}"],
                              env=env, cwd=ROOT,
                              stdout=open(tmp_path / "flower.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        if not procs.wait_port(port, 30):
            return False
        import base64
        import urllib.error

        api = f"http://127.0.0.1:{port}/api/workers?refresh=1"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
            return False                                   # the UI must not open without the password
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                return False
        auth = {"Authorization": "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()}
        end = time.time() + 30
        while time.time() < end:
            try:
                with urllib.request.urlopen(urllib.request.Request(api, headers=auth), timeout=10) as r:
                    if wid in json.loads(r.read() or b"{}"):
                        return True
            except OSError:
                pass
            time.sleep(1)
        return False
    finally:
        os.killpg(flower.pid, signal.SIGTERM)
        try:
            flower.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(flower.pid, signal.SIGKILL)
            flower.wait()


@pytest.mark.scenario("09d_tls_password", "Redis password + TLS (certificate and hostname checked): client and "
                                          "worker end to end")
def test_password_and_tls_end_to_end(models_env, certs, tls_redis, tmp_path, monkeypatch, scenario):
    from elastiq.redisconn import redis_client
    from elastiq.settings import Settings

    port = tls_redis
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
    monkeypatch.setenv("ELASTIQ_REDIS_CA", str(certs / "ca.pem"))
    monkeypatch.setenv("ELASTIQ_REDIS_URL", url)
    observer = redis_client(Settings.from_env(redis_url=url))
    tap = ResultTap(observer)
    tap.start()
    pool = WorkerPool(url, tmp_path)
    try:
        (wid,) = pool.start("debug", n=1, slots=4, env={"ELASTIQ_REDIS_CA": str(certs / "ca.pem")})
        from producer import Client

        with Client(url) as c:
            jobs = c.submit_many("debug", [["hello"], ["tls!"]])
            results = [j.result(timeout=60).outputs for j in jobs]
        log = pool.log(wid)
        flower_sees = flower_sees_worker(url, certs / "ca.pem", wid, tmp_path)
        counts = tally(tap, observer, [j.id for j in jobs], "elastiq.debug")
    finally:
        pool.stop_all()
        tap.stop()
        observer.close()
    refusals = {
        "wrong CA": try_submit(url, certs / "other-ca.pem", monkeypatch),
        "no CA given (system store)": try_submit(url, None, monkeypatch),
        "wrong password": try_submit(f"rediss://:nope@127.0.0.1:{port}/0", certs / "ca.pem", monkeypatch),
        "no password": try_submit(f"rediss://127.0.0.1:{port}/0", certs / "ca.pem", monkeypatch),
        "plain text to the TLS port": try_submit(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", None, monkeypatch),
    }
    data = scenario.record(**counts, re_executed=None, flower_over_tls=flower_sees,
                           refused={k: (v or "ACCEPTED")[:120] for k, v in refusals.items()})
    assert results == [[5], [4]]
    assert counts["delivered"] == 2 and counts["lost"] == counts["duplicated"] == 0, data
    assert flower_sees, "Flower reached the workers over TLS with the password"
    assert "rediss://" in log and PASSWORD not in log, "the worker used TLS and did not log the password"
    for case, err in refusals.items():
        assert err is not None, f"{case}: the connection was accepted"
    assert "certificate verify failed" in refusals["wrong CA"].lower()


def test_tls_options_check_the_hostname_explicitly(certs):
    from elastiq.celeryconf import celery_config
    from elastiq.redisconn import redis_client
    from elastiq.settings import Settings

    settings = Settings(redis_url="rediss://:pw@127.0.0.1:1/0", redis_ca=str(certs / "ca.pem"))
    conf = celery_config(settings)
    for part in ("broker_use_ssl", "redis_backend_use_ssl"):
        assert conf[part]["ssl_check_hostname"] is True and conf[part]["ssl_ca_certs"].endswith("ca.pem")
    kwargs = redis_client(settings).connection_pool.connection_kwargs
    assert kwargs["ssl_check_hostname"] is True and kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_certificate_for_another_host_is_refused(models_env, certs, tmp_path, monkeypatch):
    """The server's certificate is valid (signed by the CA we trust) but names another host."""
    import redis as redis_py

    from elastiq import contract
    from elastiq.errors import ConfigError
    from tests.faults.rawmsg import task_message

    proc, port, sock = start_tls_redis(certs, tmp_path, cert="elsewhere")
    observer = redis_py.Redis(unix_socket_path=str(sock), password=PASSWORD, decode_responses=True)
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0"
    pool = WorkerPool(url, tmp_path)
    try:
        client_error = try_submit(url, certs / "ca.pem", monkeypatch)
        # a URL asking to skip the hostname check (or the certificate check) is refused outright
        url_off = try_submit(url + "?ssl_check_hostname=false", certs / "ca.pem", monkeypatch)
        url_none = try_submit(url + "?ssl_cert_reqs=none", certs / "ca.pem", monkeypatch)
        # the worker: a job waits on its queue, the worker must neither take it nor heartbeat
        observer.lpush(contract.queue_for("debug"), task_message({"model": "debug", "inputs": ["x"]}))
        (wid,) = pool.start("debug", n=1, slots=2, wait=False, env={"ELASTIQ_REDIS_CA": str(certs / "ca.pem")})
        # refused three times (it keeps retrying, 0.5 s, 1 s, 2 s apart), it must still hold nothing
        wait_for(lambda: pool.log(wid).count("cannot reach Redis") >= 3 or pool.procs[wid].poll() is not None, 60,
                 interval_s=0.2, what="the worker refused by the broker three times")
        worker_alive = pool.procs[wid].poll() is None
        queued = observer.llen(contract.queue_for("debug"))
        beat = observer.exists(contract.heartbeat_key(wid))
        worker_log = pool.log(wid)
        (wid_off,) = pool.start("debug", n=1, wait=False, env={"ELASTIQ_REDIS_CA": str(certs / "ca.pem"),
                                                               "ELASTIQ_REDIS_URL": url + "?ssl_check_hostname=0"})
        off_code = exit_code(pool, wid_off, 60)
    finally:
        pool.stop_all()
        observer.close()
        proc.terminate()
        proc.wait(10)
    # the URL names 127.0.0.1: OpenSSL says "IP address mismatch" (for a name, "Hostname mismatch")
    assert client_error and "mismatch" in client_error.lower(), client_error
    assert url_off and ConfigError.__name__ in url_off and "ssl_check_hostname" in url_off, url_off
    assert url_none and ConfigError.__name__ in url_none and "ssl_cert_reqs" in url_none, url_none
    assert worker_alive and queued == 1 and not beat, (worker_alive, queued, beat, worker_log[-2000:])
    assert "mismatch" in worker_log.lower(), worker_log[-2000:]
    assert off_code not in (0, None) and "ssl_check_hostname" in pool.log(wid_off), pool.log(wid_off)[-2000:]


@pytest.mark.scenario("09e_loopback_only", "`elastiq up` + Flower + autoscaler metrics: every listening socket of "
                                           "the stack")
def test_local_stack_listens_on_loopback_only(models_env, tmp_path, scenario):
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    import psutil

    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTIQ_")}
    env.update(ELASTIQ_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), ELASTIQ_WORKER_THREADS="1",
               ELASTIQ_MODELS=os.environ["ELASTIQ_MODELS"])

    def cli(*args, timeout=240):
        return subprocess.run([sys.executable, "-m", "elastiq.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    try:
        up = cli("up", "--workers", "2", "--models", "debug", "--redis-port", str(procs.free_port()), "--json")
        assert up.returncode == 0, up.stderr[-2000:]
        state = json.loads(up.stdout)
        # the autoscaler with its metrics server, as `elastiq up --autoscale` starts it (started
        # apart: with --autoscale, `up` can wait for a worker the autoscaler is draining)
        metrics_port = procs.free_port()
        auto = subprocess.Popen(
            [sys.executable, "-m", "elastiq.cli", "autoscale", "--backend", "process", "--models", "debug",
             "--dry-run", "--metrics-port", str(metrics_port)],
            env={**env, "ELASTIQ_REDIS_URL": state["redis_url"]}, cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        # Flower and the autoscaler's metrics server bind after start
        for name, port in (("Flower", state["flower_port"]), ("the autoscaler's metrics server", metrics_port)):
            assert port and procs.wait_port(port, 60), f"{name} never listened on port {port}"
        pids = {state["redis_pid"], state.get("flower_pid"), auto.pid} - {None}
        for f in (tmp_path / "home" / "workers").glob("*.json"):
            pids.add(json.loads(f.read_text())["pid"])
        listening = {}
        for pid in sorted(pids):
            try:
                p = psutil.Process(pid)
                for q in [p, *p.children(recursive=True)]:
                    for c in q.net_connections(kind="inet"):
                        if c.status == psutil.CONN_LISTEN:
                            listening.setdefault(f"{q.pid}:{' '.join(q.cmdline()[1:4])}", []).append(
                                f"{c.laddr.ip}:{c.laddr.port}")
            except psutil.NoSuchProcess:
                continue
    finally:
        if "auto" in locals():
            auto.terminate()
            auto.wait(20)
        cli("down")
    exposed = {k: v for k, v in listening.items() if any(not a.startswith(("127.0.0.1:", "::1:")) for a in v)}
    scenario.record(processes=len(pids), listening=listening, exposed=exposed)    # no jobs in this scenario
    assert len(pids) >= 4 and listening, listening
    assert state["flower_port"] and any(a.endswith(f":{state['flower_port']}") for v in listening.values() for a in v)
    assert not exposed, exposed

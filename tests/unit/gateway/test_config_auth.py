"""Gateway settings, the refuse-to-start rules and bearer-token checks: no services."""

from __future__ import annotations

import hmac

import pytest

from elastiq.errors import ConfigError
from gateway import auth
from gateway.config import GatewayConfig, is_loopback, load_tokens

A, B = "a" * 16 + "-token-one", "b" * 16 + "-token-two"


def test_tokens_from_env_and_file(tmp_path):
    f = tmp_path / "tokens"
    f.write_text(f"# the gateway's tokens\n{B}\n\n  {A}  \n")
    assert load_tokens({"ELASTIQ_GATEWAY_TOKENS": f" {A} ,,"}) == (A,)
    assert load_tokens({"ELASTIQ_GATEWAY_TOKENS": A, "ELASTIQ_GATEWAY_TOKENS_FILE": str(f)}) == (A, B)
    assert load_tokens({}, str(f)) == (B, A)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokens({}, str(tmp_path / "missing"))


@pytest.mark.parametrize("tokens,insecure,host,ok", [
    ((A,), False, "127.0.0.1", True),
    ((A,), False, "0.0.0.0", True),          # told otherwise, with a token
    ((), False, "127.0.0.1", False),         # no token: refuse
    ((), True, "127.0.0.1", True),           # explicitly insecure on loopback
    ((), True, "::1", True),
    ((), True, "localhost", True),
    ((), True, "0.0.0.0", False),            # insecure beyond loopback: refuse
    ((), True, "10.1.2.3", False),
])
def test_refuse_to_start_rules(tokens, insecure, host, ok):
    config = GatewayConfig(tokens=tokens, insecure_no_auth=insecure, host=host)
    if ok:
        config.check_startup()
    else:
        with pytest.raises(ConfigError):
            config.check_startup()


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="shorter than 16"):
        GatewayConfig(tokens=("short",))
    with pytest.raises(ConfigError, match="ELASTIQ_GATEWAY_MAX_BACKLOG"):
        GatewayConfig.from_env({"ELASTIQ_GATEWAY_MAX_BACKLOG": "many"})
    with pytest.raises(ConfigError, match="max_body_bytes"):
        GatewayConfig.from_env({"ELASTIQ_GATEWAY_MAX_BODY_BYTES": "0"})
    with pytest.raises(ConfigError, match="SYNC_TIMEOUT"):
        GatewayConfig.from_env({"ELASTIQ_GATEWAY_SYNC_TIMEOUT_S": "500"})
    c = GatewayConfig.from_env({"ELASTIQ_GATEWAY_MAX_BACKLOG": "7", "ELASTIQ_GATEWAY_SYNC_TIMEOUT_S": "2.5",
                                "ELASTIQ_GATEWAY_TOKENS": A}, port=9000)
    assert (c.max_backlog, c.sync_timeout_s, c.port, c.tokens, c.host) == (7, 2.5, 9000, (A,), "127.0.0.1")


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.9.9.9", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.1", "example.com", ""]))


@pytest.mark.parametrize("header,ok", [
    (f"Bearer {A}", True), (f"bearer {A}", True), (f"Bearer {B}", True), (f"Bearer  {A} ", True),
    (None, False), ("", False), (A, False), (f"Basic {A}", False), (f"Bearer {A}x", False),
    (f"Bearer {A[:-1]}", False), ("Bearer ", False), (f"Bearer {A},{B}", False),
])
def test_bearer_check(header, ok):
    tokens = auth.TokenSet((A, B))
    assert tokens.check(header.encode() if header is not None else None) is ok


def test_every_token_is_compared_no_early_exit(monkeypatch):
    calls, real = [], hmac.compare_digest

    def counting(a, b):
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    tokens = auth.TokenSet((A, B, "c" * 20))
    assert tokens.check(f"Bearer {A}".encode())       # matches the first one ...
    assert len(calls) == 3                             # ... and still compared with all three

"""ELASTIQ_REDIS_PASSWORD_FILE: the Redis password from a secret file (Swarm, Kubernetes)."""

from __future__ import annotations

import pytest

from elastiq.errors import ConfigError
from elastiq.settings import Settings


def test_password_file_goes_into_the_url(tmp_path):
    secret = tmp_path / "redis_password"
    secret.write_text("p@ss:w/rd\n")
    s = Settings.from_env({"ELASTIQ_REDIS_URL": "redis://redis:6379/0",
                           "ELASTIQ_REDIS_PASSWORD_FILE": str(secret)})
    assert s.redis_url == "redis://:p%40ss%3Aw%2Frd@redis:6379/0"
    from redis.connection import parse_url

    assert parse_url(s.redis_url)["password"] == "p@ss:w/rd"


def test_password_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        Settings.from_env({"ELASTIQ_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        Settings.from_env({"ELASTIQ_REDIS_PASSWORD_FILE": str(empty)})
    full = tmp_path / "pw"
    full.write_text("x")
    with pytest.raises(ConfigError, match="use one"):
        Settings.from_env({"ELASTIQ_REDIS_URL": "redis://:y@h:1/0", "ELASTIQ_REDIS_PASSWORD_FILE": str(full)})

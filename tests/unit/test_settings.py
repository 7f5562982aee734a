"""One env parser for every part: typed values, ConfigError naming the variable."""

from __future__ import annotations

import pytest

from autoscaler.backends.process import ProcessBackend
from autoscaler.policy import PolicyConfig
from autoscaler.settings import AutoscalerSettings
from elastiq.errors import ConfigError
from elastiq.settings import Settings
from gateway.config import GatewayConfig
from workers.settings import WorkerSettings


def test_each_part_reads_its_variables():
    env = {"ELASTIQ_WORKER_SLOTS": "4", "ELASTIQ_MAX_BATCH": "8", "ELASTIQ_WORKER_MAX_RSS_MB": "900",
           "ELASTIQ_AUTOSCALE_INTERVAL_S": "0.5", "ELASTIQ_AUTOSCALE_MAX_WORKERS": "7",
           "ELASTIQ_JOB_TIME_LIMIT_S": "300", "ELASTIQ_MAX_TEXT_CHARS": "100", "ELASTIQ_GATEWAY_PORT": "9001",
           "ELASTIQ_GATEWAY_TOKENS": "a-token-long-enough-1234"}
    w = WorkerSettings.from_env(env)
    assert (w.slots, w.max_batch, w.max_rss_mb, w.threads) == (4, 8, 900.0, 0)
    assert AutoscalerSettings.from_env(env).interval_s == 0.5
    assert PolicyConfig.from_env(env).max_workers == 7
    s = Settings.from_env(env)
    assert s.job_time_limit_s == 300.0 and s.limits.max_text_chars == 100
    assert GatewayConfig.from_env(env).port == 9001
    assert WorkerSettings.from_env({"ELASTIQ_WORKER_MAX_RSS_MB": ""}).max_rss_mb is None


@pytest.mark.parametrize("build, key", [
    (WorkerSettings.from_env, "ELASTIQ_WORKER_SLOTS"),
    (WorkerSettings.from_env, "ELASTIQ_MAX_WAIT_MS"),
    (AutoscalerSettings.from_env, "ELASTIQ_AUTOSCALE_METRICS_PORT"),
    (PolicyConfig.from_env, "ELASTIQ_AUTOSCALE_MIN_WORKERS"),
    (Settings.from_env, "ELASTIQ_HEARTBEAT_TTL_S"),
    (Settings.from_env, "ELASTIQ_MAX_ITEMS_PER_JOB"),
    (GatewayConfig.from_env, "ELASTIQ_GATEWAY_MAX_BACKLOG"),
    (lambda env: ProcessBackend.from_env(env), "ELASTIQ_WORKER_THREADS"),
])
def test_a_value_that_does_not_parse_names_its_variable(build, key):
    with pytest.raises(ConfigError, match=key):
        build({key: "many", "ELASTIQ_GATEWAY_TOKENS": "a-token-long-enough-1234"})


@pytest.mark.parametrize("env", [{"ELASTIQ_WORKER_SLOTS": "0"}, {"ELASTIQ_MAX_BATCH": "0"},
                                 {"ELASTIQ_WORKER_MAX_RSS_MB": "-1"}, {"ELASTIQ_WORKER_MODELS": " , "}])
def test_worker_values_out_of_range_are_refused(env):
    with pytest.raises(ConfigError):
        WorkerSettings.from_env(env)


def test_autoscaler_values_out_of_range_are_refused():
    with pytest.raises(ConfigError, match="INTERVAL_S"):
        AutoscalerSettings.from_env({"ELASTIQ_AUTOSCALE_INTERVAL_S": "0"})

"""The one Celery configuration that every process on the broker uses.

Client, workers, autoscaler and Flower build their Celery app from here, so they agree
on the serializer (JSON only, pickle never accepted) and on the visibility timeout
(kombu lets the *shortest* one among all processes win).
"""

from __future__ import annotations

import ssl

from celery import Celery

from elastiq.settings import Settings


def celery_config(settings: Settings) -> dict:
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
        "health_check_interval": 10,
    }
    conf = dict(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        # JSON only, both ways: a pickled message is refused at decode, never run.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Fair dispatch: a worker holds at most one message per free slot, acks after
        # the job, and a job whose process died goes back to the queue.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        visibility_timeout=settings.visibility_timeout_s,
        # Measured on Celery 5.7: True lost jobs across a Redis restart. Keep False and
        # skip a redelivered job that already succeeded instead.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_deduplicate_successful_tasks=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        result_expires=settings.result_ttl_s,
        result_extended=False,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_time_limit_s,
        worker_send_task_events=settings.task_events,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_pool_limit=10,
        redis_socket_keepalive=True,
        redis_retry_on_timeout=True,
        result_backend_always_retry=True,
        result_backend_max_retries=20,
    )
    if settings.redis_url.startswith("rediss://"):
        conf["broker_use_ssl"] = tls_options(settings)
        conf["redis_backend_use_ssl"] = tls_options(settings)
    return conf


def tls_options(settings: Settings) -> dict:
    """Certificate *and hostname* checks, set explicitly: kombu silently skips the
    certificate check without ``ssl_cert_reqs``, and redis-py's ``ssl_check_hostname``
    default has changed between versions (off before 6.0)."""
    opts: dict = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if settings.redis_ca:
        opts["ssl_ca_certs"] = settings.redis_ca
    if settings.redis_cert:
        opts["ssl_certfile"] = settings.redis_cert
        opts["ssl_keyfile"] = settings.redis_key or None
    return opts


def make_celery(settings: Settings, name: str = "elastiq") -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def redis_client(settings: Settings):
    """A plain redis-py client for elastiq's own keys (heartbeats, records, stats)."""
    import redis

    kwargs: dict = {"decode_responses": True, "socket_timeout": 10, "socket_connect_timeout": 5,
                    "health_check_interval": 10, "retry_on_timeout": True}
    if settings.redis_url.startswith("rediss://"):
        kwargs.update(tls_options(settings))
    return redis.Redis.from_url(settings.redis_url, **kwargs)

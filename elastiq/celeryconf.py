"""The Celery configuration of the processes that speak Celery on the broker.

Jobs do not go through Celery's worker machinery any more (workers/fetcher.py takes them
with owned reservations), but the wire stays Celery's: a worker answers Celery's remote
control and sends its events (Flower), and Flower reads them with this configuration.
JSON only, both ways: pickle is never accepted.
"""

from __future__ import annotations

from celery import Celery

from elastiq.redisconn import tls_options
from elastiq.settings import Settings


def celery_config(settings: Settings) -> dict:
    conf = dict(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        # JSON only, both ways: a pickled message is refused at decode, never run.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        result_expires=settings.result_ttl_s,
        worker_send_task_events=settings.task_events,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_pool_limit=10,
        redis_socket_keepalive=True,
        redis_retry_on_timeout=True,
        broker_transport_options={"health_check_interval": 10},
    )
    if settings.redis_url.startswith("rediss://"):
        conf["broker_use_ssl"] = tls_options(settings)
        conf["redis_backend_use_ssl"] = tls_options(settings)
    return conf


def make_celery(settings: Settings, name: str = "elastiq") -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app

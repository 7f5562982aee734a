"""The Celery app Flower runs with: the same broker settings as every other process."""

from elastiq.celeryconf import make_celery
from elastiq.settings import Settings

app = make_celery(Settings.from_env(), name="elastiq-flower")

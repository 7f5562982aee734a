"""The elastiq client SDK. ``from producer import Client``. Never imports torch."""

from producer.client import Client
from producer.job import Job, Result

__all__ = ["Client", "Job", "Result"]

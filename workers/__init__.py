"""elastiq workers: Celery + the model runtime + the micro-batcher. Imports torch lazily."""

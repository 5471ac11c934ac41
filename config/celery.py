"""The Celery app. Tasks are thin entry points (they take ids and call a service); the whole
beat schedule lives in `config.beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("allowance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from config.beat import BEAT_SCHEDULE  # noqa: E402  (after the app is configured)

app.conf.beat_schedule = BEAT_SCHEDULE

"""The whole beat schedule, in one place: one entry per sweeper, with when and why.

Beat only ticks; each task sweeps the rows that are due and is safe to run twice (DESIGN.md,
principle 5). Run exactly one beat (`celery worker -B` in the embedded default, the `beat`
service in docker-compose).
"""

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict] = {
    # Notifications whose worker died between claiming and sending are retried; the
    # notification log's unique key keeps each email once.
    "retry-stuck-notifications": {
        "task": "tenants.tasks.retry_stuck_notifications",
        "schedule": crontab(minute="*/10"),
    },
    # Expired, unused invitations are marked expired so the Team page and audit log say so.
    "expire-invitations": {
        "task": "tenants.tasks.expire_invitations",
        "schedule": crontab(minute=15),
    },
}

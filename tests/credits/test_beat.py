"""The one beat schedule runs every credits sweeper."""

from config.beat import BEAT_SCHEDULE


def test_the_beat_runs_every_credits_sweeper():
    tasks_scheduled = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert {
        "credits.tasks.expire_grants",
        "credits.tasks.expire_holds",
        "credits.tasks.send_low_balance_emails",
    } <= tasks_scheduled

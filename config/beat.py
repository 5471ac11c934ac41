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
    # --- billing (plans and billing_portal); each sweeper claims due rows and is safe to run twice
    # Trials whose days ran out end ("Expired subscription"); the sessions issue ends them on usage.
    "expire-trials": {"task": "plans.tasks.expire_trials", "schedule": crontab(minute="*/5")},
    # The 7-days and 2-days-left trial emails, once each (notification log keys).
    "trial-reminders": {"task": "plans.tasks.send_trial_reminders", "schedule": crontab(minute=5)},
    # A payment issue unpaid when its grace period ends suspends the subscription.
    "expire-grace-periods": {"task": "plans.tasks.expire_grace_periods", "schedule": crontab(minute="*/5")},
    # Canceled subscriptions past their end date, and free plans past their validity, expire.
    "end-subscriptions": {"task": "plans.tasks.end_subscriptions", "schedule": crontab(minute="*/5")},
    # --- credits: the balance already ignores what expired; these write down why, and tell people
    # Grants past their expiry (AI Free after 3 months, Plus credits at renewal, extra packs after
    # 30 days) get their EXPIRE entry.
    "expire-credit-grants": {"task": "credits.tasks.expire_grants", "schedule": crontab(minute="*/5")},
    # Holds past their TTL release themselves (a RELEASE entry); short TTLs, so every minute.
    "expire-credit-holds": {"task": "credits.tasks.expire_holds", "schedule": crontab(minute="*")},
    # The low-balance email, once per plan period (notification log keys).
    "credit-low-balance-emails": {
        "task": "credits.tasks.send_low_balance_emails",
        "schedule": crontab(minute="*/15"),
    },
    # --- licensing
    # A Helpdesk AI billing cycle that has started gets its ticket credits (three for every license
    # of the plan, L17, L18), once: subscription sync grants them as it sees the new period; this
    # catches any it missed (a late webhook). A second run grants nothing.
    "refresh-ticket-credits": {
        "task": "licensing.tasks.refresh_ticket_credits",
        "schedule": crontab(minute="*/5"),
    },
    # Local gateway's clock: period roll-overs (renewal invoices) and scheduled changes falling due.
    # Stripe runs its own clock in production; there this does nothing.
    "advance-gateway-clock": {
        "task": "billing_portal.tasks.advance_gateway_clock",
        "schedule": crontab(minute="*"),
    },
    # Webhook events whose handler failed (or whose worker died) are applied again.
    "retry-webhook-events": {
        "task": "billing_portal.tasks.retry_webhook_events",
        "schedule": crontab(minute="*/10"),
    },
    # Extra-pack payments left waiting for a 3D Secure confirmation past the window: voided, so the
    # tenant may buy another pack.
    "expire-pack-confirmations": {
        "task": "billing_portal.tasks.expire_pack_confirmations",
        "schedule": crontab(minute="*/10"),
    },
    # Contracted plans (AI Ultra, Enterprise) have no gateway to renew them: a period that ended
    # moves to the next month and grants its credits, or the contract ends. Safe to run twice.
    "renew-contracts": {"task": "billing_portal.tasks.renew_contracts", "schedule": crontab(minute="*/5")},
    # Nightly: re-read subscriptions and recent invoices from the gateway, repairing missed webhooks.
    "reconcile-billing": {"task": "billing_portal.tasks.reconcile", "schedule": crontab(hour=3, minute=30)},
}

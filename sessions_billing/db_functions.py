"""The session start's PostgreSQL function, by name and signature: the service builds its statement
from these, and migration 0006 installs its durable procedure (`tenants.durable_call`)."""

from tenants.durable_call import Function

START_NAME = "allowance_session_start"  # migration 0003
_START_ARGUMENTS = (
    ("p_tenant", "bigint"),
    ("p_conversation", "text"),
    ("p_agent", "text"),
    ("p_direction", "text"),
    ("p_at", "timestamptz"),
    ("p_now", "timestamptz"),
    ("p_answered", "boolean"),
    ("p_period_start", "timestamptz"),
    ("p_limit", "bigint"),
    ("p_first", "integer"),
    ("p_second", "integer"),
    ("p_ends_trial", "boolean"),
)
_START_COLUMNS = (
    ("o_outcome", "text"),
    ("o_agent", "text"),
    ("o_direction", "text"),
    ("o_started_at", "timestamptz"),
    ("o_last_activity_at", "timestamptz"),
    ("o_ended_at", "timestamptz"),
    ("o_billable_sessions", "integer"),
    ("o_answered", "boolean"),
)
START = Function(START_NAME, _START_ARGUMENTS, _START_COLUMNS, tenant_argument="p_tenant")

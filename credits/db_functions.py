"""The ledger's PostgreSQL functions that the hot writes call, by name and signature: the services
build their statements from these, and migration 0013 installs their durable procedures
(`tenants.durable_call`)."""

from tenants.durable_call import Function

CONSUME_NAME = "allowance_credits_consume"  # migration 0003
_CONSUME_ARGUMENTS = (
    ("p_tenant", "bigint"),
    ("p_feature", "text"),
    ("p_quantity", "bigint"),
    ("p_key", "text"),
    ("p_client", "text"),
    ("p_now", "timestamptz"),
    ("p_refused_unit", "text"),
    ("p_answer", "jsonb"),
    ("p_actor_type", "text"),
    ("p_actor_user", "bigint"),
    ("p_actor_key", "bigint"),
    ("p_actor_label", "text"),
)
_CONSUME_COLUMNS = (
    ("o_outcome", "text"),
    ("o_unit", "text"),
    ("o_amount", "numeric"),
    ("o_available", "bigint"),
    ("o_answer", "text"),
    ("o_hold", "bigint"),
    ("o_feature", "text"),
    ("o_quantity", "bigint"),
    ("o_client", "text"),
)
CONSUME = Function(CONSUME_NAME, _CONSUME_ARGUMENTS, _CONSUME_COLUMNS, tenant_argument="p_tenant")

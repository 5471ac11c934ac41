"""Licensing's PostgreSQL function that a ticket's question calls, by name and signature: the
service builds its statement from these, and migration 0009 installs its durable procedure
(`tenants.durable_call`)."""

from tenants.durable_call import Function

QUALIFY_NAME = "allowance_ticket_qualify"  # migration 0004
_QUALIFY_ARGUMENTS = (
    ("p_tenant", "bigint"),
    ("p_ticket", "text"),
    ("p_client_ext", "text"),
    ("p_active", "text"),
    ("p_now", "timestamptz"),
    ("p_credit_answer", "jsonb"),
    ("p_ticket_answer", "jsonb"),
    ("p_actor_type", "text"),
    ("p_actor_user", "bigint"),
    ("p_actor_key", "bigint"),
    ("p_actor_label", "text"),
)
_QUALIFY_COLUMNS = (
    ("o_outcome", "text"),
    ("o_answer", "text"),
    ("o_feature", "text"),
    ("o_client", "text"),
    ("o_available", "bigint"),
    ("o_client_pk", "bigint"),
    ("o_client_name", "text"),
    ("o_client_active", "boolean"),
    ("o_ai_license", "boolean"),
)
QUALIFY = Function(QUALIFY_NAME, _QUALIFY_ARGUMENTS, _QUALIFY_COLUMNS, tenant_argument="p_tenant")

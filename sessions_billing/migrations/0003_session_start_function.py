# PostgreSQL: a session start in one round trip (sessions_billing.services.session_start). The
# embedded SQLite default has no such function and takes the plain path, as PostgreSQL does for
# every case this function hands back ("slow").

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION allowance_session_start(
    p_tenant bigint, p_conversation text, p_agent text, p_direction text, p_at timestamptz,
    p_now timestamptz, p_answered boolean, p_period_start timestamptz, p_limit bigint,
    p_first integer, p_second integer, p_ends_trial boolean)
RETURNS TABLE (o_outcome text, o_agent text, o_direction text, o_started_at timestamptz,
    o_last_activity_at timestamptz, o_ended_at timestamptz, o_billable_sessions integer,
    o_answered boolean)
LANGUAGE plpgsql AS $$
-- Admit a new conversation whose first window bills in the current period (p_period_start), while
-- the period's count is under p_limit (NULL: no limit). Outcomes:
--   created  the conversation, its window 0 and the count are written;
--   exists   the id was started before: its row, nothing written;
--   refused  the count has reached p_limit: nothing written;
--   slow     anything else the plain path must do (the agent's first session, the period's first
--            window, a usage email or the trial's end that this count sets off): nothing written.
-- The conversation is inserted before the counter is locked, as on the plain path (one lock order).
DECLARE
  v_agent bigint;
  v_conversation bigint;
  v_period bigint;
  v_count integer;
BEGIN
  IF p_agent <> '' THEN
    SELECT a.id INTO v_agent FROM sessions_billing_agent a WHERE a.tenant_id = p_tenant AND a."key" = p_agent;
    IF v_agent IS NULL THEN
      o_outcome := 'slow';
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  INSERT INTO sessions_billing_conversation AS c (tenant_id, conversation_id, agent_id, direction,
      started_at, last_activity_at, answered, billable_sessions, last_billed_window, created_at)
    VALUES (p_tenant, p_conversation, v_agent, p_direction, p_at, p_at, p_answered, 1, 0, p_now)
    ON CONFLICT (tenant_id, conversation_id) DO NOTHING
    RETURNING c.id INTO v_conversation;
  IF v_conversation IS NULL THEN
    RETURN QUERY SELECT 'exists'::text, a."key"::text, c.direction::text, c.started_at, c.last_activity_at,
        c.ended_at, c.billable_sessions, c.answered
      FROM sessions_billing_conversation c LEFT JOIN sessions_billing_agent a ON a.id = c.agent_id
      WHERE c.tenant_id = p_tenant AND c.conversation_id = p_conversation;
    RETURN;
  END IF;
  UPDATE sessions_billing_usageperiod AS u SET billable_sessions = u.billable_sessions + 1
    WHERE u.tenant_id = p_tenant AND u.period_start = p_period_start
      AND (p_limit IS NULL OR (
        u.billable_sessions < p_limit
        AND NOT (u.first_warning_at IS NULL AND (u.billable_sessions::bigint + 1) * 100 >= p_first * p_limit)
        AND NOT (u.second_warning_at IS NULL AND (u.billable_sessions::bigint + 1) * 100 >= p_second * p_limit)
        AND NOT (p_ends_trial AND u.billable_sessions::bigint + 1 >= p_limit)))
    RETURNING u.id INTO v_period;
  IF v_period IS NULL THEN
    DELETE FROM sessions_billing_conversation WHERE id = v_conversation;
    SELECT u.billable_sessions INTO v_count FROM sessions_billing_usageperiod u
      WHERE u.tenant_id = p_tenant AND u.period_start = p_period_start;
    o_outcome := CASE WHEN v_count >= p_limit THEN 'refused' ELSE 'slow' END;
    RETURN NEXT;
    RETURN;
  END IF;
  INSERT INTO sessions_billing_billablewindow (tenant_id, conversation_id, "index", starts_at,
      usage_period_id, counted_at)
    VALUES (p_tenant, v_conversation, 0, p_at, v_period, p_now);
  o_outcome := 'created';
  RETURN NEXT;
END $$
"""

DROP = (
    "DROP FUNCTION IF EXISTS allowance_session_start(bigint, text, text, text, timestamptz, timestamptz, "
    "boolean, timestamptz, bigint, integer, integer, boolean)"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("sessions_billing", "0002_cache_version_triggers")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]

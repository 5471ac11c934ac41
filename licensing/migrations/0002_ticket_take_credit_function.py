# PostgreSQL: a ticket that takes a ticket credit in one statement, its own transaction
# (licensing.services.ticket_qualify): credits' own function takes the credit (credits migration
# 0004: the wallet's lock, the idempotency key "ticket:<id>", all or nothing), then the ticket keeps
# its answer, before the statement ends. It replaces BEGIN, the credit's statement, the ticket's
# insert and COMMIT: four round trips, with the wallet locked across them.
#
# When another request answered the same ticket first without a credit (a license assigned
# meanwhile), the ticket's insert finds it: the inner block is rolled back — the credit taken here
# with it — and the first answer is returned. Nothing else is written on any path but 'created'.

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION allowance_ticket_take_credit(
    p_tenant bigint, p_ticket text, p_client bigint, p_client_ext text, p_now timestamptz,
    p_credit_answer jsonb, p_ticket_answer jsonb, p_actor_type text, p_actor_user bigint,
    p_actor_key bigint, p_actor_label text)
RETURNS TABLE (o_outcome text, o_answer text, o_feature text, o_client text, o_available bigint)
LANGUAGE plpgsql AS $$
-- Outcomes: created (o_answer: the ticket's answer as kept); answered (the ticket's first answer,
-- nothing taken); insufficient (o_available, nothing written); exists with another request under
-- the key (o_feature, o_client: the caller's 409, nothing written).
DECLARE
  c record;
  v_response jsonb;
BEGIN
  BEGIN
    SELECT * INTO c FROM allowance_ticket_credit_consume(p_tenant, 'ticket:' || p_ticket, p_client_ext,
      p_now, p_credit_answer, p_actor_type, p_actor_user, p_actor_key, p_actor_label);
    o_outcome := c.o_outcome;
    o_feature := c.o_feature;
    o_client := c.o_client;
    o_available := c.o_available;
    IF c.o_outcome = 'insufficient'
        OR (c.o_outcome = 'exists' AND (c.o_feature, c.o_client) IS DISTINCT FROM ('ticket', p_client_ext)) THEN
      RETURN NEXT;
      RETURN;
    END IF;
    v_response := p_ticket_answer
      || jsonb_build_object('ticket_credits_remaining', (c.o_answer::jsonb ->> 'remaining')::bigint);
    INSERT INTO licensing_ticket (tenant_id, ticket_id, client_id, via, response, created_at)
      VALUES (p_tenant, p_ticket, p_client, 'ticket_credit', v_response, p_now)
      ON CONFLICT (tenant_id, ticket_id) DO NOTHING;
    IF FOUND THEN
      o_outcome := 'created';
      o_answer := v_response::text;
      RETURN NEXT;
      RETURN;
    END IF;
    IF c.o_outcome = 'created' THEN
      RAISE EXCEPTION USING ERRCODE = 'AL001', MESSAGE = 'ticket answered first';  -- undoes the credit
    END IF;
  EXCEPTION WHEN SQLSTATE 'AL001' THEN
    NULL;
  END;
  o_outcome := 'answered';
  SELECT t.response::text INTO o_answer FROM licensing_ticket t
    WHERE t.tenant_id = p_tenant AND t.ticket_id = p_ticket;
  RETURN NEXT;
END $$
"""

DROP = (
    "DROP FUNCTION IF EXISTS allowance_ticket_take_credit(bigint, text, bigint, text, timestamptz, jsonb, "
    "jsonb, text, bigint, bigint, text)"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("licensing", "0001_initial"), ("credits", "0005_grant_updates_in_place")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]

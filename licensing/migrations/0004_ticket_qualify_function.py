# PostgreSQL: a ticket's question in one statement (licensing.services.ticket_qualify, when the
# plan admits new work and has no Unlimited AI access): the client by its id in the PSA, the
# ticket's first answer if it has one, and, for an active client without an AI license, the ticket
# credit through allowance_ticket_take_credit (migration 0002). It replaces the client's lookup and
# the credit's statement: two round trips. Nothing is written unless a credit is taken.
#
# Outcomes: unknown_client; answered (o_answer: the ticket's first answer); not_credit (the client
# is inactive or holds an AI license: the caller answers, with the o_client_* fields); otherwise
# allowance_ticket_take_credit's own (created, answered, insufficient, exists).

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION allowance_ticket_qualify(
    p_tenant bigint, p_ticket text, p_client_ext text, p_active text, p_now timestamptz,
    p_credit_answer jsonb, p_ticket_answer jsonb, p_actor_type text, p_actor_user bigint,
    p_actor_key bigint, p_actor_label text)
RETURNS TABLE (o_outcome text, o_answer text, o_feature text, o_client text, o_available bigint,
    o_client_pk bigint, o_client_name text, o_client_active boolean, o_ai_license boolean)
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  SELECT c.id, c.name, c.status = p_active, c.ai_license_since IS NOT NULL
    INTO o_client_pk, o_client_name, o_client_active, o_ai_license
    FROM licensing_client c WHERE c.tenant_id = p_tenant AND c.external_id = p_client_ext;
  IF NOT FOUND THEN
    o_outcome := 'unknown_client';
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT t.response::text INTO o_answer FROM licensing_ticket t
    WHERE t.tenant_id = p_tenant AND t.ticket_id = p_ticket;
  IF FOUND THEN
    o_outcome := 'answered';
    RETURN NEXT;
    RETURN;
  END IF;
  IF NOT o_client_active OR o_ai_license THEN
    o_outcome := 'not_credit';
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT * INTO r FROM allowance_ticket_take_credit(p_tenant, p_ticket, o_client_pk, p_client_ext, p_now,
    p_credit_answer, p_ticket_answer, p_actor_type, p_actor_user, p_actor_key, p_actor_label);
  o_outcome := r.o_outcome;
  o_answer := r.o_answer;
  o_feature := r.o_feature;
  o_client := r.o_client;
  o_available := r.o_available;
  RETURN NEXT;
END $$
"""

DROP = (
    "DROP FUNCTION IF EXISTS allowance_ticket_qualify(bigint, text, text, text, timestamptz, jsonb, jsonb, "
    "text, bigint, bigint, text)"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("licensing", "0003_covering_indexes")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]

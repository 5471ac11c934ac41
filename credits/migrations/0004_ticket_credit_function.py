# PostgreSQL: one ticket credit taken in one round trip (credits.services.ticket_credit_consume), the
# same rules as the plain path the embedded SQLite default takes: the ticket wallet's row lock, the
# idempotency key (a consumption answers its first answer), then one credit from the live grants in
# draw order, with the consumption, the grants' moves and the entries written before the lock is
# released. It runs in the caller's transaction (licensing keeps the ticket's answer in the same one).

from django.db import migrations

TICKET = """
CREATE OR REPLACE FUNCTION allowance_ticket_credit_consume(
    p_tenant bigint, p_key text, p_client text, p_now timestamptz, p_answer jsonb, p_actor_type text,
    p_actor_user bigint, p_actor_key bigint, p_actor_label text)
RETURNS TABLE (o_outcome text, o_answer text, o_feature text, o_client text, o_available bigint)
LANGUAGE plpgsql AS $$
-- Outcomes: created (o_answer: the answer stored with the consumption); exists (the key's
-- consumption: its answer and request, for the caller to compare); insufficient (o_available).
-- Nothing is written unless created.
DECLARE
  v_need constant bigint := 1000;  -- one ticket credit, in thousandths
  v_wallet bigint;
  v_held bigint;
  v_balance bigint := 0;
  v_left bigint := 1000;
  v_take bigint;
  v_consumption bigint;
  v_ids bigint[] := '{}';
  v_takes bigint[] := '{}';
  g record;
BEGIN
  SELECT w.id INTO v_wallet FROM credits_wallet w
    WHERE w.tenant_id = p_tenant AND w.unit = 'ticket_credit' FOR UPDATE;
  IF v_wallet IS NULL THEN
    o_outcome := 'insufficient';
    o_available := 0;
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT 'exists', c.response::text, c.feature, c.client_id INTO o_outcome, o_answer, o_feature, o_client
    FROM credits_consumption c WHERE c.wallet_id = v_wallet AND c.idempotency_key = p_key;
  IF FOUND THEN
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT COALESCE(sum(h.amount), 0) INTO v_held FROM credits_hold h
    WHERE h.wallet_id = v_wallet AND h.status = 'held' AND h.expires_at > p_now;
  -- The live grants in draw order (credits.services.DRAW_ORDER): soonest expiring first.
  FOR g IN SELECT x.id, x.remaining FROM credits_grant x
      WHERE x.wallet_id = v_wallet AND x.remaining > 0 AND x.valid_from <= p_now
        AND (x.expires_at IS NULL OR x.expires_at > p_now)
      ORDER BY x.priority, x.expires_at ASC NULLS LAST, x.valid_from, x.id LOOP
    v_balance := v_balance + g.remaining;
    IF v_left > 0 THEN
      v_take := LEAST(g.remaining, v_left);
      v_ids := v_ids || g.id;
      v_takes := v_takes || v_take;
      v_left := v_left - v_take;
    END IF;
  END LOOP;
  o_available := GREATEST(0, v_balance - v_held);
  IF v_need > o_available THEN
    o_outcome := 'insufficient';
    RETURN NEXT;
    RETURN;
  END IF;
  INSERT INTO credits_consumption AS c (actor_type, actor_user_id, actor_api_key_id, actor_label, wallet_id,
      tenant_id, idempotency_key, feature, quantity, amount, client_id, hold_id, created_at, response)
    VALUES (p_actor_type, p_actor_user, p_actor_key, p_actor_label, v_wallet, p_tenant, p_key, 'ticket',
      1, v_need, p_client, NULL, p_now,
      p_answer || jsonb_build_object(
        'balance', allowance_credits_string(v_balance - v_need),
        'remaining', GREATEST(0, v_balance - v_need - v_held) / 1000))
    RETURNING c.id, c.response::text INTO v_consumption, o_answer;
  UPDATE credits_grant x SET remaining = x.remaining - t.take
    FROM unnest(v_ids, v_takes) AS t(id, take) WHERE x.id = t.id;
  INSERT INTO credits_entry (actor_type, actor_user_id, actor_api_key_id, actor_label, wallet_id, tenant_id,
      grant_id, kind, quantity, feature, client_id, idempotency_key, consumption_id, hold_id, note, created_at)
    SELECT p_actor_type, p_actor_user, p_actor_key, p_actor_label, v_wallet, p_tenant, t.id, 'consume',
      -t.take, 'ticket', p_client, p_key, v_consumption, NULL, '', p_now
    FROM unnest(v_ids, v_takes) WITH ORDINALITY AS t(id, take, n) ORDER BY t.n;
  o_outcome := 'created';
  RETURN NEXT;
END $$
"""

DROP = (
    "DROP FUNCTION IF EXISTS allowance_ticket_credit_consume(bigint, text, text, timestamptz, jsonb, text, "
    "bigint, bigint, text)"
)


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TICKET)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("credits", "0003_consume_function")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]

# PostgreSQL: a consumption in one round trip (credits.services.credits_consume), the same rules as the
# plain path that the embedded SQLite default takes: the feature's cost, the wallet's row lock, the
# idempotency key (a consumption answers its first answer, a hold's key is a conflict), the plan's
# refusal, then all or nothing from the live grants in draw order, with the consumption, the grants'
# moves and the entries written before the lock is released.

from django.db import migrations

CREDITS_STRING = """
CREATE OR REPLACE FUNCTION allowance_credits_string(p bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  -- plans.money.credits_string: thousandths as the API shows them (49900 -> '49.9', 100 -> '0.1')
  SELECT CASE WHEN p < 0 THEN '-' ELSE '' END || (abs(p) / 1000)::text
    || CASE WHEN mod(abs(p), 1000) = 0 THEN '' ELSE '.' || rtrim(lpad((mod(abs(p), 1000))::text, 3, '0'), '0') END
$$
"""

CONSUME = """
CREATE OR REPLACE FUNCTION allowance_credits_consume(
    p_tenant bigint, p_feature text, p_quantity bigint, p_key text, p_client text, p_now timestamptz,
    p_refused_unit text, p_answer jsonb, p_actor_type text, p_actor_user bigint, p_actor_key bigint,
    p_actor_label text)
RETURNS TABLE (o_outcome text, o_unit text, o_amount numeric, o_available bigint, o_answer text,
    o_hold bigint, o_feature text, o_quantity bigint, o_client text)
LANGUAGE plpgsql AS $$
-- Outcomes: created (o_answer: the answer stored with the consumption); exists (the key's
-- consumption: its answer and request, for the caller to compare); conflict (the key names a hold);
-- unknown_feature; refused (p_refused_unit: the plan refuses new work in this unit); insufficient
-- (o_amount needed, o_available). Nothing is written unless created.
DECLARE
  v_cost bigint;
  v_wallet bigint;
  v_held bigint;
  v_balance bigint := 0;
  v_left numeric;
  v_take bigint;
  v_consumption bigint;
  v_ids bigint[] := '{}';
  v_takes bigint[] := '{}';
  v_grants jsonb := '[]'::jsonb;
  g record;
BEGIN
  SELECT f.unit, f.cost INTO o_unit, v_cost FROM credits_featurecost f WHERE f.feature = p_feature AND f.active;
  IF o_unit IS NULL THEN
    o_outcome := 'unknown_feature';
    RETURN NEXT;
    RETURN;
  END IF;
  o_amount := v_cost::numeric * p_quantity;
  SELECT w.id INTO v_wallet FROM credits_wallet w WHERE w.tenant_id = p_tenant AND w.unit = o_unit FOR UPDATE;
  IF v_wallet IS NOT NULL THEN
    SELECT 'exists', c.response::text, c.hold_id, c.feature, c.quantity, c.client_id
      INTO o_outcome, o_answer, o_hold, o_feature, o_quantity, o_client
      FROM credits_consumption c WHERE c.wallet_id = v_wallet AND c.idempotency_key = p_key;
    IF FOUND THEN
      RETURN NEXT;
      RETURN;
    END IF;
    PERFORM 1 FROM credits_hold h WHERE h.wallet_id = v_wallet AND h.idempotency_key = p_key;
    IF FOUND THEN
      o_outcome := 'conflict';
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;
  IF o_unit = p_refused_unit THEN
    o_outcome := 'refused';
    RETURN NEXT;
    RETURN;
  END IF;
  IF v_wallet IS NULL THEN
    o_outcome := 'insufficient';
    o_available := 0;
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT COALESCE(sum(h.amount), 0) INTO v_held FROM credits_hold h
    WHERE h.wallet_id = v_wallet AND h.status = 'held' AND h.expires_at > p_now;
  v_left := o_amount;
  -- The live grants in draw order (credits.services.DRAW_ORDER): plan, staff, packs; soonest expiring first.
  FOR g IN SELECT x.id, x.source, x.remaining FROM credits_grant x
      WHERE x.wallet_id = v_wallet AND x.remaining > 0 AND x.valid_from <= p_now
        AND (x.expires_at IS NULL OR x.expires_at > p_now)
      ORDER BY x.priority, x.expires_at ASC NULLS LAST, x.valid_from, x.id LOOP
    v_balance := v_balance + g.remaining;
    IF v_left > 0 THEN
      v_take := LEAST(g.remaining::numeric, v_left)::bigint;
      v_ids := v_ids || g.id;
      v_takes := v_takes || v_take;
      v_grants := v_grants || jsonb_build_array(jsonb_build_object(
        'grant_id', g.id, 'source', g.source, 'credits', allowance_credits_string(v_take)));
      v_left := v_left - v_take;
    END IF;
  END LOOP;
  o_available := GREATEST(0, v_balance - v_held);
  IF o_amount > o_available THEN
    o_outcome := 'insufficient';
    RETURN NEXT;
    RETURN;
  END IF;
  INSERT INTO credits_consumption AS c (actor_type, actor_user_id, actor_api_key_id, actor_label, wallet_id,
      tenant_id, idempotency_key, feature, quantity, amount, client_id, hold_id, created_at, response)
    VALUES (p_actor_type, p_actor_user, p_actor_key, p_actor_label, v_wallet, p_tenant, p_key, p_feature,
      p_quantity, o_amount, p_client, NULL, p_now,
      p_answer || jsonb_build_object(
        'consumed', allowance_credits_string(o_amount::bigint),
        'balance', allowance_credits_string(v_balance - o_amount::bigint),
        'held', allowance_credits_string(v_held),
        'available', allowance_credits_string(GREATEST(0, v_balance - o_amount::bigint - v_held)),
        'grants', v_grants))
    RETURNING c.id, c.response::text INTO v_consumption, o_answer;
  UPDATE credits_grant x SET remaining = x.remaining - t.take
    FROM unnest(v_ids, v_takes) AS t(id, take) WHERE x.id = t.id;
  INSERT INTO credits_entry (actor_type, actor_user_id, actor_api_key_id, actor_label, wallet_id, tenant_id,
      grant_id, kind, quantity, feature, client_id, idempotency_key, consumption_id, hold_id, note, created_at)
    SELECT p_actor_type, p_actor_user, p_actor_key, p_actor_label, v_wallet, p_tenant, t.id, 'consume',
      -t.take, p_feature, p_client, p_key, v_consumption, NULL, '', p_now
    FROM unnest(v_ids, v_takes) WITH ORDINALITY AS t(id, take, n) ORDER BY t.n;
  o_outcome := 'created';
  RETURN NEXT;
END $$
"""

DROP = [
    "DROP FUNCTION IF EXISTS allowance_credits_consume(bigint, text, bigint, text, text, timestamptz, text, "
    "jsonb, text, bigint, bigint, text)",
    "DROP FUNCTION IF EXISTS allowance_credits_string(bigint)",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREDITS_STRING)
        schema_editor.execute(CONSUME)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("credits", "0002_catalog_and_append_only")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]

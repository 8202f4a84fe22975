-- What the PostgreSQL validation trigger costs an insert, on a migrated outbox database:
--
--   psql "postgresql://..." -f tools/bench/pg_trigger_cost.sql
--
-- Inserts 100,000 typical revenue events in one statement into two temporary tables shaped
-- like metrix_outbox, one without a trigger and one with metrix_outbox_validate, three times
-- each in turn, and prints each statement's time. The difference over 100,000 is the trigger's
-- cost an insert. Temporary tables only: nothing is left behind, the outbox is not touched.
\set ON_ERROR_STOP on
SET client_min_messages = notice;
CREATE TEMP TABLE trigger_cost_events AS
SELECT '{"metrixUserId":"user-' || g || '","eventSlug":"purchase",'
       '"advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d",'
       '"customAttributes":{"_currency":"IRR","order":"o-' || g || '"},"customMetrics":{"_revenue":10}}' AS payload
  FROM generate_series(1, 100000) g;
CREATE TEMP TABLE trigger_cost_plain (LIKE metrix_outbox INCLUDING DEFAULTS INCLUDING IDENTITY);
CREATE TEMP TABLE trigger_cost_checked (LIKE metrix_outbox INCLUDING DEFAULTS INCLUDING IDENTITY);
CREATE TRIGGER metrix_outbox_validate BEFORE INSERT ON trigger_cost_checked
  FOR EACH ROW EXECUTE FUNCTION metrix_outbox_validate();
DO $$
DECLARE
  started timestamptz;
  plain_ms numeric;
  checked_ms numeric;
BEGIN
  FOR round IN 1..3 LOOP
    TRUNCATE trigger_cost_plain, trigger_cost_checked;
    started := clock_timestamp();
    INSERT INTO trigger_cost_plain (payload) SELECT payload FROM trigger_cost_events;
    plain_ms := extract(epoch FROM clock_timestamp() - started) * 1000;
    started := clock_timestamp();
    INSERT INTO trigger_cost_checked (payload) SELECT payload FROM trigger_cost_events;
    checked_ms := extract(epoch FROM clock_timestamp() - started) * 1000;
    RAISE NOTICE 'round %: 100,000 inserts without the trigger % ms, with it % ms: % us an insert', round,
      round(plain_ms), round(checked_ms), round((checked_ms - plain_ms) / 100, 1);
  END LOOP;
END $$;

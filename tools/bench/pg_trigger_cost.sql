-- What the PostgreSQL validation trigger costs an insert, on a migrated outbox database:
--
--   psql "postgresql://..." -f tools/bench/pg_trigger_cost.sql
--
-- Inserts 100,000 typical revenue events in one statement into two temporary tables shaped
-- like metrix_outbox, one without a trigger and one with metrix_outbox_validate, three times
-- each in turn, and prints each statement's time (\timing). The difference over 100,000 is the
-- trigger's cost an insert. Temporary tables only: nothing is left behind, the outbox is not
-- touched.
\set ON_ERROR_STOP on
CREATE TEMP TABLE trigger_cost_events AS
SELECT '{"metrixUserId":"user-' || g || '","eventSlug":"purchase",'
       '"advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d",'
       '"customAttributes":{"_currency":"IRR","order":"o-' || g || '"},"customMetrics":{"_revenue":10}}' AS payload
  FROM generate_series(1, 100000) g;
CREATE TEMP TABLE trigger_cost_plain (LIKE metrix_outbox INCLUDING DEFAULTS INCLUDING IDENTITY);
CREATE TEMP TABLE trigger_cost_checked (LIKE metrix_outbox INCLUDING DEFAULTS INCLUDING IDENTITY);
CREATE TRIGGER metrix_outbox_validate BEFORE INSERT ON trigger_cost_checked
  FOR EACH ROW EXECUTE FUNCTION metrix_outbox_validate();
\timing on
\echo without the trigger
INSERT INTO trigger_cost_plain (payload) SELECT payload FROM trigger_cost_events;
\echo with the trigger
INSERT INTO trigger_cost_checked (payload) SELECT payload FROM trigger_cost_events;
\timing off
TRUNCATE trigger_cost_plain, trigger_cost_checked;
\timing on
\echo without the trigger
INSERT INTO trigger_cost_plain (payload) SELECT payload FROM trigger_cost_events;
\echo with the trigger
INSERT INTO trigger_cost_checked (payload) SELECT payload FROM trigger_cost_events;
\timing off
TRUNCATE trigger_cost_plain, trigger_cost_checked;
\timing on
\echo without the trigger
INSERT INTO trigger_cost_plain (payload) SELECT payload FROM trigger_cost_events;
\echo with the trigger
INSERT INTO trigger_cost_checked (payload) SELECT payload FROM trigger_cost_events;

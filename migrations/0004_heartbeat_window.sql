-- 0004: each running relay's window of requests in flight per app, as of its last heartbeat,
-- so that `status` shows how hard the relay is pushing each app and whether an app's circuit
-- is open (Metrix failing every request). Text for people, e.g. "app1 64/64": it is a sign of
-- life, not a contract; NULL for a relay older than this migration.
ALTER TABLE metrix_relay_heartbeat ADD COLUMN windows TEXT;

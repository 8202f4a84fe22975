-- 0005: poison rows. lease_expiries counts the claims of a row that ended without an answer
-- recorded: the relay that held it died or hung while sending it, and its lease expired.
-- A claim of an expired lease adds one, and so does `check --repair` releasing one; a recorded
-- answer (any HTTP attempt) sets it back to 0, and so does requeue. When a relay finds it at --poison-after (default 3) it does not send
-- the row again but marks it 'dead' with last_error 'poison: ...', so a row that stops the
-- relay every time cannot keep it in a crash loop.
ALTER TABLE metrix_outbox ADD COLUMN lease_expiries INTEGER NOT NULL DEFAULT 0;

-- 0002: relay heartbeats (is a relay running, and is it making progress?) and views that
-- make an auditor's queries short. Times in the views are UTC ISO-8601 text.

-- One row per relay process, refreshed at every progress interval and removed at a clean exit.
CREATE TABLE metrix_relay_heartbeat (
  relay_id      TEXT PRIMARY KEY,     -- host:pid:started_at
  host          TEXT NOT NULL,
  pid           INTEGER NOT NULL,
  started_at    INTEGER NOT NULL,     -- ms
  beat_at       INTEGER NOT NULL,     -- ms, the last refresh
  interval_ms   INTEGER NOT NULL,     -- how often it refreshes: older than a few of these means gone
  sent          INTEGER NOT NULL DEFAULT 0,  -- rows this relay marked sent so far
  last_sent_at  INTEGER               -- ms, when it last recorded a sent row
);

-- Every event with its payload fields and readable times.
CREATE VIEW metrix_outbox_audit AS
SELECT id, coalesce(app_id, '(default)') AS app_id, status, event_slug,
       json_extract(payload, '$.metrixUserId') AS metrix_user_id,
       json_extract(payload, '$.customMetrics._revenue') AS revenue,
       json_extract(payload, '$.customAttributes._currency') AS currency,
       strftime('%Y-%m-%dT%H:%M:%fZ', created_at / 1000.0, 'unixepoch') AS created,
       strftime('%Y-%m-%dT%H:%M:%fZ', event_time / 1000.0, 'unixepoch') AS event_time,
       strftime('%Y-%m-%dT%H:%M:%fZ', sent_at / 1000.0, 'unixepoch') AS sent,
       attempts, last_http_status, last_error, dedup_key, created_at, sent_at
  FROM metrix_outbox;

-- Every HTTP attempt with readable times and its duration.
CREATE VIEW metrix_outbox_attempt_audit AS
SELECT outbox_id, attempt,
       strftime('%Y-%m-%dT%H:%M:%fZ', started_at / 1000.0, 'unixepoch') AS started,
       finished_at - started_at AS duration_ms, http_status, error, response
  FROM metrix_outbox_attempt;

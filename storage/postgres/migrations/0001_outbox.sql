-- 0001 (PostgreSQL): the outbox, its audit trail, the app pauses and the relay heartbeats, with
-- the columns and meanings of the SQLite schema (migrations/, README "The outbox"). Created in
-- the connection's current schema (the first of its search_path). Times are milliseconds since
-- the Unix epoch, UTC, always from the database's clock. The rules a new row must pass are
-- the next migration's, as is filling in event_slug.
-- Applied migrations are never edited; a change is a new numbered file.

-- The database's clock in milliseconds: the start of the current statement, so that the
-- defaults of one INSERT agree, as SQLite's 'now' does.
CREATE FUNCTION metrix_now_ms() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
  RETURN floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint;

CREATE TABLE metrix_outbox (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused, even after a purge
  app_id           text,                                  -- NULL: the relay's default app
  -- the S2S body as written by the producer, byte for byte: text, not jsonb (which reorders
  -- keys and drops repeated ones) and not json (whose cast would run before the rules' message)
  payload          text NOT NULL,
  dedup_key        text UNIQUE,
  created_at       bigint NOT NULL DEFAULT metrix_now_ms(),
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'held')),
  attempts         bigint NOT NULL DEFAULT 0,
  -- pending: when the row is next due; sending: when its lease expires and it is due again
  next_attempt_at  bigint NOT NULL DEFAULT metrix_now_ms(),
  event_time       bigint,             -- the eventTime actually sent, fixed at the first attempt
  last_http_status integer,
  last_error       text,
  sent_at          bigint,
  -- fencing token: incremented by every claim; an outcome is recorded only with the
  -- token that claimed the row, so a relay whose lease expired cannot overwrite a newer claim
  lease_token      bigint NOT NULL DEFAULT 0,
  -- claims of the row in a row whose lease expired with no answer recorded (poison rows)
  lease_expiries   bigint NOT NULL DEFAULT 0,
  -- the payload's eventSlug, for audits. SQLite computes it on every read (a virtual column);
  -- here the insert trigger (0002) writes it once, since the payload never changes: a stored
  -- generated column would parse the payload again on every UPDATE of the relay.
  event_slug       text
);

-- The relay's claim: due rows of one app, in due order (then id), read straight off the index.
-- coalesce(app_id, ''): the NULL app as a key an equality finds ('' is no valid app_id).
CREATE INDEX metrix_outbox_due ON metrix_outbox ((coalesce(app_id, '')), next_attempt_at, id)
  WHERE status IN ('pending', 'sending');
-- Suspects (relay_store.h): rows whose lease ended with no answer. Only the relay's claim reads
-- it, to find the oldest due one without reading past every fresh row.
CREATE INDEX metrix_outbox_suspect ON metrix_outbox ((coalesce(app_id, '')), next_attempt_at, id)
  WHERE status = 'sending' OR (status = 'pending' AND lease_expiries > 0);
-- Audits and purges: finished rows by status and age.
CREATE INDEX metrix_outbox_status ON metrix_outbox (status, created_at)
  WHERE status IN ('sent', 'failed', 'dead', 'held');
-- No index on created_at or event_slug, unlike SQLite: a row gets three versions (insert, claim,
-- outcome) and, since a claim changes indexed columns, each version an entry in every index.
-- An index the relay does not read costs three entries (and their WAL) per event.

-- One row per HTTP attempt: the audit trail. outbox_id is a metrix_outbox id, as on SQLite,
-- where the REFERENCES clause is not enforced either: here a foreign key would cost a lookup
-- and a row lock per attempt (a third of recording an outcome), and only the relay writes
-- attempts, each for the row it updates in the same statement.
CREATE TABLE metrix_outbox_attempt (
  outbox_id     bigint NOT NULL,      -- metrix_outbox.id
  attempt       integer NOT NULL,     -- 1 for the first attempt
  started_at    bigint NOT NULL,      -- ms
  finished_at   bigint NOT NULL,      -- ms
  http_status   integer,              -- NULL for transport errors
  error         text,                 -- error name from the answer, or the transport error
  response      text,                 -- the first bytes of the answer body
  PRIMARY KEY (outbox_id, attempt)
);

-- An app the relays stopped sending to after a 403: one probe per interval until a 2xx.
CREATE TABLE metrix_app_pause (
  app_id        text PRIMARY KEY,
  reason        text NOT NULL,
  since         bigint NOT NULL,      -- ms
  next_probe_at bigint NOT NULL,      -- ms
  interval_ms   bigint NOT NULL
);

-- One row per relay process, refreshed at every progress interval and removed at a clean exit.
CREATE TABLE metrix_relay_heartbeat (
  relay_id      text PRIMARY KEY,     -- host:pid:started_at
  host          text NOT NULL,
  pid           bigint NOT NULL,
  started_at    bigint NOT NULL,      -- ms
  beat_at       bigint NOT NULL,      -- ms, the last refresh
  interval_ms   bigint NOT NULL,      -- how often it refreshes: older than a few of these means gone
  sent          bigint NOT NULL DEFAULT 0,  -- rows this relay marked sent so far
  last_sent_at  bigint,               -- ms, when it last recorded a sent row
  windows       text                  -- each app's window of requests in flight, e.g. "app1 64/64"
);

-- Readable times for people: UTC ISO-8601 text.
CREATE FUNCTION metrix_utc(ms bigint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN to_char(to_timestamp(ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

-- Every event with its payload fields and readable times.
CREATE VIEW metrix_outbox_audit AS
SELECT id, coalesce(app_id, '(default)') AS app_id, status, event_slug,
       payload::json ->> 'metrixUserId' AS metrix_user_id,
       payload::json -> 'customMetrics' ->> '_revenue' AS revenue,
       payload::json -> 'customAttributes' ->> '_currency' AS currency,
       metrix_utc(created_at) AS created, metrix_utc(event_time) AS event_time, metrix_utc(sent_at) AS sent,
       attempts, last_http_status, last_error, dedup_key, created_at, sent_at
  FROM metrix_outbox;

-- Every HTTP attempt with readable times and its duration.
CREATE VIEW metrix_outbox_attempt_audit AS
SELECT outbox_id, attempt, metrix_utc(started_at) AS started,
       finished_at - started_at AS duration_ms, http_status, error, response
  FROM metrix_outbox_attempt;

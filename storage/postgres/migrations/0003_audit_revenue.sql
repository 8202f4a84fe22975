-- 0003 (PostgreSQL): metrix_outbox_audit's revenue as a number, as SQLite's json_extract gives it,
-- so that the README's audit queries (sum(revenue), revenue > 100) read the same on both
-- backends. The rules of 0002 admit only finite JSON numbers in customMetrics, so the cast
-- cannot fail. A view's column cannot change type in place: the view is made again, and
-- privileges granted on the old one must be granted again (README "Audit SQL").
DROP VIEW metrix_outbox_audit;

CREATE VIEW metrix_outbox_audit AS
SELECT id, coalesce(app_id, '(default)') AS app_id, status, event_slug,
       payload::json ->> 'metrixUserId' AS metrix_user_id,
       (payload::json -> 'customMetrics' ->> '_revenue')::numeric AS revenue,
       payload::json -> 'customAttributes' ->> '_currency' AS currency,
       metrix_utc(created_at) AS created, metrix_utc(event_time) AS event_time, metrix_utc(sent_at) AS sent,
       attempts, last_http_status, last_error, dedup_key, created_at, sent_at
  FROM metrix_outbox;

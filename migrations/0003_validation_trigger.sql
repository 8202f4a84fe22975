-- 0003: the validation trigger, re-created, and the rules for the relay's columns of a new row.
--
-- customMetrics: abs(-9223372036854775808) raised "integer overflow" instead of accepting the
-- smallest 64-bit integer, a finite number; the bounds are now compared without abs().
-- The other rules, their order and their messages are 0001's; two are cheaper: the device-id
-- rules look the three keys up instead of walking the payload's keys three times, and an IPv4
-- address is matched with patterns instead of being split into a JSON array and walked.

DROP TRIGGER metrix_outbox_validate;

-- Validation. Every rule of "What a valid event is" (README.md), enforced by the database
-- itself, so a producer writing plain SQL is refused inside its own transaction. Messages
-- are "field: rule". validate_payload() (storage/event.cc) runs this very trigger on a private
-- in-memory outbox; tests/validation_agreement_test.cc proves that every way in agrees.
-- Lists are spelled with OR, not IN: SQLite builds a temporary b-tree for each IN list of
-- three or more values every time the trigger runs, which doubled the cost of an enqueue.
CREATE TRIGGER metrix_outbox_validate BEFORE INSERT ON metrix_outbox
BEGIN
  SELECT RAISE(ABORT, 'app_id: must be NULL or a non-empty string')
   WHERE NEW.app_id IS NOT NULL AND (typeof(NEW.app_id) <> 'text' OR NEW.app_id = '');
  SELECT RAISE(ABORT, 'dedup_key: must be NULL or a non-empty string')
   WHERE NEW.dedup_key IS NOT NULL AND (typeof(NEW.dedup_key) <> 'text' OR NEW.dedup_key = '');
  SELECT RAISE(ABORT, 'payload: must be at most 65536 bytes')
   WHERE length(CAST(NEW.payload AS BLOB)) > 65536;
  -- json_valid() stops at a NUL byte: what follows one would be stored and sent unchecked.
  SELECT RAISE(ABORT, 'payload: must be valid JSON text')
   WHERE CASE WHEN typeof(NEW.payload) <> 'text' THEN 1
              WHEN instr(CAST(NEW.payload AS BLOB), x'00') > 0 THEN 1
              ELSE NOT json_valid(NEW.payload) END;
  -- SQLite's string functions stop at U+0000, so "IRR\u0000x" would pass as "IRR".
  SELECT RAISE(ABORT, 'payload: must not contain the escape \u0000')
   WHERE instr(NEW.payload, '\u0000') > 0;
  SELECT RAISE(ABORT, 'payload: must be a JSON object')
   WHERE json_type(NEW.payload) <> 'object';
  SELECT RAISE(ABORT, 'payload: must not repeat a key in any object')
   WHERE EXISTS (SELECT 1 FROM json_tree(NEW.payload) WHERE typeof(key) = 'text'
                  GROUP BY parent, key HAVING count(*) > 1);
  -- json_each() unescapes keys but '$.path' lookups compare the raw text, so a key written
  -- as "event\u0054ime" would slip past every rule below. json_tree's fullkey keeps the raw
  -- text: a key is plain when its fullkey is its path plus the key as json_each reads it.
  SELECT RAISE(ABORT, 'payload: keys must be plain text, without escape sequences')
   WHERE instr(NEW.payload, '\') > 0  -- no backslash, no escape: skip the walk
     AND EXISTS (SELECT 1 FROM json_tree(NEW.payload)
                  WHERE typeof(key) = 'text'
                    AND fullkey NOT IN (path || '.' || key, path || '."' || key || '"'));
  SELECT RAISE(ABORT, 'payload: unknown key; the keys are metrixUserId, metrixSessionId, idfa, advertisingId, oaid, customAttributes, customMetrics, deviceIp, eventSlug, eventTime')
   WHERE EXISTS (SELECT 1 FROM json_each(NEW.payload)
                  WHERE NOT (key = 'metrixUserId' OR key = 'metrixSessionId' OR key = 'idfa'
                             OR key = 'advertisingId' OR key = 'oaid' OR key = 'customAttributes'
                             OR key = 'customMetrics' OR key = 'deviceIp' OR key = 'eventSlug'
                             OR key = 'eventTime'));
  SELECT RAISE(ABORT, 'metrixUserId: is required and must be a non-empty string')
   WHERE json_type(NEW.payload, '$.metrixUserId') IS NOT 'text'
      OR json_extract(NEW.payload, '$.metrixUserId') = '';
  SELECT RAISE(ABORT, 'eventSlug: is required and must be a non-empty string')
   WHERE json_type(NEW.payload, '$.eventSlug') IS NOT 'text'
      OR json_extract(NEW.payload, '$.eventSlug') = '';
  SELECT RAISE(ABORT, 'metrixSessionId: must be a non-empty string when present')
   WHERE json_type(NEW.payload, '$.metrixSessionId') IS NOT NULL
     AND (json_type(NEW.payload, '$.metrixSessionId') <> 'text'
          OR json_extract(NEW.payload, '$.metrixSessionId') = '');
  -- The keys are unique and plain by now, so a '$.key' lookup finds a key exactly when it is
  -- there: lookups in the payload SQLite parsed once for this statement, not a walk per rule.
  SELECT RAISE(ABORT, 'idfa/advertisingId/oaid: must be a non-empty string when present')
   WHERE (json_type(NEW.payload, '$.idfa') IS NOT NULL
          AND (json_type(NEW.payload, '$.idfa') <> 'text' OR json_extract(NEW.payload, '$.idfa') = ''))
      OR (json_type(NEW.payload, '$.advertisingId') IS NOT NULL
          AND (json_type(NEW.payload, '$.advertisingId') <> 'text' OR json_extract(NEW.payload, '$.advertisingId') = ''))
      OR (json_type(NEW.payload, '$.oaid') IS NOT NULL
          AND (json_type(NEW.payload, '$.oaid') <> 'text' OR json_extract(NEW.payload, '$.oaid') = ''));
  SELECT RAISE(ABORT, 'idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)')
   WHERE json_type(NEW.payload, '$.idfa') IS NULL AND json_type(NEW.payload, '$.advertisingId') IS NULL
     AND json_type(NEW.payload, '$.oaid') IS NULL;
  SELECT RAISE(ABORT, 'idfa/advertisingId/oaid: exactly one is allowed, more than one is set (Metrix answers ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET)')
   WHERE (json_type(NEW.payload, '$.idfa') IS NOT NULL) + (json_type(NEW.payload, '$.advertisingId') IS NOT NULL)
       + (json_type(NEW.payload, '$.oaid') IS NOT NULL) > 1;
  SELECT RAISE(ABORT, 'customAttributes: must be a JSON object')
   WHERE json_type(NEW.payload, '$.customAttributes') IS NOT NULL
     AND json_type(NEW.payload, '$.customAttributes') <> 'object';
  SELECT RAISE(ABORT, 'customAttributes: every value must be a string')
   WHERE EXISTS (SELECT 1 FROM json_each(NEW.payload, '$.customAttributes') WHERE type <> 'text');
  SELECT RAISE(ABORT, 'customMetrics: must be a JSON object')
   WHERE json_type(NEW.payload, '$.customMetrics') IS NOT NULL
     AND json_type(NEW.payload, '$.customMetrics') <> 'object';
  SELECT RAISE(ABORT, 'customMetrics: every value must be a finite number')
   WHERE EXISTS (SELECT 1 FROM json_each(NEW.payload, '$.customMetrics')
                  WHERE NOT (type = 'integer' OR type = 'real')
                     OR value NOT BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308);
  SELECT RAISE(ABORT, 'customMetrics._revenue/customAttributes._currency: a revenue event needs both')
   WHERE (json_type(NEW.payload, '$.customMetrics._revenue') IS NULL)
      <> (json_type(NEW.payload, '$.customAttributes._currency') IS NULL);
  SELECT RAISE(ABORT, 'customAttributes._currency: must be one of IRR, USD, EUR')
    FROM (SELECT json_extract(NEW.payload, '$.customAttributes._currency') AS currency)
   WHERE NOT (currency = 'IRR' OR currency = 'USD' OR currency = 'EUR');
  SELECT RAISE(ABORT, 'eventTime: must be an integer number of milliseconds since the Unix epoch, between 1973-03-03 and 2100-01-01 (a time in seconds is refused)')
   WHERE json_type(NEW.payload, '$.eventTime') IS NOT NULL
     AND (json_type(NEW.payload, '$.eventTime') <> 'integer'
          OR json_extract(NEW.payload, '$.eventTime') NOT BETWEEN 100000000000 AND 4102444800000);
  SELECT RAISE(ABORT, 'deviceIp: must be a textual IPv4 or IPv6 address')
    FROM (SELECT json_type(NEW.payload, '$.deviceIp') AS type,
                 json_extract(NEW.payload, '$.deviceIp') AS ip,
                 '.' || json_extract(NEW.payload, '$.deviceIp') || '.' AS dotted)
   WHERE type IS NOT NULL AND NOT CASE
     WHEN type <> 'text' THEN 0
     -- IPv4: four decimal octets, 0 to 255, without leading zeros. Digits and three dots,
     -- and between two dots (one added at each end) no octet that is empty, starts with a
     -- zero and goes on, has four digits, or has three above 255: patterns, not a split.
     WHEN ip NOT GLOB '*[^0-9.]*' THEN
       length(ip) - length(replace(ip, '.', '')) = 3
       AND NOT (dotted GLOB '*..*' OR dotted GLOB '*.0[0-9]*' OR dotted GLOB '*[0-9][0-9][0-9][0-9]*'
                OR dotted GLOB '*.[3-9][0-9][0-9].*' OR dotted GLOB '*.2[6-9][0-9].*' OR dotted GLOB '*.25[6-9].*')
     -- IPv6: eight groups of up to four hex digits, one '::' for a run of zero groups,
     -- and optionally an IPv4 address in place of the last two groups
     WHEN ip GLOB '*:*' AND ip NOT GLOB '*[^0-9A-Fa-f:.]*' AND length(ip) <= 45 THEN (
       SELECT (v4 IS NULL OR (
                 head GLOB '*:'
                 AND length(v4) - length(replace(v4, '.', '')) = 3
                 AND NOT (dotted_v4 GLOB '*..*' OR dotted_v4 GLOB '*.0[0-9]*'
                          OR dotted_v4 GLOB '*[0-9][0-9][0-9][0-9]*' OR dotted_v4 GLOB '*.[3-9][0-9][0-9].*'
                          OR dotted_v4 GLOB '*.2[6-9][0-9].*' OR dotted_v4 GLOB '*.25[6-9].*')))
          AND instr(hex, ':::') = 0
          AND length(hex) - length(replace(hex, '::', '')) <= 2
          AND (hex NOT GLOB ':*' OR hex GLOB '::*')
          AND (hex NOT GLOB '*:' OR hex GLOB '*::')
          AND (SELECT max(length(value)) <= 4
                      AND CASE WHEN instr(hex, '::') > 0 THEN count(*) FILTER (WHERE value <> '') <= 7
                               ELSE count(*) = 8 END
                 FROM json_each('["' || replace(hex, ':', '","') || '"]'))
         FROM (SELECT head, v4, '.' || v4 || '.' AS dotted_v4, CASE WHEN v4 IS NULL THEN ip ELSE head || '0:0' END AS hex
                 FROM (SELECT CASE WHEN instr(ip, '.') > 0 THEN rtrim(ip, '0123456789.') END AS head,
                              CASE WHEN instr(ip, '.') > 0 THEN substr(ip, length(rtrim(ip, '0123456789.')) + 1) END AS v4)))
     ELSE 0 END;
END;

-- A row enters the outbox as an event waiting to be sent: the database picks its id, the
-- relay's columns keep their defaults, and the two times the relay reads are whole milliseconds. Without this, a plain
-- SQL INSERT could have the relay send an eventTime nobody wrote (an event_time of 'z' went
-- out as "eventTime":0, a created_at of 'yesterday' made the row stale at once), or record
-- as sent an event that never was. A trigger of its own: import checks the rules of
-- metrix_outbox_validate in one query, on the three columns an import line sets.
CREATE TRIGGER metrix_outbox_new_row BEFORE INSERT ON metrix_outbox
BEGIN
  -- Before the insert, SQLite shows an id it is yet to assign as -1 (its test tkt3832 holds it
  -- to that). A given id could be one a purge freed, which "never reused" promises against,
  -- or the largest integer, after which every enqueue fails with "database or disk is full".
  SELECT RAISE(ABORT, 'id: the database assigns it; leave it out of an INSERT')
   WHERE NEW.id IS NOT -1;
  SELECT RAISE(ABORT, 'created_at: must be an integer number of milliseconds since the Unix epoch, between 1973-03-03 and 2100-01-01 (left out, it is the time of the insert)')
   WHERE typeof(NEW.created_at) <> 'integer' OR NEW.created_at NOT BETWEEN 100000000000 AND 4102444800000;
  SELECT RAISE(ABORT, 'next_attempt_at: must be an integer number of milliseconds since the Unix epoch (left out, the row is due at once)')
   WHERE typeof(NEW.next_attempt_at) <> 'integer';
  SELECT RAISE(ABORT, 'status: a new row is pending; leave the status to the relay')
   WHERE NEW.status IS NOT 'pending';
  SELECT RAISE(ABORT, 'attempts/lease_token/event_time/last_http_status/last_error/sent_at: the relay writes these; leave them out of an INSERT')
   WHERE NEW.attempts IS NOT 0 OR NEW.lease_token IS NOT 0 OR NEW.event_time IS NOT NULL
      OR NEW.last_http_status IS NOT NULL OR NEW.last_error IS NOT NULL OR NEW.sent_at IS NOT NULL;
END;

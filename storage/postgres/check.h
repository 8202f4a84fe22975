// check on PostgreSQL: the outbox's fsck where the server, not the file, is the database. The
// same report as SQLite's check (storage/check.h), and the same repair; what differs is what can
// go wrong. There is no integrity_check and no WAL of the outbox's own: the server checks its
// pages (data checksums, amcheck) and manages its WAL. In their place, what a PostgreSQL outbox
// suffers from: the validation rules switched off, dead row versions piling up in the
// high-churn outbox tables, and a transaction elsewhere keeping vacuum from removing them.
//
// Findings, in this order, each saying what it means and what to do:
//   schema          version and migration checksums (check_schema); missing or older: migrate
//   validation      the rules' triggers of 0002_validation.sql present and enabled, the CHECK
//                   on status present and validated: an error otherwise (rows are not checked)
//   leases          rows in 'sending' whose lease expired
//   heartbeats      relays gone without a clean exit (relay_alive, storage/heartbeat.h)
//   dead tuples     dead row versions of the outbox tables, autovacuum switched off for them
//   vacuum horizon  sessions, prepared transactions and replication slots holding back vacuum
// A schema error ends the check (nothing else can be trusted); the others are all reported.
//
// Times: the rows carry the database's clock; `now_ms` is this host's, and is shifted by the
// difference between the two, read once at the start, so clocks that disagree judge alike.
#pragma once

#include <cstdint>
#include <string>

#include "storage/check.h"
#include "storage/result.h"

namespace metrix::pg {

struct CheckOptions {
  // A transaction (or prepared transaction) open longer than this is reported as holding back
  // vacuum. Five minutes: autovacuum visits a table about once a minute (autovacuum_naptime),
  // so a horizon held for five of its rounds has made several of them useless, and at a
  // thousand events a second it has kept 600,000 dead versions of outbox rows; yet a report
  // query or a backup (pg_dump holds one snapshot for its whole run) may rightly run that long,
  // which is why an operator may raise it.
  std::int64_t max_xact_age_ms = 5 * 60 * 1000;
};

// Runs the checks above on the outbox at `uri` (a postgresql:// URI), in the connection's
// current schema. Reads only. The vacuum horizon is judged on the sessions this role can see:
// without pg_read_all_stats (or superuser) the sessions of other roles are hidden, and the
// finding says so (a warning) rather than calling the horizon clear. Errors: the connection's.
Result<CheckReport> check_outbox(const std::string& uri, std::int64_t now_ms, const CheckOptions& options = {});

// As on SQLite, when the schema and the validation rules are fine (otherwise nothing is
// touched and the report comes back with repaired false): in one transaction, rows with expired
// leases go back to 'pending' with last_error kLeaseReleasedByRepair (storage/check.h), and
// stale heartbeats are removed. The heartbeats are read FOR UPDATE, so a relay's beat waits
// until the transaction ends and no beat lands between judging a relay stale and deleting its
// row; a row is deleted only with the beat_at it was judged by. Dead tuples and the vacuum
// horizon are not repaired: their findings stay, with what to do.
Result<CheckReport> repair_outbox(const std::string& uri, std::int64_t now_ms, const CheckOptions& options = {});

}  // namespace metrix::pg

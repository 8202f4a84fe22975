// Writer: the relay's write rounds, on a thread of their own with a connection of their own,
// so that requests keep flowing while outcomes commit (a round holds the write lock for
// milliseconds, the fsync included; on the relay's one loop no answer was read meanwhile).
//
// A round is one BEGIN IMMEDIATE transaction: record the answered outcomes, write the relay's
// heartbeat and app pauses when due, list the apps
// with unfinished rows, note why unroutable apps are not sent, and claim due rows of the
// apps the loop opened. All of it commits or none of it: a round that fails hands its
// outcomes back to the loop, claims nothing, and leaves the database as it was.
//
// Threads: the relay loop owns the Writer and calls every method; the writer thread only
// runs rounds. One round at a time: submit() while busy() is a bug.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/database.h"
#include "storage/outbox.h"

namespace metrix {

struct WriteJob {
  std::int64_t now = 0;
  std::vector<Outcome> outcomes;
  // Rows to claim, in all: up to claim_limit; of one app, up to its gate. An app with no
  // gate is not claimed (the loop opens it once it has seen it in active_apps).
  int claim_limit = 0;
  std::int64_t lease_ms = 0;
  std::map<std::optional<std::string>, int> gates;
  // May claim one suspect row (outbox.h); without it, suspects are left due.
  bool claim_suspect = false;
  // Apps whose pending rows get last_error = reason (Outbox::note_unroutable).
  std::vector<std::pair<std::optional<std::string>, std::string>> notes;
  // The relay's own rows, written in the round rather than on the loop's thread, so that a
  // producer holding the write lock never stalls the loop (and its watchdog pings): the
  // heartbeat when one is due, and app pauses to store (a value) or clear (nullopt), in order.
  std::optional<Heartbeat> heartbeat;
  std::vector<std::pair<std::string, std::optional<AppPause>>> pauses;
};

struct WriteDone {
  Status status;                  // failed: nothing of the round was written
  std::vector<Outcome> outcomes;  // the job's: recorded (less recorded.fenced_ids), or not if it failed
  std::vector<std::pair<std::string, std::optional<AppPause>>> unwritten_pauses;  // likewise
  RecordReport recorded;
  std::vector<Claim> claims;      // leased to this relay by the round
  std::vector<std::optional<std::string>> active_apps;  // apps with pending or sending rows
  // The earliest time a row of an app that got fewer rows than its gate becomes due (unless
  // it left suspects aside): when the next claim is worth making, rather than a poll interval
  // later.
  std::optional<std::int64_t> next_due_at;
  std::int64_t lock_us = 0;       // how long the round held the write lock
  // A connection not this relay's committed since the round before. (The relay's loop writes
  // nothing between rounds: every change of data_version is another process's.)
  bool others_wrote = false;
};

class Writer {
 public:
  // Takes an open connection (used from the writer thread only from now on). `wake` is
  // called from the writer thread when a round is done; it must be thread-safe.
  Writer(Database db, std::function<void()> wake);
  ~Writer();  // waits for the round in progress, then stops the thread
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void submit(WriteJob job);
  bool busy() const { return busy_; }
  // The finished round, if there is one; never blocks.
  std::optional<WriteDone> take();
  // Blocks until the round in progress is done.
  WriteDone wait();

 private:
  void loop();
  WriteDone run_round(WriteJob& job);

  Database db_;
  Outbox outbox_;
  std::optional<std::int64_t> data_version_;  // the writer thread's
  std::function<void()> wake_;
  bool busy_ = false;  // the loop's view: a job submitted and not yet taken

  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<WriteJob> job_;    // guarded by mutex_
  std::optional<WriteDone> done_;  // guarded by mutex_
  bool quit_ = false;              // guarded by mutex_
  std::thread thread_;             // last: starts after everything above exists
};

}  // namespace metrix

// SqliteRelayStore: storage/relay_store.h on an SQLite outbox file, through the statements of
// storage/outbox.h. A write round is one BEGIN IMMEDIATE transaction on the store's own
// connection; it takes the file's one write lock, so its lock time is what a producer
// committing beside the relay may wait.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "storage/database.h"
#include "storage/outbox.h"
#include "storage/relay_store.h"

namespace metrix {

class SqliteRelayStore final : public RelayStore {
 public:
  // Opens the outbox file (which must hold this build's schema: check_schema) on a
  // connection of its own.
  static Result<std::unique_ptr<SqliteRelayStore>> open(const std::string& path, const OpenOptions& options);

  Result<RoundResult> write_round(const WriteJob& job) override;
  Result<std::vector<AppPause>> pauses() override { return outbox_.pauses(); }
  Status beat(const Heartbeat& heartbeat) override { return outbox_.beat(heartbeat); }
  Status remove_heartbeat(const std::string& relay_id) override { return outbox_.remove_heartbeat(relay_id); }
  Result<std::vector<std::optional<std::string>>> active_apps() override { return outbox_.active_apps(); }
  Result<std::int64_t> unfinished_count() override { return outbox_.unfinished_count(); }

 private:
  explicit SqliteRelayStore(Database db) : db_(std::move(db)), outbox_(db_) {}

  Database db_;
  Outbox outbox_;  // after db_: it uses it
  // PRAGMA data_version at the previous round: it changes exactly when another connection
  // committed, since this one writes only in its rounds.
  std::optional<std::int64_t> data_version_;
};

}  // namespace metrix

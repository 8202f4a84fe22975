// SqliteOperatorStore: storage/operator_store.h on an SQLite outbox file, one connection of
// its own, through the functions of storage/status.h, rows.h, report.h and repair.h.
#pragma once

#include <memory>
#include <string>

#include "storage/database.h"
#include "storage/operator_store.h"

namespace metrix {

class SqliteOperatorStore final : public OperatorStore {
 public:
  // Opens the outbox file, which must hold this build's schema (check_schema). With
  // options.read_only it works on a file this process cannot write; the writes then fail.
  static Result<std::unique_ptr<SqliteOperatorStore>> open(const std::string& path, const OpenOptions& options);

  Result<StatusSnapshot> read_status(std::int64_t now) override { return metrix::read_status(db_, now); }
  Result<StatusSnapshot> read_health(std::int64_t now, const HealthThresholds& thresholds) override {
    return metrix::read_health(db_, now, thresholds);
  }
  Result<Backlog> read_backlog(std::int64_t now) override { return metrix::read_backlog(db_, path_, now); }
  Result<std::vector<OutboxRow>> list_rows(const RowFilter& filter, std::int64_t limit) override {
    return metrix::list_rows(db_, filter, limit);
  }
  Result<std::int64_t> count_rows(const RowFilter& filter) override { return metrix::count_rows(db_, filter); }
  Result<RowHistory> row_history(std::int64_t id) override { return metrix::row_history(db_, id); }
  Result<std::vector<ReportRow>> sent_report(const ReportOptions& options) override {
    return metrix::sent_report(db_, options);
  }
  Result<std::int64_t> requeue(const RowFilter& filter, bool include_sent, std::int64_t now) override {
    return metrix::requeue(db_, filter, include_sent, now);
  }
  Result<PurgeCounts> purge_preview(const PurgeOptions& options) override { return metrix::purge_preview(db_, options); }
  Result<PurgeCounts> purge(const PurgeOptions& options,
                            const std::function<void(const PurgeCounts&)>& on_chunk) override {
    return metrix::purge(db_, options, on_chunk);
  }
  Result<SpaceReport> reclaim_space() override { return metrix::reclaim_space(db_); }

 private:
  SqliteOperatorStore(Database db, std::string path) : db_(std::move(db)), path_(std::move(path)) {}
  Database db_;
  std::string path_;  // the file, whose -wal file read_backlog measures
};

}  // namespace metrix

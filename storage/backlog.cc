#include "storage/backlog.h"

#include <sys/stat.h>

#include <map>

#include "storage/query.h"

namespace metrix {

Result<Backlog> read_backlog(Database& db, const std::string& path, std::int64_t now) {
  auto tx = Transaction::begin_read(db.handle());
  if (!tx) return tx.error();
  std::map<std::optional<std::string>, AppBacklog> apps;
  auto app_entry = [&](const std::optional<std::string>& app) -> AppBacklog& {
    auto [it, added] = apps.try_emplace(app);
    if (added) {
      it->second.app_id = app;
      for (RowStatus s : all_statuses()) it->second.rows[s] = 0;
    }
    return it->second;
  };
  auto counts = db.prepare("SELECT app_id, status, count(*) FROM metrix_outbox GROUP BY app_id, status");
  if (!counts) return counts.error();
  for (;;) {
    auto row = counts->step();
    if (!row) return row.error();
    if (!*row) break;
    auto status = status_column(*counts, 1);
    if (!status) return status.error();
    AppBacklog& a = app_entry(counts->optional_text(0));
    a.rows[*status] = counts->int64(2);
  }
  auto due = db.prepare(
      "SELECT app_id, sum(next_attempt_at <= ?1), min(next_attempt_at) FROM metrix_outbox INDEXED BY metrix_outbox_due "
      "WHERE status IN ('pending', 'sending') GROUP BY app_id");
  if (!due) return due.error();
  due->bind(1, now);
  for (;;) {
    auto row = due->step();
    if (!row) return row.error();
    if (!*row) break;
    AppBacklog& a = app_entry(due->optional_text(0));
    a.due = due->int64(1);
    if (due->int64(2) <= now) a.oldest_due_since = due->int64(2);
  }
  Backlog backlog;
  for (auto& [app, a] : apps) backlog.apps.push_back(std::move(a));
  struct stat st {};
  if (stat((path + "-wal").c_str(), &st) == 0) backlog.wal_bytes = st.st_size;
  return backlog;
}

}  // namespace metrix

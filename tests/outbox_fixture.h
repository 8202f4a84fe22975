// Small helpers for tests that prepare and inspect a real outbox file.
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "storage/migrate.h"
#include "storage/producer.h"
#include "tests/support/process.h"

namespace metrix::test {

inline const std::string kDevKey = "dev-key-5f1c9e0b7d2a4c68";  // what must never be printed

inline std::string valid_payload(int i, const std::string& slug = "taqsq") {
  return "{\"metrixUserId\":\"user-" + std::to_string(i) + "\",\"eventSlug\":\"" + slug +
         "\",\"advertisingId\":\"38400000-8cf0-11bd-b23e-10b96e40000d\",\"customAttributes\":{\"n\":\"" +
         std::to_string(i) + "\"}}";
}

// Writes `key` into an owner-only file in `dir`, as a dev key file must be, and returns the
// config file table that gives it to app `app_id`.
inline std::string app_key_config(const TempDir& dir, const std::string& app_id, const std::string& key) {
  const auto path = dir.file(app_id + ".key");
  std::ofstream(path) << key << "\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  return "[apps.\"" + app_id + "\"]\ndev-key-file = \"" + path.string() + "\"\n";
}

// Creates the outbox and enqueues `n` events (ids 1..n) in one transaction.
inline void make_outbox(const std::string& path, int n, const std::string& slug = "taqsq",
                        const std::optional<std::string>& app_id = std::nullopt) {
  auto db = Database::open(path, {.create = true});
  REQUIRE(db);
  REQUIRE(migrate(*db));
  Producer producer(db->handle());
  REQUIRE(db->exec("BEGIN"));
  for (int i = 1; i <= n; ++i) REQUIRE(producer.enqueue(valid_payload(i, slug), {.app_id = app_id}));
  REQUIRE(db->exec("COMMIT"));
}

// Runs `sql` on its own connection and returns `read(statement)` of its first row.
template <class Read>
auto first_row(const std::string& path, const std::string& sql, Read read) {
  auto db = Database::open(path);
  REQUIRE(db);
  auto stmt = db->prepare(sql);
  REQUIRE_MESSAGE(stmt, sql);
  auto row = stmt->step();
  REQUIRE(row);
  REQUIRE(*row);
  return read(*stmt);
}

inline std::int64_t scalar(const std::string& path, const std::string& sql) {
  return first_row(path, sql, [](Statement& s) { return s.int64(0); });
}

inline std::string text(const std::string& path, const std::string& sql) {
  return first_row(path, sql, [](Statement& s) { return s.text(0); });
}

inline std::int64_t count_status(const std::string& path, const std::string& status) {
  return scalar(path, "SELECT count(*) FROM metrix_outbox WHERE status = '" + status + "'");
}

// The relay's command line with fast test timings; `extra` appended.
// The request timeout is long enough for any build: under ThreadSanitizer fake-metrix and the
// relay run many times slower, and a 2 s timeout expired on requests fake-metrix had already
// recorded, so their correct resends broke counts that expect one copy. A test that needs a
// timeout to fire passes its own --timeout (and --lease).
inline std::vector<std::string> relay_args(const std::string& db, const std::string& url,
                                           const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {relay_binary(), "run", "--db", db, "--endpoint", url, "--app-id", "app1",
                                   "--backoff-base", "10ms", "--backoff-max", "100ms", "--timeout", "30s",
                                   "--lease", "90s", "--shutdown-timeout", "3s", "--progress-interval", "1s"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

inline std::map<std::string, std::string> relay_env() { return {{"METRIX_DEV_KEY", kDevKey}}; }

// The admin listener's URL of a relay started with --admin-listen 127.0.0.1:0, from its log line.
inline std::string admin_url(Process& relay) {
  const std::string needle = "admin listener on http://";
  REQUIRE_MESSAGE(relay.wait_for_err(needle, std::chrono::seconds(30)), relay.err());
  const std::string err = relay.err();
  const size_t at = err.find(needle) + needle.size() - 7;  // from "http://"
  return err.substr(at, err.find('/', at + 7) - at);
}

// fake-metrix knowing app1 with kDevKey, and `extra` flags.
inline std::vector<std::string> fake_args(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"--app", "app1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}
inline std::map<std::string, std::string> fake_env() { return {{"FAKE_METRIX_KEYS", "app1=" + kDevKey}}; }

}  // namespace metrix::test

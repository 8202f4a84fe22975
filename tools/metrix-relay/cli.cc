#include "tools/metrix-relay/cli.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <system_error>

#include "relay/remedy.h"
#include "storage/migrate.h"
#include "storage/postgres/migrate.h"
#include "storage/stores.h"

namespace metrix::cli {

int exit_code(const Error& error) {
  switch (error.code) {
    case Errc::invalid_event:
    case Errc::invalid_argument: return kInvalidInput;
    case Errc::duplicate: return kDuplicate;
    default: return kRuntimeFailure;
  }
}

CLI::Validator whole_number(long long min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        long long value = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || end != text.data() + text.size() || value < min) {
          return fmt::format("'{}' is not a whole number of at least {}", text, min);
        }
        return {};
      },
      fmt::format("INT>={}", min));
}

int fail(const Error& error) {
  // Not fmt::print, which throws when stderr is gone (`run` ignores SIGPIPE): the exit code
  // still says what happened.
  (void)std::fputs(fmt::format("metrix-relay: {}\n", error.message).c_str(), stderr);
  return exit_code(error);
}

Result<Database> open_outbox(const std::string& path, const OpenOptions& options) {
  auto db = Database::open(path, options);
  if (!db) return with_remedy(db.error(), path);
  if (auto s = check_schema(*db); !s) return with_remedy(s.error(), path);
  return db;
}

Result<pg::Connection> open_pg_outbox(const std::string& uri) {
  auto db = pg::Connection::open(uri);
  if (!db) return db.error();
  if (auto s = pg::check_schema(*db); !s) return with_remedy(s.error(), uri);
  return db;
}

namespace {

Result<std::unique_ptr<OperatorStore>> open_store(const std::string& path, const OpenOptions& options) {
  auto store = open_operator_store(path, options);
  if (!store) return with_remedy(store.error(), path);
  return store;
}

}  // namespace

Result<std::unique_ptr<OperatorStore>> open_store(const std::string& path) { return open_store(path, OpenOptions{}); }

Result<std::unique_ptr<OperatorStore>> open_store_to_read(const std::string& path) {
  OpenOptions options;
  options.read_only = true;
  return open_store(path, options);
}

}  // namespace metrix::cli

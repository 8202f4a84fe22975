#include "tools/metrix-relay/cli.h"

#include <fmt/format.h>

#include <cstdio>

#include "storage/migrate.h"

namespace metrix::cli {

int exit_code(const Error& error) {
  switch (error.code) {
    case Errc::invalid_event:
    case Errc::invalid_argument: return kInvalidInput;
    case Errc::duplicate: return kDuplicate;
    default: return kRuntimeFailure;
  }
}

int fail(const Error& error) {
  // Not fmt::print, which throws when stderr is gone (`run` ignores SIGPIPE): the exit code
  // still says what happened.
  (void)std::fputs(fmt::format("metrix-relay: {}\n", error.message).c_str(), stderr);
  return exit_code(error);
}

Result<Database> open_outbox(const std::string& path, const OpenOptions& options) {
  auto db = Database::open(path, options);
  if (!db) return db.error();
  if (auto s = check_schema(*db); !s) return s.error();
  return db;
}

Result<Database> open_outbox_to_read(const std::string& path) {
  OpenOptions options;
  options.read_only = true;
  return open_outbox(path, options);
}

}  // namespace metrix::cli

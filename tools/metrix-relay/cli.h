// Shared pieces of the metrix-relay command line: exit codes and the way a subcommand
// opens the outbox.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "storage/clock.h"
#include "storage/database.h"
#include "storage/operator_store.h"
#include "storage/postgres/connection.h"
#include "storage/result.h"

namespace metrix::cli {

// Exit codes, documented in --help and README.md.
constexpr int kOk = 0;
constexpr int kRuntimeFailure = 1;  // the database or the network failed; nothing half-done
constexpr int kInvalidInput = 2;    // usage error or invalid event; nothing written
constexpr int kDuplicate = 3;       // dedup_key already in the outbox; nothing written

// The exit code for an error value.
int exit_code(const Error& error);

// Prints "metrix-relay: message" to stderr and returns exit_code(error).
int fail(const Error& error);

// A flag or argument that must be a whole number of at least `min`, with a message that
// says so (CLI11's own number checks print the range up to 1.8e308 in full).
CLI::Validator whole_number(long long min);

// Opens an existing, fully migrated outbox: the connection a producer writes on (enqueue,
// import).
Result<Database> open_outbox(const std::string& path, const OpenOptions& options = {});
// The same, on PostgreSQL (`uri` is a postgresql:// URI; messages name it redacted).
Result<pg::Connection> open_pg_outbox(const std::string& uri);
// The same outbox as the operator commands see it.
Result<std::unique_ptr<OperatorStore>> open_store(const std::string& path);
// For commands that only read: works on a file this process cannot write.
Result<std::unique_ptr<OperatorStore>> open_store_to_read(const std::string& path);

// Each subcommand registers itself on the app; its callback stores the exit code.
void add_migrate(CLI::App& app, int& exit_code);
void add_enqueue(CLI::App& app, int& exit_code);
void add_run(CLI::App& app, int& exit_code);
void add_check(CLI::App& app, int& exit_code);
void add_status(CLI::App& app, int& exit_code);
void add_list(CLI::App& app, int& exit_code);
void add_show(CLI::App& app, int& exit_code);
void add_requeue(CLI::App& app, int& exit_code);
void add_purge(CLI::App& app, int& exit_code);
void add_import(CLI::App& app, int& exit_code);
void add_report(CLI::App& app, int& exit_code);

}  // namespace metrix::cli

// metrix-relay: the command line. Each subcommand lives in its own *_command.cc.
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "tools/metrix-relay/cli.h"

int main(int argc, char** argv) {
  // Past a file size limit (RLIMIT_FSIZE), a write must fail with EFBIG, which SQLite
  // reports and every command handles, rather than kill the process mid-transaction.
  signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "metrix-relay: a durable store-and-forward relay for Metrix server-to-server events.\n"
      "Producers write events into the SQLite table metrix_outbox inside their own transactions;\n"
      "'metrix-relay run' delivers them to Metrix and records the outcome of every row."};
  app.name("metrix-relay");
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 runtime failure, 2 usage error or invalid input, 3 duplicate dedup key.\n"
      "Run 'metrix-relay SUBCOMMAND --help' for the options of each subcommand.");
  int exit_code = metrix::cli::kRuntimeFailure;
  metrix::cli::add_migrate(app, exit_code);
  metrix::cli::add_enqueue(app, exit_code);
  metrix::cli::add_run(app, exit_code);
  metrix::cli::add_check(app, exit_code);
  metrix::cli::add_status(app, exit_code);
  metrix::cli::add_list(app, exit_code);
  metrix::cli::add_show(app, exit_code);
  metrix::cli::add_requeue(app, exit_code);
  metrix::cli::add_purge(app, exit_code);
  metrix::cli::add_import(app, exit_code);
  metrix::cli::add_report(app, exit_code);
  app.set_version_flag("--version", "metrix-relay " METRIX_RELAY_VERSION);
  // CLI11 reads an unknown first word as a missing subcommand; name it instead.
  std::string names;
  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known = known || (argc > 1 && sub->get_name() == argv[1]);
  }
  if (argc > 1 && argv[1][0] != '-' && !known) {
    return metrix::cli::fail(metrix::Error{
        metrix::Errc::invalid_argument, fmt::format("unknown command '{}'; the commands are: {}", argv[1], names)});
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help or the usage error
    return code == 0 ? 0 : metrix::cli::kInvalidInput;
  } catch (const std::exception& e) {
    return metrix::cli::fail(metrix::Error{metrix::Errc::io, e.what()});  // exit 1
  }
  return exit_code;
}

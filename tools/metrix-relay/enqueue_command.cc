#include <fmt/format.h>

#include <iostream>
#include <iterator>
#include <optional>
#include <string>

#include "storage/postgres/producer.h"
#include "storage/producer.h"
#include "tools/metrix-relay/cli.h"

namespace metrix::cli {

void add_enqueue(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("enqueue", "Add one event to the outbox (validated, then committed)");
  cmd->footer(
      "The payload is the S2S request body, a JSON object; eventTime may be left out (the relay\n"
      "then sends the time the row was enqueued). On success the new row id is printed.\n"
      "Exit codes: 0 enqueued, 2 invalid or malformed event (the message names the field and the\n"
      "rule), 3 the dedup key is already in the outbox, 1 the database failed.\n\n"
      "Examples:\n"
      "  metrix-relay enqueue --db outbox.db --json '{\"metrixUserId\":\"u-1\",\"eventSlug\":\"taqsq\",\n"
      "      \"advertisingId\":\"38400000-8cf0-11bd-b23e-10b96e40000d\"}'\n"
      "  producer-script | metrix-relay enqueue --db outbox.db --json - --dedup-key order-1234");
  struct Args {
    std::string db;
    std::string json;
    // Given but empty is not absent: the database refuses it, as it refuses '' in SQL.
    std::optional<std::string> app_id;
    std::optional<std::string> dedup_key;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--db", args->db, "outbox database: an SQLite file or a postgresql:// URI (see 'migrate')")->required();
  cmd->add_option("--json", args->json, "the event payload, or - to read it from standard input")->required();
  cmd->add_option("--app-id", args->app_id, "Metrix appId for this event (default: the relay's --app-id)");
  cmd->add_option("--dedup-key", args->dedup_key, "unique key: a second event with the same key is refused");
  cmd->callback([args, &exit_code] {
    std::string payload = args->json;
    if (payload == "-") payload.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    EnqueueOptions options;
    options.app_id = args->app_id;
    options.dedup_key = args->dedup_key;
    Result<std::int64_t> id = Error{Errc::io, {}};
    if (pg::is_uri(args->db)) {
      auto db = open_pg_outbox(args->db);
      if (!db) return void(exit_code = fail(db.error()));
      id = pg::Producer(db->handle()).enqueue(payload, options);
    } else {
      auto db = open_outbox(args->db);
      if (!db) return void(exit_code = fail(db.error()));
      id = Producer(db->handle()).enqueue(payload, options);
    }
    if (!id) {
      exit_code = fail(id.error());
      return;
    }
    fmt::print("{}\n", *id);
    exit_code = kOk;
  });
}

}  // namespace metrix::cli

#include <fmt/format.h>

#include "storage/rows.h"
#include "storage/status.h"
#include "tools/metrix-relay/cli.h"
#include "storage/time_text.h"
#include "tools/metrix-relay/output.h"

namespace metrix::cli {

namespace {

std::string or_dash(const std::optional<std::string>& v) { return v ? *v : "-"; }
std::string time_or_dash(const std::optional<std::int64_t>& ms) {
  return ms ? fmt::format("{} ({})", utc_time(*ms), *ms) : "-";
}

void print_history(const RowHistory& h, std::int64_t now) {
  const OutboxRow& r = h.row;
  fmt::print("row {}: {}\n", r.id, row_status_name(r.status));
  Table fields({"FIELD", "VALUE"});
  fields.add({"app_id", r.app_id.value_or(std::string(kDefaultAppLabel) + " (NULL: the relay's --app-id)")});
  fields.add({"event_slug", or_dash(r.event_slug)});
  fields.add({"dedup_key", or_dash(r.dedup_key)});
  fields.add({"created_at", fmt::format("{} ({}), {} ago", utc_time(r.created_at), r.created_at,
                                        describe_duration(now - r.created_at))});
  fields.add({"attempts", std::to_string(r.attempts)});
  if (r.lease_expiries > 0) {
    fields.add({"lease_expiries", fmt::format("{} (claims in a row whose relay stopped before an answer)",
                                              r.lease_expiries)});
  }
  if (r.status == RowStatus::pending || r.status == RowStatus::sending) {
    fields.add({"next_attempt_at", fmt::format("{} ({}){}", utc_time(r.next_attempt_at), r.next_attempt_at,
                                               r.status == RowStatus::sending ? ", when the lease expires" : "")});
  }
  fields.add({"event_time", time_or_dash(r.event_time)});
  fields.add({"last_http_status", r.last_http_status ? std::to_string(*r.last_http_status) : "-"});
  fields.add({"last_error", cell(or_dash(r.last_error), 200)});
  fields.add({"sent_at", time_or_dash(r.sent_at)});
  fields.print(stdout, "  ");

  fmt::print("payload:\n");
  auto payload = nlohmann::ordered_json::parse(r.payload, nullptr, false);
  std::string text = payload.is_discarded() ? r.payload
                                            : payload.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::string indented = "  ";
  for (char c : text) {
    indented.push_back(c);
    if (c == '\n') indented += "  ";
  }
  fmt::print("{}\n", indented);

  if (h.attempts.empty()) {
    fmt::print("attempts: none\n");
    return;
  }
  fmt::print("attempts:\n");
  Table t({"#", "STARTED", "MS", "HTTP", "ERROR", "RESPONSE"});
  for (const auto& a : h.attempts) {
    t.add({std::to_string(a.attempt), utc_time(a.started_at), std::to_string(a.finished_at - a.started_at),
           a.http_status ? std::to_string(*a.http_status) : "-", cell(or_dash(a.error), 50), cell(or_dash(a.response), 80)});
  }
  t.print(stdout, "  ");
}

nlohmann::ordered_json history_json(const RowHistory& h) {
  nlohmann::ordered_json j = row_json(h.row);
  j["attempt_history"] = nlohmann::ordered_json::array();
  for (const auto& a : h.attempts) {
    nlohmann::ordered_json x;
    x["attempt"] = a.attempt;
    x["started_at"] = a.started_at;
    x["finished_at"] = a.finished_at;
    x["http_status"] = a.http_status ? nlohmann::ordered_json(*a.http_status) : nullptr;
    x["error"] = a.error ? nlohmann::ordered_json(*a.error) : nullptr;
    x["response"] = a.response ? nlohmann::ordered_json(*a.response) : nullptr;
    j["attempt_history"].push_back(std::move(x));
  }
  return j;
}

}  // namespace

void add_show(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("show", "Show one row: its columns, its payload and every HTTP attempt");
  cmd->footer(
      "The attempt history is metrix_outbox_attempt: one line per HTTP attempt with its start time,\n"
      "duration, HTTP status (- for a transport error such as a timeout), error and the start of\n"
      "Metrix's answer. --json prints the row's columns, the payload as an object, and\n"
      "\"attempt_history\".\n"
      "Exit codes: 0 shown, 1 no such row or the database failed, 2 bad options.\n\n"
      "Examples:\n"
      "  metrix-relay show --db app.db 42\n"
      "  metrix-relay show --db app.db 42 --json | jq '.attempt_history[-1].response'");
  struct Args {
    std::string db;
    std::int64_t id = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database")->required();
  cmd->add_option("id", a->id, "the row's id")->required()->check(whole_number(0));
  add_format_flags(*cmd, a->json, nullptr);
  cmd->callback([a, &exit_code] {
    auto store = open_store_to_read(a->db);
    if (!store) return void(exit_code = fail(store.error()));
    auto h = (*store)->row_history(a->id);
    if (!h) return void(exit_code = fail(h.error()));
    if (a->json) print_json(history_json(*h));
    else print_history(*h, now_ms());
    exit_code = kOk;
  });
}

}  // namespace metrix::cli

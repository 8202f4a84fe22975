#include "storage/event.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>

#include "storage/database.h"
#include "storage/migrate.h"
#include "storage/rule_message.h"

namespace metrix {

Violation parse_violation(std::string_view message) {
  auto colon = message.find(": ");
  if (colon == std::string_view::npos) return Violation{"payload", std::string(message)};
  return Violation{std::string(message.substr(0, colon)), std::string(message.substr(colon + 2))};
}

std::string with_key_named(sqlite3* db, std::string_view payload, std::string message) {
  constexpr std::string_view kUnknown = "payload: unknown key; the keys are ";
  constexpr std::string_view kRepeated = "payload: must not repeat a key in any object";
  const char* sql = nullptr;
  if (message.find(" (here: ") != std::string::npos) {
    return message;  // named already
  } else if (message.rfind(kUnknown, 0) == 0) {
    sql = "SELECT key, NULL FROM json_each(?1) WHERE NOT instr(?2, ', ' || key || ', ') LIMIT 1";
  } else if (message == kRepeated) {
    sql = "SELECT key, substr(path, 3) FROM json_tree(?1) WHERE typeof(key) = 'text' "
          "GROUP BY parent, key HAVING count(*) > 1 LIMIT 1";
  } else {
    return message;
  }
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) return message;
  Statement stmt(raw);
  stmt.bind(1, payload);
  // The keys the message lists, each between ", " and ", ": the message is the one list.
  const std::string keys = ", " + message.substr(std::min(kUnknown.size(), message.size())) + ", ";
  if (sqlite3_bind_parameter_count(raw) == 2) stmt.bind(2, std::string_view(keys));
  if (auto row = stmt.step(); !row || !*row) return message;
  std::string key = stmt.text(0), in = stmt.optional_text(1).value_or("");
  return fmt::format("{} (here: \"{}\"{})", message, key, in.empty() ? "" : ", in " + in);
}

namespace {

// A private in-memory outbox per thread: inserting into it runs the same trigger a
// producer's INSERT runs; the row is rolled back at once.
struct Validator {
  Database db;
  Statement insert;  // destroyed before db

  static Result<Validator*> for_this_thread() {
    thread_local std::optional<Validator> validator;
    if (!validator) {
      auto made = make();
      if (!made) return made.error();  // tried again on the next call
      validator.emplace(std::move(*made));
    }
    return &*validator;
  }

  static Result<Validator> make() {
    auto db = Database::open_memory();
    if (!db) return db.error();
    if (auto m = migrate(*db); !m) return m.error();
    auto insert = db->prepare("INSERT INTO metrix_outbox (payload, app_id, dedup_key) VALUES (?1, ?2, ?3)");
    if (!insert) return insert.error();
    return Validator{std::move(*db), std::move(*insert)};
  }
};

Error cannot_validate(const Error& error) {
  return Error{Errc::io, "cannot check the event against the rules: " + error.message};
}

}  // namespace

Result<std::optional<Violation>> validate_payload(std::string_view payload, const std::optional<std::string>& app_id,
                                                  const std::optional<std::string>& dedup_key) {
  auto validator = Validator::for_this_thread();
  if (!validator) return cannot_validate(validator.error());
  Validator& v = **validator;
  if (auto s = v.db.exec("SAVEPOINT validate"); !s) return cannot_validate(s.error());
  v.insert.bind(1, payload).bind(2, app_id).bind(3, dedup_key);
  auto done = v.insert.step();
  v.insert.reset();
  const Status rolled_back = v.db.exec("ROLLBACK TO validate; RELEASE validate");
  if (done) {
    if (!rolled_back) return cannot_validate(rolled_back.error());
    return std::optional<Violation>();
  }
  if (done.error().code != Errc::invalid_event) return cannot_validate(done.error());
  return std::optional<Violation>(parse_violation(with_key_named(v.db.handle(), payload, done.error().message)));
}

const char* currency_name(Currency currency) {
  switch (currency) {
    case Currency::IRR: return "IRR";
    case Currency::USD: return "USD";
    case Currency::EUR: return "EUR";
  }
  return "?";
}

struct Event::Json {
  nlohmann::ordered_json object = nlohmann::ordered_json::object();
};

Event::Event() : json_(std::make_unique<Json>()) {}
Event::Event(const Event& other) : json_(std::make_unique<Json>(*other.json_)) {}
Event::Event(Event&& other) noexcept = default;
Event& Event::operator=(Event other) noexcept {
  json_ = std::move(other.json_);
  return *this;
}
Event::~Event() = default;

Event Event::custom(std::string metrix_user_id, std::string event_slug) {
  Event e;
  e.json_->object["metrixUserId"] = std::move(metrix_user_id);
  e.json_->object["eventSlug"] = std::move(event_slug);
  return e;
}

Event Event::revenue(std::string metrix_user_id, std::string event_slug, double amount, Currency currency) {
  Event e = custom(std::move(metrix_user_id), std::move(event_slug));
  e.attribute("_currency", currency_name(currency));
  e.metric("_revenue", amount);
  return e;
}

Event& Event::session_id(std::string id) { json_->object["metrixSessionId"] = std::move(id); return *this; }
Event& Event::idfa(std::string id) { json_->object["idfa"] = std::move(id); return *this; }
Event& Event::advertising_id(std::string id) { json_->object["advertisingId"] = std::move(id); return *this; }
Event& Event::oaid(std::string id) { json_->object["oaid"] = std::move(id); return *this; }
Event& Event::attribute(const std::string& key, std::string value) {
  json_->object["customAttributes"][key] = std::move(value);
  return *this;
}
Event& Event::metric(const std::string& key, double value) {
  json_->object["customMetrics"][key] = value;
  return *this;
}
Event& Event::device_ip(std::string ip) { json_->object["deviceIp"] = std::move(ip); return *this; }
Event& Event::event_time_ms(std::int64_t ms) { json_->object["eventTime"] = ms; return *this; }

std::string Event::payload() const {
  // Invalid UTF-8 in a string becomes U+FFFD rather than an exception; the rules then judge it.
  return json_->object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace metrix

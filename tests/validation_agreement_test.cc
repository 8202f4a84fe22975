// The rules of a valid event live once, in the migration's trigger. This test proves that
// the three ways to enqueue agree on every rule: the C++ validator, the C++ producer API on
// a real database file, and a plain SQL INSERT from another connection (what a producer in
// any language does); and that the import's checkers give the same verdicts. It also fails
// when a rule is added without a case here.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "storage/event.h"
#include "storage/import_checkers.h"
#include "storage/migrate.h"
#include "storage/producer.h"
#include "tests/support/process.h"

namespace {

struct Case {
  std::string payload;
  std::string message;  // empty: valid
  std::string here = {};  // what the C++ paths add to name the key at fault; plain SQL cannot
};

const std::string kDevice = R"("advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d")";

std::string event(const std::string& extra) {
  return R"({"metrixUserId":"u-1","eventSlug":"taqsq",)" + kDevice + (extra.empty() ? "" : "," + extra) + "}";
}

const char* kIp = "deviceIp: must be a textual IPv4 or IPv6 address";
const char* kTime =
    "eventTime: must be an integer number of milliseconds since the Unix epoch, between 1973-03-03 and 2100-01-01 "
    "(a time in seconds is refused)";

std::vector<Case> cases() {
  std::vector<Case> c = {
      {event(""), ""},
      {event(R"("metrixSessionId":"s","customAttributes":{"a":"b"},"customMetrics":{"v":130.5,"n":-2},"deviceIp":"10.1.2.3","eventTime":1570274953412)"), ""},
      {event(R"("customAttributes":{"_currency":"USD"},"customMetrics":{"_revenue":53.700})"), ""},
      {std::string(70000, ' ') + event(""), "payload: must be at most 65536 bytes"},
      {"not json", "payload: must be valid JSON text"},
      {event("").substr(1), "payload: must be valid JSON text"},
      {std::string(R"({"metrixUserId":"u)") + '\0' + R"(","eventSlug":"s",)" + kDevice + "}",
       "payload: must be valid JSON text"},
      {std::string(2001, '[') + std::string(2001, ']'), "payload: must be valid JSON text"},
      // Found by fuzzing: json_valid() stops at a NUL byte, so what followed one went unchecked.
      {event("") + std::string(1, '\0') + "x", "payload: must be valid JSON text"},
      // Found by fuzzing: SQLite compares strings up to U+0000, so "IRR\u0000x" passed as IRR.
      {event(R"("customAttributes":{"_currency":"IRR\u0000x"},"customMetrics":{"_revenue":1})"),
       "payload: must not contain the escape \\u0000"},
      {event(R"("deviceIp":"1.2.3.4\u0000")"), "payload: must not contain the escape \\u0000"},
      // Found by fuzzing: an escaped key was unescaped by json_each but missed by '$.path'
      // lookups, so it skipped the rules (and the relay sent two eventTime keys).
      {event(R"("event\u0054ime":"yesterday")"), "payload: keys must be plain text, without escape sequences"},
      {event(R"("customAttributes":{"a\"b":"x"})"), "payload: keys must be plain text, without escape sequences"},
      {event(R"("customAttributes":{"content type":"x","a.b":"y","ش":"z"})"), ""},
      {"[1,2]", "payload: must be a JSON object"},
      {"\"text\"", "payload: must be a JSON object"},
      {event(R"("eventSlug":"again")"), "payload: must not repeat a key in any object", R"( (here: "eventSlug"))"},
      {event(R"("customAttributes":{"a":"1","a":"2"})"), "payload: must not repeat a key in any object",
       R"( (here: "a", in customAttributes))"},
      {event(R"("eventName":"x")"),
       "payload: unknown key; the keys are metrixUserId, metrixSessionId, idfa, advertisingId, oaid, "
       "customAttributes, customMetrics, deviceIp, eventSlug, eventTime",
       R"( (here: "eventName"))"},
      {event(R"("eventTimes":1)"),  // not taken for eventTime, a key of the list it starts with
       "payload: unknown key; the keys are metrixUserId, metrixSessionId, idfa, advertisingId, oaid, "
       "customAttributes, customMetrics, deviceIp, eventSlug, eventTime",
       R"( (here: "eventTimes"))"},
      {event(R"("Slug":1)"),  // nor for eventSlug, which ends with it
       "payload: unknown key; the keys are metrixUserId, metrixSessionId, idfa, advertisingId, oaid, "
       "customAttributes, customMetrics, deviceIp, eventSlug, eventTime",
       R"( (here: "Slug"))"},
      {R"({"eventSlug":"s",)" + kDevice + "}", "metrixUserId: is required and must be a non-empty string"},
      {R"({"metrixUserId":"","eventSlug":"s",)" + kDevice + "}",
       "metrixUserId: is required and must be a non-empty string"},
      {R"({"metrixUserId":7,"eventSlug":"s",)" + kDevice + "}",
       "metrixUserId: is required and must be a non-empty string"},
      {R"({"metrixUserId":"u",)" + kDevice + "}", "eventSlug: is required and must be a non-empty string"},
      {R"({"metrixUserId":"u","eventSlug":null,)" + kDevice + "}",
       "eventSlug: is required and must be a non-empty string"},
      {event(R"("metrixSessionId":"")"), "metrixSessionId: must be a non-empty string when present"},
      {event(R"("metrixSessionId":1)"), "metrixSessionId: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s","idfa":""})",
       "idfa/advertisingId/oaid: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s","oaid":12})",
       "idfa/advertisingId/oaid: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s"})",
       "idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers "
       "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)"},
      {event(R"("idfa":"i")"),
       "idfa/advertisingId/oaid: exactly one is allowed, more than one is set (Metrix answers "
       "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET)"},
      {event(R"("customAttributes":["a"])"), "customAttributes: must be a JSON object"},
      {event(R"("customAttributes":{"a":1})"), "customAttributes: every value must be a string"},
      {event(R"("customAttributes":{"a":null})"), "customAttributes: every value must be a string"},
      {event(R"("customMetrics":"5")"), "customMetrics: must be a JSON object"},
      {event(R"("customMetrics":{"v":"5"})"), "customMetrics: every value must be a finite number"},
      {event(R"("customMetrics":{"v":1e999})"), "customMetrics: every value must be a finite number"},
      // The smallest 64-bit integer is a finite number: abs() of it raised "integer overflow".
      {event(R"("customMetrics":{"v":-9223372036854775808,"w":9223372036854775808})"), ""},
      {event(R"("customMetrics":{"v":1.7976931348623157e308,"w":-1.7976931348623157e308})"), ""},
      {event(R"("customMetrics":{"v":-1e309})"), "customMetrics: every value must be a finite number"},
      {event(R"("customMetrics":{"_revenue":5})"),
       "customMetrics._revenue/customAttributes._currency: a revenue event needs both"},
      {event(R"("customAttributes":{"_currency":"IRR"})"),
       "customMetrics._revenue/customAttributes._currency: a revenue event needs both"},
      {event(R"("customAttributes":{"_currency":"GBP"},"customMetrics":{"_revenue":5})"),
       "customAttributes._currency: must be one of IRR, USD, EUR"},
      {event(R"("eventTime":1570274953)"), kTime},
      {event(R"("eventTime":"1570274953412")"), kTime},
      {event(R"("eventTime":1570274953412.5)"), kTime},
      {event(R"("eventTime":99999999999999999999999)"), kTime},
      {event(R"("eventTime":4102444800001)"), kTime},
      {event(R"("eventTime":4102444800000)"), ""},
  };
  for (const char* ip : {"1.2.3.4", "255.255.255.255", "0.0.0.0", "::", "::1", "2001:db8::8a2e:370:7334",
                         "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::ffff:192.0.2.1", "1:2:3:4:5:6:1.2.3.4",
                         "FE80::ABCD", "249.250.251.252", "199.200.0.9", "::ffff:255.255.255.255"}) {
    c.push_back({event(std::string(R"("deviceIp":")") + ip + "\""), ""});
  }
  for (const char* ip : {"", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "a.b.c.d", "1:2:3:4:5:6:7:8:9",
                         ":1::2", "1::2:", "1:::2", "1::2::3", "12345::1", "abc1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4",
                         "fe80::1%eth0", "::ffff:1.2.3", "localhost", " 1.2.3.4", "1.2.3.256", "1.2.3.260",
                         "1.2.3.300", "1.2.3.1000", "1.2.3.04", "1.2.3.", ".1.2.3", "::ffff:1.2.3.256",
                         "::ffff:01.2.3.4"}) {
    c.push_back({event(std::string(R"("deviceIp":")") + ip + "\""), kIp});
  }
  c.push_back({event(R"("deviceIp":16909060)"), kIp});
  return c;
}

// A producer in another language: its own connection, a plain INSERT.
std::string raw_sql_insert(const std::string& path, const std::string& payload) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO metrix_outbox (payload) VALUES (?)", -1, &stmt, nullptr) == SQLITE_OK);
  sqlite3_bind_text(stmt, 1, payload.data(), static_cast<int>(payload.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt);
  std::string message = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return message;
}

}  // namespace

TEST_CASE("the C++ validator, the producer API and a plain SQL insert agree on every rule") {
  metrix::test::TempDir dir;
  auto db = metrix::Database::open(dir.db(), {.create = true});
  REQUIRE(db);
  REQUIRE(metrix::migrate(*db));
  metrix::Producer producer(db->handle());

  for (const Case& c : cases()) {
    CAPTURE(c.payload.substr(0, 200));
    auto validated = metrix::validate_payload(c.payload).value();
    CHECK((validated ? validated->message() : std::string()) == (c.message.empty() ? "" : c.message + c.here));

    auto enqueued = producer.enqueue(c.payload);
    if (c.message.empty()) {
      CHECK(enqueued.ok());
    } else {
      REQUIRE_FALSE(enqueued.ok());
      CHECK(enqueued.error().code == metrix::Errc::invalid_event);
      CHECK(enqueued.error().message == c.message + c.here);
    }
    CHECK(raw_sql_insert(dir.db(), c.payload) == c.message);
  }
}

TEST_CASE("every rule in the migrations has a case in this test") {
  std::set<std::string> rules;
  const std::string raise = "RAISE(ABORT, '";
  for (const auto& m : metrix::embedded_migrations()) {
    std::string_view sql = m.sql;
    for (size_t at = sql.find(raise); at != std::string_view::npos; at = sql.find(raise, at)) {
      at += raise.size();
      size_t end = sql.find('\'', at);
      REQUIRE(end != std::string_view::npos);
      rules.insert(std::string(sql.substr(at, end - at)));
    }
  }
  std::set<std::string> covered = {"app_id: must be NULL or a non-empty string",  // event_test.cc
                                   "dedup_key: must be NULL or a non-empty string",
                                   "payload: an enqueued event cannot be changed; enqueue a new one",  // enqueue_test.cc
                                   // the id and the relay's columns of a new row: enqueue_test.cc
                                   "id: the database assigns it; leave it out of an INSERT",
                                   "created_at: must be an integer number of milliseconds since the Unix epoch, "
                                   "between 1973-03-03 and 2100-01-01 (left out, it is the time of the insert)",
                                   "next_attempt_at: must be an integer number of milliseconds since the Unix epoch "
                                   "(left out, the row is due at once)",
                                   "status: a new row is pending; leave the status to the relay",
                                   "attempts/lease_token/event_time/last_http_status/last_error/sent_at: the relay "
                                   "writes these; leave them out of an INSERT"};
  for (const Case& c : cases()) covered.insert(c.message);
  for (const auto& rule : rules) {
    CAPTURE(rule);
    CHECK(covered.count(rule) == 1);
  }
  CHECK(rules.size() >= 20);
}

TEST_CASE("the import's checkers give the trigger's verdict on every rule, a batch or a line at a time") {
  auto check = metrix::TriggerCheck::open();
  REQUIRE(check);
  std::vector<metrix::CheckedLine> all, valid;
  for (const Case& c : cases()) {
    metrix::CheckedLine line;
    line.number = static_cast<std::int64_t>(all.size()) + 1;
    line.row.payload = c.payload;
    all.push_back(line);
    if (c.message.empty()) valid.push_back(line);
  }
  // A batch of good lines goes in as one statement; a batch holding bad lines, line by line.
  REQUIRE(check->judge(valid));
  REQUIRE(check->judge(all));
  for (const metrix::CheckedLine& line : valid) CHECK_FALSE(line.problem.has_value());
  const auto expected = cases();
  for (size_t i = 0; i < expected.size(); ++i) {
    const Case& c = expected[i];
    CAPTURE(c.payload.substr(0, 200));
    CHECK(all[i].problem.value_or("") == c.message);
    auto verdict = check->verdict(all[i].row);
    REQUIRE(verdict);
    CHECK(verdict->value_or("") == c.message);
  }
  // The wrapper's own columns, which the import binds beside the payload.
  metrix::ImportLine no_app{event(""), std::nullopt, std::string()};
  metrix::ImportLine no_key{event(""), std::string(), std::nullopt};
  auto app = check->verdict(no_app);
  auto key = check->verdict(no_key);
  REQUIRE(app);
  REQUIRE(key);
  CHECK(app->value_or("") == "app_id: must be NULL or a non-empty string");
  CHECK(key->value_or("") == "dedup_key: must be NULL or a non-empty string");
}

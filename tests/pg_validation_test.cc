// The rules of a valid event on PostgreSQL (storage/postgres/migrations/0002_validation.sql, its
// function as 0004_validation_speed.sql rewrote it) are SQLite's
// (migrations/0003_validation_trigger.sql): one table of events goes through a
// plain INSERT on both backends, and every verdict and message must agree, with SQLSTATE
// 23514 on PostgreSQL. Then psql, as a bank's engineer uses it, inside transactions.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "storage/database.h"
#include "storage/migrate.h"
#include "storage/postgres/connection.h"
#include "storage/postgres/migrate.h"
#include "tests/support/pg_server.h"
#include "tests/support/process.h"

using namespace metrix::test;

namespace {

struct Case {
  std::optional<std::string> payload;  // nullopt: NULL
  std::string message;                 // empty: valid
  std::string columns = {};            // more columns, e.g. ", status"
  std::string values = {};             // their SQL literals, e.g. ", 'sent'"
};

const std::string kDevice = R"("advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d")";

std::string event(const std::string& extra) {
  return R"({"metrixUserId":"u-1","eventSlug":"taqsq",)" + kDevice + (extra.empty() ? "" : "," + extra) + "}";
}

const char* kJson = "payload: must be valid JSON text";
const char* kObject = "payload: must be a JSON object";
const char* kRepeat = "payload: must not repeat a key in any object";
const char* kEscapedKey = "payload: keys must be plain text, without escape sequences";
const char* kNul = "payload: must not contain the escape \\u0000";
const char* kFinite = "customMetrics: every value must be a finite number";
const char* kIp = "deviceIp: must be a textual IPv4 or IPv6 address";
const char* kTime =
    "eventTime: must be an integer number of milliseconds since the Unix epoch, between 1973-03-03 and 2100-01-01 "
    "(a time in seconds is refused)";
const char* kStatus = "status: a new row is pending; leave the status to the relay";
const char* kRelayColumns =
    "attempts/lease_token/event_time/last_http_status/last_error/sent_at: the relay writes these; leave them out "
    "of an INSERT";
const char* kCreatedAt =
    "created_at: must be an integer number of milliseconds since the Unix epoch, between 1973-03-03 and 2100-01-01 "
    "(left out, it is the time of the insert)";
const char* kUnknown =
    "payload: unknown key; the keys are metrixUserId, metrixSessionId, idfa, advertisingId, oaid, customAttributes, "
    "customMetrics, deviceIp, eventSlug, eventTime";

// 2^1024 - 2^970: the smallest number that rounds to infinity as a double.
const std::string kInfinity =
    "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416"
    "692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959"
    "622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

// An event of exactly `size` bytes: a long attribute value fills it up.
std::string event_of_size(size_t size) {
  std::string base = event(R"("customAttributes":{"a":""})");
  return event(R"("customAttributes":{"a":")" + std::string(size - base.size(), 'x') + "\"}");
}

std::vector<Case> cases() {
  std::vector<Case> c = {
      {event(""), ""},
      {event(R"("metrixSessionId":"s","customAttributes":{"a":"b"},"customMetrics":{"v":130.5,"n":-2},"deviceIp":"10.1.2.3","eventTime":1570274953412)"), ""},
      {event(R"("customAttributes":{"_currency":"USD"},"customMetrics":{"_revenue":53.700})"), ""},
      {" \t\r\n" + event(R"( "eventTime" : 1570274953412 )") + "\n", ""},  // JSON's whitespace, anywhere
      {event(R"("customAttributes":{"نام":"مقدار ✓","content type":"x","a.b":"y"})"), ""},  // non-ASCII
      {event(R"("customAttributes":{"a":"x\"y\\z\/\u00e9\ud800"})"), ""},  // escapes in values; a lone surrogate
      {event(R"("customAttributes":{"a":"[[[[{{{{\"::::"})"), ""},  // brackets and colons inside a string
      {event_of_size(65536), ""},
      {event_of_size(65537), "payload: must be at most 65536 bytes"},
      {std::string(70000, ' ') + event(""), "payload: must be at most 65536 bytes"},
      {std::nullopt, kJson},
      {"", kJson},
      {"not json", kJson},
      {event("").substr(1), kJson},
      {"{a:1}", kJson},
      {"[1,]", kJson},
      {R"({"x":NaN})", kJson},
      {R"({"x":01})", kJson},
      {R"({"x":1.})", kJson},
      {R"({"x":.5})", kJson},
      {R"({"x":+1})", kJson},
      {R"({"x":"\x41"})", kJson},
      {R"({"x":"\U0041"})", kJson},
      {"{\"x\":\"a\tb\"}", kJson},       // a control character inside a string
      {"\f" + event(""), kJson},          // not JSON's whitespace
      {event("") + "\v", kJson},
      {event("") + " {}", kJson},
      // SQLite's parser refuses nesting deeper than 2000; PostgreSQL's does not by itself.
      {std::string(2000, '[') + std::string(2000, ']'), kObject},
      {std::string(2001, '[') + std::string(2001, ']'), kJson},
      {event(R"("customMetrics":)" + std::string(2000, '[') + std::string(2000, ']')), kJson},
      {event(R"("customAttributes":{"a":")" + std::string(3000, '[') + "\"}"), ""},
      {std::string(R"({"metrixUserId":"u)") + '\0' + R"(","eventSlug":"s",)" + kDevice + "}", kJson},
      {event("") + std::string(1, '\0') + "x", kJson},
      {event(R"("customAttributes":{"_currency":"IRR\u0000x"},"customMetrics":{"_revenue":1})"), kNul},
      {event(R"("deviceIp":"1.2.3.4\u0000")"), kNul},
      {event(R"("customAttributes":{"a":"\\u0000"})"), kNul},  // the raw text, as SQLite tests it
      {"[1,2]", kObject},
      {"\"text\"", kObject},
      {"null", kObject},
      {event(R"("eventSlug":"again")"), kRepeat},
      {event(R"("customAttributes":{"a":"1","a":"2"})"), kRepeat},
      {event(R"("customAttributes":{"a":{"x":1,"x":2}})"), kRepeat},  // before the value's own rule
      {event(R"("customMetrics":[{"a":1},{"b":{"c":[{"d":1,"d":1}]}}])"), kRepeat},
      {event(R"("eventName":{"k":"1","k":"1"})"), kRepeat},  // before the unknown key
      {event(R"("event\u0053lug":"again")"), kRepeat},        // the same key, once escaped
      {event(R"("customAttributes":{"a":"x\"","a":"y"})"), kRepeat},
      {event(R"("customAttributes":{"a:b":"x","a":"y:"})"), ""},
      {event(R"("event\u0054ime":"yesterday")"), kEscapedKey},
      {event(R"("customAttributes":{"a\"b":"x"})"), kEscapedKey},
      {event(R"("customAttributes":{"x":"\\","a\/b":"x"})"), kEscapedKey},
      {event(R"("customAttributes":{"k":"\"not a key\":"})"), ""},
      // jsonb refuses a lone surrogate and numbers beyond numeric: the rules read a rewritten copy.
      {event(R"("customAttributes":{"\ud800":"1","\udc00":"2"})"), kEscapedKey},
      {event(R"("customAttributes":{"a":"\ud800"},"customMetrics":{"v":1e-20000},"eventTime":1570274953412)"), ""},
      {event(R"("eventName":"x")"), kUnknown},
      {event(R"("eventTimes":1)"), kUnknown},
      {event(R"("Slug":1)"), kUnknown},
      {R"({"eventSlug":"s",)" + kDevice + "}", "metrixUserId: is required and must be a non-empty string"},
      {R"({"metrixUserId":"","eventSlug":"s",)" + kDevice + "}", "metrixUserId: is required and must be a non-empty string"},
      {R"({"metrixUserId":7,"eventSlug":"s",)" + kDevice + "}", "metrixUserId: is required and must be a non-empty string"},
      {R"({"metrixUserId":"u",)" + kDevice + "}", "eventSlug: is required and must be a non-empty string"},
      {R"({"metrixUserId":"u","eventSlug":null,)" + kDevice + "}", "eventSlug: is required and must be a non-empty string"},
      {event(R"("metrixSessionId":"")"), "metrixSessionId: must be a non-empty string when present"},
      {event(R"("metrixSessionId":1)"), "metrixSessionId: must be a non-empty string when present"},
      {event(R"("metrixSessionId":null)"), "metrixSessionId: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s","idfa":""})", "idfa/advertisingId/oaid: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s","oaid":12})", "idfa/advertisingId/oaid: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s","oaid":null})", "idfa/advertisingId/oaid: must be a non-empty string when present"},
      {R"({"metrixUserId":"u","eventSlug":"s","idfa":"i"})", ""},
      {R"({"metrixUserId":"u","eventSlug":"s"})",
       "idfa/advertisingId/oaid: exactly one is required, none is set (Metrix answers "
       "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL)"},
      {event(R"("idfa":"i")"),
       "idfa/advertisingId/oaid: exactly one is allowed, more than one is set (Metrix answers "
       "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET)"},
      {event(R"("customAttributes":["a"])"), "customAttributes: must be a JSON object"},
      {event(R"("customAttributes":null)"), "customAttributes: must be a JSON object"},
      {event(R"("customAttributes":{"a":1})"), "customAttributes: every value must be a string"},
      {event(R"("customAttributes":{"a":null})"), "customAttributes: every value must be a string"},
      {event(R"("customAttributes":{"a":1e-20000})"), "customAttributes: every value must be a string"},
      {event(R"("customMetrics":"5")"), "customMetrics: must be a JSON object"},
      {event(R"("customMetrics":{"v":"5"})"), kFinite},
      {event(R"("customMetrics":{"v":true})"), kFinite},
      {event(R"("customMetrics":{"v":1e999})"), kFinite},
      {event(R"("customMetrics":{"v":1e400})"), kFinite},
      {event(R"("customMetrics":{"v":-1e309})"), kFinite},
      {event(R"("customMetrics":{"v":1e99999999999})"), kFinite},
      {event(R"("customMetrics":{"v":-9223372036854775808,"w":9223372036854775808})"), ""},
      {event(R"("customMetrics":{"v":1.7976931348623157e308,"w":-1.7976931348623157e308})"), ""},
      {event(R"("customMetrics":{"v":1.797693134862315807e308})"), ""},  // rounds to the largest double
      {event(R"("customMetrics":{"v":1.797693134862315808e308})"), kFinite},
      {event(R"("customMetrics":{"v":)" + kInfinity + "}"), kFinite},
      {event(R"("customMetrics":{"v":)" + kInfinity.substr(0, kInfinity.size() - 3) + "791}"), ""},
      // Beyond numeric's range, yet finite: zero, or a number written with very many digits.
      {event(R"("customMetrics":{"v":1e-20000,"w":-0.0E-99999999999,"x":0e99999})"), ""},
      {event(R"("customMetrics":{"v":0.)" + std::string(20000, '0') + "1}"), ""},
      {event(R"("customMetrics":{"v":1.)" + std::string(20000, '7') + "e308}"), ""},
      {event(R"("customMetrics":{"v":9.)" + std::string(20000, '7') + "e308}"), kFinite},
      {event(R"("customMetrics":{"v":)" + std::string(400, '1') + "e-100}"), ""},
      {event(R"("customMetrics":{"_revenue":5})"), "customMetrics._revenue/customAttributes._currency: a revenue event needs both"},
      {event(R"("customAttributes":{"_currency":"IRR"})"), "customMetrics._revenue/customAttributes._currency: a revenue event needs both"},
      {event(R"("customAttributes":{"_currency":"GBP"},"customMetrics":{"_revenue":5})"), "customAttributes._currency: must be one of IRR, USD, EUR"},
      {event(R"("customAttributes":{"_currency":"irr"},"customMetrics":{"_revenue":5})"), "customAttributes._currency: must be one of IRR, USD, EUR"},
      {event(R"("customAttributes":{"_currency":"\u0049RR"},"customMetrics":{"_revenue":5})"), ""},
      {event(R"("eventTime":1570274953)"), kTime},
      {event(R"("eventTime":"1570274953412")"), kTime},
      {event(R"("eventTime":1570274953412.5)"), kTime},
      {event(R"("eventTime":1570274953412.0)"), kTime},  // SQLite's 'real', though whole
      {event(R"("eventTime":1.570274953412e12)"), kTime},
      {event(R"("eventTime":1e-20000)"), kTime},
      {event(R"("eventTime":-9223372036854775808)"), kTime},
      {event(R"("eventTime":99999999999999999999999)"), kTime},
      {event(R"("eventTime":4102444800001)"), kTime},
      {event(R"("eventTime":null)"), kTime},
      {event(R"("eventTime":4102444800000)"), ""},
      {event(R"("eventTime":100000000000)"), ""},
      // The relay's columns of a new row (SQLite checks them first, and so does PostgreSQL).
      {event(""), kStatus, ", status", ", 'sent'"},
      {event(""), kStatus, ", status", ", NULL"},
      {"not json", kStatus, ", status, app_id", ", 'dead', ''"},
      {event(""), kCreatedAt, ", created_at", ", 5"},
      {event(""), kCreatedAt, ", created_at", ", NULL"},
      {event(""), kCreatedAt, ", created_at", ", 4102444800001"},
      {event(""), "", ", created_at", ", 1570274953412"},
      {event(""),
       "next_attempt_at: must be an integer number of milliseconds since the Unix epoch (left out, the row is due at once)",
       ", next_attempt_at", ", NULL"},
      {event(""), "", ", next_attempt_at", ", 1570274953412"},
      {event(""), kRelayColumns, ", attempts", ", 3"},
      {event(""), kRelayColumns, ", lease_token", ", 1"},
      {event(""), kRelayColumns, ", event_time", ", 1570274953412"},
      {event(""), kRelayColumns, ", last_http_status", ", 200"},
      {event(""), kRelayColumns, ", last_error", ", 'x'"},
      {event(""), kRelayColumns, ", sent_at", ", 1570274953412"},
      {event(""), "app_id: must be NULL or a non-empty string", ", app_id", ", ''"},
      {event(""), "dedup_key: must be NULL or a non-empty string", ", dedup_key", ", ''"},
      {event(""), "", ", app_id, dedup_key", ", 'app-1', 'key-1'"},
  };
  for (const char* ip : {"1.2.3.4", "255.255.255.255", "0.0.0.0", "::", "::1", "2001:db8::8a2e:370:7334",
                         "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::ffff:192.0.2.1", "1:2:3:4:5:6:1.2.3.4",
                         "FE80::ABCD", "249.250.251.252", "199.200.0.9", "::ffff:255.255.255.255", "::1.2.3.4",
                         "1\\u002e2.3.4",
                         "1.2::1.2.3.4"}) {  // SQLite's rule lets this one through; PostgreSQL agrees
    c.push_back({event(std::string(R"("deviceIp":")") + ip + "\""), ""});
  }
  for (const char* ip : {"", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3", "a.b.c.d", "1:2:3:4:5:6:7:8:9",
                         ":1::2", "1::2:", "1:::2", "1::2::3", "12345::1", "abc1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4",
                         "fe80::1%eth0", "::ffff:1.2.3", "localhost", " 1.2.3.4", "1.2.3.256", "1.2.3.260",
                         "1.2.3.300", "1.2.3.1000", "1.2.3.04", "1.2.3.", ".1.2.3", "::ffff:1.2.3.256",
                         "::ffff:01.2.3.4", "1.2::3", "1.2.3.4:", "0x7f.1.1.1", "127.1", "::1/128", "[::1]",
                         "1:2:3:4:5:6:7:8:", "١.٢.٣.٤"}) {
    c.push_back({event(std::string(R"("deviceIp":")") + ip + "\""), kIp});
  }
  c.push_back({event(R"("deviceIp":16909060)"), kIp});
  c.push_back({event(R"("deviceIp":null)"), kIp});
  return c;
}

std::string insert_sql(const Case& c, const char* param) {
  return "INSERT INTO metrix_outbox (payload" + c.columns + ") VALUES (" + param + c.values + ")";
}

// A producer in another language on SQLite: its own connection, a plain INSERT.
std::string sqlite_verdict(sqlite3* db, const Case& c) {
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, insert_sql(c, "?1").c_str(), -1, &stmt, nullptr) == SQLITE_OK);
  if (c.payload) sqlite3_bind_text(stmt, 1, c.payload->data(), static_cast<int>(c.payload->size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt);
  std::string message = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  return message;
}

struct PgVerdict {
  std::string sqlstate;  // empty: inserted
  std::string message;
};

// The same on PostgreSQL, with the payload as a text parameter, as drivers send it.
PgVerdict pg_verdict(PGconn* conn, const Case& c) {
  const char* value = c.payload ? c.payload->c_str() : nullptr;
  PGresult* res = PQexecParams(conn, insert_sql(c, "$1").c_str(), 1, nullptr, &value, nullptr, nullptr, 0);
  PgVerdict v;
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    v.sqlstate = state ? state : "?";
    v.message = primary ? primary : PQerrorMessage(conn);
  }
  PQclear(res);
  return v;
}

std::string psql_script(const PgServer& pg, const std::string& script) {
  auto r = run({"/usr/bin/psql", "-X", "-q", "-A", "-t", "-v", "VERBOSITY=verbose", "-d", pg.uri()}, script);
  return r.out + r.err;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

int count(const std::string& text, const std::string& part) {
  int n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + part.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("SQLite and PostgreSQL give every event the same verdict and message") {
  TempDir dir;
  auto lite = metrix::Database::open(dir.db(), {.create = true});
  REQUIRE(lite);
  REQUIRE(metrix::migrate(*lite));
  PgServer pg;
  auto conn = metrix::pg::Connection::open(pg.uri());
  REQUIRE(conn);
  REQUIRE(metrix::pg::migrate(*conn));

  for (const Case& c : cases()) {
    CAPTURE(c.payload.value_or("NULL").substr(0, 200));
    CAPTURE(c.columns);
    CHECK(sqlite_verdict(lite->handle(), c) == c.message);
    // PostgreSQL refuses a NUL byte in any text before a rule runs, and libpq's text
    // parameters end at one: such a payload cannot be sent at all.
    if (c.payload && c.payload->find('\0') != std::string::npos) continue;
    PgVerdict v = pg_verdict(conn->handle(), c);
    CHECK(v.message == c.message);
    CHECK(v.sqlstate == (c.message.empty() ? "" : "23514"));
  }
  // The connection's own mapping: a refused event is invalid_event with the bare message.
  auto refused = conn->exec("INSERT INTO metrix_outbox (payload) VALUES ($1)", {std::string("[1]")});
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == metrix::Errc::invalid_event);
  CHECK(refused.error().message == kObject);
}

TEST_CASE("every message of the PostgreSQL rules has a case in this test") {
  std::set<std::string> rules;
  for (const auto& m : metrix::embedded_pg_migrations()) {
    std::string_view sql = m.sql;
    for (std::string_view lead : {"msg := '", "msg := E'", "MESSAGE = '"}) {
      for (size_t at = sql.find(lead); at != std::string_view::npos; at = sql.find(lead, at)) {
        at += lead.size();
        size_t end = sql.find('\'', at);
        REQUIRE(end != std::string_view::npos);
        std::string rule(sql.substr(at, end - at));
        if (lead == "msg := E'") {
          for (size_t b = rule.find("\\\\"); b != std::string::npos; b = rule.find("\\\\", b + 1)) rule.erase(b, 1);
        }
        rules.insert(rule);
      }
    }
  }
  std::set<std::string> covered = {"payload: an enqueued event cannot be changed; enqueue a new one"};  // below
  for (const Case& c : cases()) covered.insert(c.message);
  for (const auto& rule : rules) {
    CAPTURE(rule);
    CHECK(covered.count(rule) == 1);
  }
  CHECK(rules.size() >= 25);
}

TEST_CASE("psql inside a transaction: an invalid event is refused with 23514 and rolls back with the business row") {
  PgServer pg;
  auto conn = metrix::pg::Connection::open(pg.uri());
  REQUIRE(conn);
  REQUIRE(metrix::pg::migrate(*conn));
  pg.psql("CREATE TABLE transfers (id int PRIMARY KEY, amount numeric NOT NULL)");
  const std::string good = event(R"("eventTime":1570274953412)");

  std::string out = psql_script(pg,
                                "BEGIN;\n"
                                "INSERT INTO transfers VALUES (1, 100);\n"
                                "INSERT INTO metrix_outbox (payload) VALUES ('{\"metrixUserId\":\"u\"," + kDevice + "}');\n"
                                "ROLLBACK;\n"
                                "BEGIN;\n"
                                "INSERT INTO transfers VALUES (2, 50);\n"
                                "INSERT INTO metrix_outbox (payload) VALUES ('{\"metrixUserId\":');\n"
                                "ROLLBACK;\n");
  CHECK(contains(out, "ERROR:  23514: eventSlug: is required and must be a non-empty string"));
  CHECK(contains(out, "ERROR:  23514: payload: must be valid JSON text"));
  CHECK(pg.psql("SELECT (SELECT count(*) FROM transfers) + (SELECT count(*) FROM metrix_outbox)") == "0\n");

  // A valid event rolled back leaves nothing either; committed, it is there once.
  out = psql_script(pg, "BEGIN;\nINSERT INTO transfers VALUES (3, 7);\n"
                        "INSERT INTO metrix_outbox (payload, dedup_key) VALUES ('" + good + "', 'transfer-3');\n"
                        "ROLLBACK;\n");
  CHECK_FALSE(contains(out, "ERROR"));
  CHECK(pg.psql("SELECT (SELECT count(*) FROM transfers) + (SELECT count(*) FROM metrix_outbox)") == "0\n");
  out = psql_script(pg, "BEGIN;\nINSERT INTO transfers VALUES (3, 7);\n"
                        "INSERT INTO metrix_outbox (payload, dedup_key) VALUES ('" + good + "', 'transfer-3');\n"
                        "COMMIT;\n"
                        "INSERT INTO metrix_outbox (payload, dedup_key) VALUES ('" + good + "', 'transfer-3');\n");
  CHECK(contains(out, "ERROR:  23505: duplicate key value violates unique constraint"));
  CHECK(pg.psql("SELECT count(*) FROM metrix_outbox WHERE dedup_key = 'transfer-3'") == "1\n");

  // What PostgreSQL refuses itself, before the rules: an id (identity column), a wrong type.
  out = psql_script(pg, "INSERT INTO metrix_outbox (id, payload) VALUES (99, '" + good + "');\n"
                        "INSERT INTO metrix_outbox (payload, created_at) VALUES ('" + good + "', 'yesterday');\n");
  CHECK(contains(out, "ERROR:  428C9:"));
  CHECK(contains(out, "ERROR:  22P02:"));

  // The enqueued payload never changes; the relay's own columns may.
  out = psql_script(pg, "UPDATE metrix_outbox SET payload = '{}';\n"
                        "UPDATE metrix_outbox SET created_at = created_at - 1;\n"
                        "UPDATE metrix_outbox SET app_id = 'other';\n"
                        "UPDATE metrix_outbox SET event_slug = 'other';\n");
  CHECK(count(out, "ERROR:  23514: payload: an enqueued event cannot be changed; enqueue a new one") == 4);
  CHECK(pg.psql("SELECT count(*) FROM metrix_outbox WHERE payload = '" + good + "' AND app_id IS NULL") == "1\n");
  pg.psql("UPDATE metrix_outbox SET status = 'sending', attempts = 1, lease_token = 1");
  pg.psql("UPDATE metrix_outbox SET payload = payload");  // the same bytes: no change
}

TEST_CASE("the payload is stored byte for byte and created_at comes from the database's clock") {
  PgServer pg;
  auto conn = metrix::pg::Connection::open(pg.uri());
  REQUIRE(conn);
  REQUIRE(metrix::pg::migrate(*conn));
  // Odd whitespace, key order, number spellings and escapes: jsonb would rewrite all of them.
  const std::string odd = "\n {  \"eventTime\":1570274953412 ,\"eventSlug\" :\"taqsq\",\t\"metrixUserId\":\"u\\u002d1\","
                          "\"customMetrics\":{\"v\":1.50E+2,\"w\":-0.0},\"deviceIp\":\"::FFFF:1.2.3.4\"," + kDevice + "}\r\n";
  auto inserted = conn->exec("INSERT INTO metrix_outbox (payload) VALUES ($1) "
                             "RETURNING id, created_at = metrix_now_ms(), next_attempt_at = created_at",
                             {odd});
  REQUIRE(inserted);
  CHECK(inserted->boolean(0, 1));
  CHECK(inserted->boolean(0, 2));
  auto stored = conn->exec("SELECT payload, octet_length(payload) FROM metrix_outbox WHERE id = $1",
                           {inserted->text(0, 0)});
  REQUIRE(stored);
  CHECK(stored->text(0, 0) == odd);
  CHECK(stored->int64(0, 1) == static_cast<std::int64_t>(odd.size()));
  // event_slug is the payload's, whatever an INSERT says.
  auto slugged = conn->exec("INSERT INTO metrix_outbox (payload, event_slug) VALUES ($1, 'not-the-slug') RETURNING event_slug",
                            {odd});
  REQUIRE(slugged);
  CHECK(slugged->text(0, 0) == "taqsq");
  // A NUL byte would reach the server cut short: refused before it is sent.
  const char with_nul[] = "{\"a\":\"x\0y\"}";
  auto nul = conn->exec("INSERT INTO metrix_outbox (payload) VALUES ($1)", {std::string(with_nul, sizeof with_nul - 1)});
  REQUIRE_FALSE(nul);
  CHECK(nul.error().code == metrix::Errc::invalid_argument);
  CHECK(contains(nul.error().message, "NUL byte"));
}

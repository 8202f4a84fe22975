// Fuzz target: the event validator (storage/event.h), and what an accepted event becomes.
//
// The input is a payload, byte for byte. app_id and dedup_key follow from the input's length
// (so a saved input replays the same way): absent, valid, odd bytes, or empty (refused).
// For every input:
// - a refusal by validate_payload() is one of the trigger's own "field: rule" messages
//   (never an SQL error passed off as a rule);
// - a real migrated outbox agrees: Producer::enqueue() accepts exactly what validate_payload()
//   accepts, and refuses the rest as Errc::invalid_event with the same message;
// - an accepted payload is stored byte for byte, the relay's Outbox claims it, and
//   request_body() is the payload with only "eventTime":N inserted first when it had none;
//   for Unicode text the body is strict JSON (nlohmann::json::accept) with no repeated key,
//   an integer eventTime equal to the claim's, and otherwise the payload's members;
// - the trigger accepts nothing README's rules refuse (fuzz/event_rules.h), and for plain
//   text refuses nothing they accept.
#include <regex>
#include <set>
#include <string>

#include "fuzz/event_rules.h"
#include "fuzz/support.h"
#include "relay/relay.h"
#include "storage/clock.h"
#include "storage/database.h"
#include "storage/event.h"
#include "storage/migrate.h"
#include "storage/outbox.h"
#include "storage/producer.h"

namespace {

using metrix::fuzz::printable;

struct Options {
  std::optional<std::string> app_id;
  std::optional<std::string> dedup_key;
};

Options options_for(size_t size) {
  switch (size % 8) {
    case 4: return {"app-1", "order-1"};
    case 5: return {std::string("a\0\xff", 3), std::string("k\0\xfe", 3)};  // not UTF-8, a NUL: still text
    case 6: return {"", std::nullopt};                                       // refused: app_id
    case 7: return {std::nullopt, ""};                                       // refused: dedup_key
    default: return {};
  }
}

// The messages of every RAISE in the migrations: the only refusals validation may give.
std::set<std::string> trigger_messages() {
  std::set<std::string> messages;
  std::regex raise(R"(RAISE\(ABORT, '([^']*)'\))");
  for (const auto& m : metrix::embedded_migrations()) {
    std::string sql = m.sql;
    for (auto it = std::sregex_iterator(sql.begin(), sql.end(), raise); it != std::sregex_iterator(); ++it) {
      messages.insert((*it)[1].str());
    }
  }
  return messages;
}

// A migrated in-memory outbox, the producer API on it, and the relay's claim. Built in
// place once: the Producer and the Outbox keep pointers to the database.
class RealOutbox {
 public:
  RealOutbox() : db_(open()), producer(db_.handle()), outbox(db_) {
    auto stored = db_.prepare("SELECT payload, typeof(payload), app_id, dedup_key FROM metrix_outbox WHERE id = ?1");
    METRIX_FUZZ_REQUIRE(stored.ok(), "prepare: {}", stored.error().message);
    this->stored = std::move(*stored);
  }
  metrix::Status clear() { return db_.exec("DELETE FROM metrix_outbox"); }

 private:
  static metrix::Database open() {
    auto db = metrix::Database::open_memory();
    METRIX_FUZZ_REQUIRE(db.ok(), "open_memory: {}", db.error().message);
    auto migrated = metrix::migrate(*db);
    METRIX_FUZZ_REQUIRE(migrated.ok(), "migrate: {}", migrated.error().message);
    return std::move(*db);
  }
  metrix::Database db_;  // declared first: destroyed after the statements below

 public:
  metrix::Producer producer;
  metrix::Outbox outbox;
  metrix::Statement stored;
};

std::string with_event_time(std::string_view payload, std::int64_t event_time) {
  size_t brace = payload.find('{');
  return std::string(payload.substr(0, brace + 1)) + "\"eventTime\":" + std::to_string(event_time) + "," +
         std::string(payload.substr(brace + 1));
}

void check_accepted(std::string_view payload, const Options& options, RealOutbox& o) {
  auto id = o.producer.enqueue(payload, {.app_id = options.app_id, .dedup_key = options.dedup_key});
  METRIX_FUZZ_REQUIRE(id.ok(), "validate_payload accepts, Producer::enqueue refuses ({}): {}", id.error().message,
                      printable(payload));

  o.stored.bind(1, *id);
  auto row = o.stored.step();
  METRIX_FUZZ_REQUIRE(row.ok() && *row, "the enqueued row {} is not in the outbox", *id);
  METRIX_FUZZ_REQUIRE(o.stored.text(0) == payload, "stored payload differs from the input: {} != {}",
                      printable(o.stored.text(0)), printable(payload));
  METRIX_FUZZ_REQUIRE(o.stored.text(1) == "text", "payload stored as {}", o.stored.text(1));
  METRIX_FUZZ_REQUIRE(o.stored.optional_text(2) == options.app_id, "stored app_id differs");
  METRIX_FUZZ_REQUIRE(o.stored.optional_text(3) == options.dedup_key, "stored dedup_key differs");
  o.stored.reset();

  auto claims = o.outbox.claim(options.app_id, metrix::now_ms() + 60'000, 60'000, 10);
  METRIX_FUZZ_REQUIRE(claims.ok(), "claim: {}", claims.error().message);
  METRIX_FUZZ_REQUIRE(claims->size() == 1 && claims->front().id == *id, "claim returned {} rows, not row {}",
                      claims->size(), *id);
  const metrix::Claim& claim = claims->front();
  METRIX_FUZZ_REQUIRE(claim.payload == payload, "claimed payload differs from the input");
  std::string body = metrix::request_body(claim);
  std::string expected =
      claim.payload_has_event_time ? std::string(payload) : with_event_time(payload, claim.event_time);
  METRIX_FUZZ_REQUIRE(body == expected, "request_body is not the payload with eventTime inserted: {}", printable(body));

  auto verdict = metrix::fuzz::judge_event(payload);
  if (verdict.judged) {
    METRIX_FUZZ_REQUIRE(!verdict.broken, "the trigger accepts an event README's rules refuse ({}): {}",
                        printable(*verdict.broken), printable(payload));
    METRIX_FUZZ_REQUIRE(nlohmann::json::accept(body), "request_body is not JSON: {}", printable(body));
    bool repeated = false;
    auto sent = metrix::fuzz::parse_strict(body, &repeated);
    METRIX_FUZZ_REQUIRE(sent && !repeated, "the request body repeats a key: {}", printable(body));
    const auto& time = (*sent)["eventTime"];
    METRIX_FUZZ_REQUIRE(time.is_number_integer() && time.get<std::int64_t>() == claim.event_time,
                        "the request body's eventTime is not the claim's {}: {}", claim.event_time, printable(body));
    auto written = metrix::fuzz::parse_strict(payload, &repeated);
    if (!claim.payload_has_event_time) sent->erase("eventTime");
    METRIX_FUZZ_REQUIRE(*sent == *written, "the request body's members differ from the payload's: {}", printable(body));
  }

  auto cleared = o.clear();
  METRIX_FUZZ_REQUIRE(cleared.ok(), "DELETE: {}", cleared.error().message);
}

void check_refused(std::string_view payload, const Options& options, const metrix::Violation& violation, RealOutbox& o,
                   const std::set<std::string>& messages) {
  std::string message = violation.message();
  // For the two rules about keys, validate_payload names the key at fault after the rule's
  // text: `<rule> (here: "key")` or `<rule> (here: "key", in parent)`.
  std::string rule = message;
  if (auto here = message.find(" (here: \""); here != std::string::npos) {
    rule = message.substr(0, here);
    const bool unknown = rule.rfind("payload: unknown key", 0) == 0;
    METRIX_FUZZ_REQUIRE(unknown || rule == "payload: must not repeat a key in any object",
                        "validate_payload names a key for a rule about no key: '{}': {}", message, printable(payload));
    const size_t from = here + 9;
    const std::string key = message.substr(from, message.find('"', from) - from);
    // An unknown key is plain text (an earlier rule refuses escapes), so the payload has it as written.
    METRIX_FUZZ_REQUIRE(!unknown || payload.find('"' + key + '"') != std::string_view::npos,
                        "validate_payload names an unknown key the payload does not have: '{}': {}", message,
                        printable(payload));
  }
  METRIX_FUZZ_REQUIRE(messages.count(rule) == 1, "validate_payload refuses with a message no rule has: '{}': {}",
                      message, printable(payload));
  auto id = o.producer.enqueue(payload, {.app_id = options.app_id, .dedup_key = options.dedup_key});
  METRIX_FUZZ_REQUIRE(!id.ok(), "validate_payload refuses ({}), Producer::enqueue accepts: {}", message,
                      printable(payload));
  METRIX_FUZZ_REQUIRE(id.error().code == metrix::Errc::invalid_event && id.error().message == message,
                      "Producer::enqueue refuses with '{}', validate_payload with '{}'", id.error().message, message);
  if (violation.field == "app_id" || violation.field == "dedup_key") return;
  if (!metrix::fuzz::is_plain(payload)) return;
  auto verdict = metrix::fuzz::judge_event(payload);
  METRIX_FUZZ_REQUIRE(!verdict.judged || verdict.broken, "the trigger refuses ({}) an event README's rules accept: {}",
                      message, printable(payload));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, size_t size) {
  static const std::set<std::string> messages = trigger_messages();
  static RealOutbox o;
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  Options options = options_for(size);

  // The Producer's database is emptied after every input and the validator's is private: a
  // validator that kept state from an earlier input would disagree with the Producer here.
  auto verdict = metrix::validate_payload(payload, options.app_id, options.dedup_key);
  METRIX_FUZZ_REQUIRE(verdict.ok(), "the rules could not be checked: {}", verdict.error().message);
  const std::optional<metrix::Violation>& violation = *verdict;
  if (violation) check_refused(payload, options, *violation, o, messages);
  else check_accepted(payload, options, o);
  return 0;
}

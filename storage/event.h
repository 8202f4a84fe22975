// The S2S event: a builder for producers, and validation.
//
// The rules of a valid event live in one place only: the validation trigger, as
// migrations/0003_validation_trigger.sql last made it. validate_payload() runs that very
// trigger (on a private in-memory outbox), so the C++ API and a producer's plain SQL can
// never disagree.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "storage/result.h"

namespace metrix {

// A broken rule: the field and the rule, as the database words them.
struct Violation {
  std::string field;  // e.g. "eventSlug", "customAttributes._currency", "payload"
  std::string rule;   // e.g. "is required and must be a non-empty string"
  std::string message() const { return field + ": " + rule; }
};

// Checks a payload (and optional app id / dedup key) against every rule: nullopt when the
// event is valid, else the first rule it breaks. An error (Errc::io) only when the check
// itself could not run (its in-memory database could not be made: out of memory), which is
// never a verdict on the event. Thread-safe (one private in-memory database per thread).
Result<std::optional<Violation>> validate_payload(std::string_view payload,
                                                  const std::optional<std::string>& app_id = std::nullopt,
                                                  const std::optional<std::string>& dedup_key = std::nullopt);

enum class Currency { IRR, USD, EUR };

// Builds an event payload. Keys appear in the order they were set.
//
//   auto event = Event::custom("user-1", "taqsq").advertising_id("38400000-8cf0-11bd-b23e-10b96e40000d")
//                    .attribute("content_type", "wallets");
//   auto revenue = Event::revenue("user-1", "purchase", 53.7, Currency::IRR).idfa("...");
class Event {
 public:
  Event(const Event& other);
  Event(Event&& other) noexcept;
  Event& operator=(Event other) noexcept;
  ~Event();

  static Event custom(std::string metrix_user_id, std::string event_slug);
  // A revenue event: customMetrics._revenue and customAttributes._currency.
  static Event revenue(std::string metrix_user_id, std::string event_slug, double amount, Currency currency);

  Event& session_id(std::string id);
  Event& idfa(std::string id);
  Event& advertising_id(std::string id);
  Event& oaid(std::string id);
  Event& attribute(const std::string& key, std::string value);
  Event& metric(const std::string& key, double value);
  Event& device_ip(std::string ip);
  // Milliseconds since the Unix epoch. Leave unset to send the time the row was enqueued.
  Event& event_time_ms(std::int64_t ms);

  // The JSON text stored in metrix_outbox.payload and sent unchanged.
  std::string payload() const;
  Result<std::optional<Violation>> validate() const { return validate_payload(payload()); }

 private:
  Event();
  struct Json;  // the JSON object being built; its library stays out of the producers' headers
  std::unique_ptr<Json> json_;
};

const char* currency_name(Currency currency);

}  // namespace metrix

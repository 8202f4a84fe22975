// The event builder and the rules, through the C++ API.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "storage/event.h"
#include "storage/rule_message.h"

using metrix::Currency;
using metrix::Event;
using metrix::validate_payload;

TEST_CASE("a custom event built with the builder is valid and keeps its keys in order") {
  auto event = Event::custom("user-1", "taqsq").advertising_id("38400000-8cf0-11bd-b23e-10b96e40000d")
                   .session_id("s-1").attribute("content_type", "wallets").metric("value", 130.5)
                   .device_ip("192.0.2.7").event_time_ms(1570274953412);
  CHECK(event.payload() ==
        R"({"metrixUserId":"user-1","eventSlug":"taqsq","advertisingId":"38400000-8cf0-11bd-b23e-10b96e40000d",)"
        R"("metrixSessionId":"s-1","customAttributes":{"content_type":"wallets"},"customMetrics":{"value":130.5},)"
        R"("deviceIp":"192.0.2.7","eventTime":1570274953412})");
  CHECK_FALSE(event.validate().value().has_value());
}

TEST_CASE("a revenue event carries _revenue and _currency together") {
  auto event = Event::revenue("user-1", "purchase", 53.7, Currency::IRR).idfa("AEBE52E7-03EE-455A-B3C4-E57283966239");
  auto json = nlohmann::json::parse(event.payload());
  CHECK(json["customAttributes"]["_currency"] == "IRR");
  CHECK(json["customMetrics"]["_revenue"] == 53.7);
  CHECK_FALSE(event.validate().value().has_value());
}

TEST_CASE("the builder's invalid events are refused with the field and the rule") {
  auto none = Event::custom("user-1", "taqsq").validate().value();
  REQUIRE(none.has_value());
  CHECK(none->field == "idfa/advertisingId/oaid");
  CHECK(none->rule.find("none is set") != std::string::npos);

  auto two = Event::custom("user-1", "taqsq").idfa("a").oaid("b").validate().value();
  REQUIRE(two.has_value());
  CHECK(two->rule.find("more than one is set") != std::string::npos);

  auto seconds = Event::custom("user-1", "taqsq").oaid("a").event_time_ms(1570274953).validate().value();
  REQUIRE(seconds.has_value());
  CHECK(seconds->field == "eventTime");

  auto empty_slug = Event::custom("user-1", "").oaid("a").validate().value();
  REQUIRE(empty_slug.has_value());
  CHECK(empty_slug->message() == "eventSlug: is required and must be a non-empty string");

  auto nan = Event::custom("user-1", "s").oaid("a").metric("value", std::nan("")).validate().value();
  REQUIRE(nan.has_value());
  CHECK(nan->message() == "customMetrics: every value must be a finite number");
}

TEST_CASE("an app id or dedup key that is empty is refused") {
  std::string ok = R"({"metrixUserId":"u","eventSlug":"s","oaid":"o"})";
  CHECK_FALSE(validate_payload(ok, "app", "key").value().has_value());
  CHECK(validate_payload(ok, std::string(""), std::nullopt).value()->message() == "app_id: must be NULL or a non-empty string");
  CHECK(validate_payload(ok, std::nullopt, std::string("")).value()->message() ==
        "dedup_key: must be NULL or a non-empty string");
}

TEST_CASE("a trigger message splits into field and rule") {
  auto v = metrix::parse_violation("customAttributes._currency: must be one of IRR, USD, EUR");
  CHECK(v.field == "customAttributes._currency");
  CHECK(v.rule == "must be one of IRR, USD, EUR");
}

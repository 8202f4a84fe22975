// RowStatus and its text, the one form of a status every storage API takes.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "storage/row_status.h"

using namespace metrix;

TEST_CASE("the six statuses of the outbox contract read back from their names, in the order rows move through them") {
  std::vector<std::string> names;
  for (RowStatus s : all_statuses()) {
    names.push_back(row_status_name(s));
    auto back = parse_row_status(row_status_name(s));
    REQUIRE(back);
    CHECK(*back == s);
  }
  CHECK(names == std::vector<std::string>{"pending", "sending", "sent", "failed", "dead", "held"});
}

TEST_CASE("a name that is not a status is refused with the field, the rule and the statuses there are") {
  for (const char* text : {"Sent", "sent ", "", "lost"}) {
    CAPTURE(text);
    auto s = parse_row_status(text);
    REQUIRE_FALSE(s);
    CHECK(s.error().code == Errc::invalid_argument);
    CHECK(s.error().message == std::string("status ") + text +
                                   ": not a status; the statuses are pending, sending, sent, failed, dead, held");
  }
}

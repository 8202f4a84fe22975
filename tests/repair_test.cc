// requeue and purge refuse what they must never touch, in storage's own words: the library
// producers link names the field and the rule, never a flag of the command line.
#include <doctest/doctest.h>

#include "storage/repair.h"
#include "tests/operator_fixture.h"

using namespace metrix;
using metrix::test::TempDir;

TEST_CASE("requeue refuses pending, sending and (unless asked) sent rows, naming the status and the rule") {
  for (RowStatus s : {RowStatus::pending, RowStatus::sending}) {
    CAPTURE(row_status_name(s));
    CHECK_FALSE(requeue_may_change(s, true));
    RowFilter filter;
    filter.statuses = {s};
    auto refused = requeue_filter(filter, true);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == Errc::invalid_argument);
    CHECK(refused.error().message.starts_with(std::string("status ") + row_status_name(s) +
                                              ": requeue never touches pending or sending rows"));
    CHECK(refused.error().message.find("--") == std::string::npos);
  }
  RowFilter sent;
  sent.statuses = {RowStatus::sent};
  auto refused = requeue_filter(sent, false);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message.starts_with("status sent: sent rows are requeued only when include_sent is set"));
  CHECK(refused.error().message.find("--") == std::string::npos);
  CHECK(requeue_filter(sent, true));

  auto defaults = requeue_filter(RowFilter{}, false);
  REQUIRE(defaults);
  CHECK(defaults->statuses == std::vector<RowStatus>{RowStatus::failed, RowStatus::dead, RowStatus::held});
}

TEST_CASE("purge refuses pending and sending rows, naming the status and the rule, and deletes nothing") {
  TempDir dir;
  test::make_outbox(dir.db(), 4);
  test::exec(dir.db(), "UPDATE metrix_outbox SET status = 'sending' WHERE id = 2");
  auto db = Database::open(dir.db());
  REQUIRE(db);
  for (RowStatus s : {RowStatus::pending, RowStatus::sending}) {
    CAPTURE(row_status_name(s));
    CHECK_FALSE(purge_may_delete(s));
    PurgeOptions options;
    options.statuses = {RowStatus::sent, s};
    options.cutoff = INT64_MAX;
    for (const auto& refused : {purge_preview(*db, options), purge(*db, options)}) {
      REQUIRE_FALSE(refused);
      CHECK(refused.error().code == Errc::invalid_argument);
      CHECK(refused.error().message.starts_with(std::string("status ") + row_status_name(s) +
                                                ": purge never deletes an undelivered event"));
      CHECK(refused.error().message.find("--") == std::string::npos);
    }
  }
  CHECK(test::scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == 4);
}

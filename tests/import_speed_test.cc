// How fast metrix-relay import is, through the built binary (label "slow"). The default size
// keeps it short; the measurement the README quotes is
//   METRIX_IMPORT_LINES=1000000 METRIX_IMPORT_MAX_SECONDS=60 ctest --test-dir build -L slow -V
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>

#include "tests/operator_fixture.h"

using namespace metrix::test;

namespace {

long env_number(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}

}  // namespace

TEST_CASE("a large import, and the same import again, finish and count every line once") {
  TempDir dir;
  make_outbox(dir.db(), 0);
  const long n = env_number("METRIX_IMPORT_LINES", 20000);
  const long max_seconds = env_number("METRIX_IMPORT_MAX_SECONDS", 0);
  {
    // Revenue events of two apps, half of them wrapped with a key, like a replayed order log.
    std::ofstream out(dir.file("big.ndjson"));
    for (long i = 1; i <= n; ++i) {
      std::string payload = "{\"metrixUserId\":\"user-" + std::to_string(i) +
                            "\",\"eventSlug\":\"purchase\",\"advertisingId\":\"38400000-8cf0-11bd-b23e-10b96e40000d\","
                            "\"customAttributes\":{\"_currency\":\"IRR\",\"order\":\"o-" +
                            std::to_string(i) + "\"},\"customMetrics\":{\"_revenue\":" + std::to_string(i * 10) + "}}";
      out << "{\"payload\":" << payload << ",\"dedup_key\":\"order-" << i << "\"" << (i % 2 ? ",\"app_id\":\"app1\"" : "")
          << "}\n";
    }
  }
  auto time = [&] {
    auto started = std::chrono::steady_clock::now();
    auto r = run({relay_binary(), "import", "--db", dir.db(), dir.file("big.ndjson").string()}, {}, {},
                 std::chrono::seconds(900));
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    return std::pair{seconds, r.out};
  };
  auto [first, first_out] = time();
  MESSAGE(n << " lines imported in " << first << " s (" << static_cast<long>(static_cast<double>(n) / first)
            << " lines/s): " << first_out);
  auto [second, second_out] = time();
  MESSAGE("the same file again in " << second << " s: " << second_out);
  CHECK(scalar(dir.db(), "SELECT count(*) FROM metrix_outbox") == n);
  CHECK(scalar(dir.db(), "SELECT count(DISTINCT dedup_key) FROM metrix_outbox") == n);
  CHECK(second_out.find("imported 0 rows, skipped " + std::to_string(n)) == 0);
  if (max_seconds > 0) CHECK(first < static_cast<double>(max_seconds));
}

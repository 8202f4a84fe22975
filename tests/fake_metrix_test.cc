// fake-metrix, tested as users and the other tests use it: the real binary on
// loopback, spoken to with libcurl.

#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/fake_metrix.h"
#include "tests/support/process.h"
#include "storage/clock.h"

using metrix::test::FakeMetrix;
using metrix::test::fake_metrix_binary;
using metrix::test::HttpAnswer;
using metrix::test::HttpClient;
using metrix::test::run;
using metrix::test::RunResult;
using metrix::test::TempDir;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// Long and distinctive, so that finding it anywhere is meaningful.
const std::string kKey1 = "dk-1-5f0c2a9e7b4d4e0f9a1c3b5d7e9f1a2b";
const std::string kKey2 = "dk-2-0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b";
const std::map<std::string, std::string> kKeysEnv = {{"FAKE_METRIX_KEYS", "app1=" + kKey1 + ",app2=" + kKey2}};

const std::string kValidEvent = R"({"metrixUserId":"u1","advertisingId":"ad-1","eventSlug":"buy"})";

HttpAnswer send(HttpClient& client, const FakeMetrix& server, const std::string& app, const std::string& key,
                const std::string& body) {
  return client.post(server.url() + "/inappevent/" + app, body,
                     {"Content-Type: application/json", "Authorization: " + key});
}

HttpAnswer send(const FakeMetrix& server, const std::string& app, const std::string& key, const std::string& body) {
  HttpClient client;
  return send(client, server, app, key, body);
}

// The error an answer's body names, after checking the body has the
// documented shape {"error","status","message"} and agrees with the status.
std::string error_of(const HttpAnswer& answer) {
  json body = json::parse(answer.body, nullptr, false);
  REQUIRE_MESSAGE(body.is_object(), "body: ", answer.body);
  CHECK(body.size() == 3);
  CHECK(body.value("status", 0) == answer.status);
  CHECK(body.value("message", std::string()).size() > 0);
  CHECK(answer.header("Content-Type") == "application/json");
  return body.value("error", std::string("<none>"));
}

uint64_t connections(const FakeMetrix& server) { return server.stats()["connections"].get<uint64_t>(); }

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST_CASE("a valid event with its app's key is answered 200 and recorded with its body byte for byte") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--slug", "buy"}, kKeysEnv);
  // Odd spacing, key order and non-ASCII text: a re-serialised body would differ.
  const std::string body =
      "{ \"eventSlug\" : \"buy\",\"metrixUserId\":\"u-\u062A\u0647\u0631\u0627\u0646\",  \"idfa\":\"i-1\","
      "\"customMetrics\":{\"_revenue\":53.700},\"customAttributes\":{\"_currency\":\"IRR\"},\"eventTime\":1570274953412 }\n";
  int64_t before = now_ms();
  HttpAnswer answer = send(server, "app1", kKey1, body);
  int64_t after = now_ms();

  REQUIRE(answer.transport_ok());
  CHECK(answer.status == 200);
  CHECK(json::parse(answer.body) == json{{"status", 200}, {"message", "event accepted"}});
  std::vector<json> records = server.records();
  REQUIRE(records.size() == 1);
  CHECK(records[0]["app_id"] == "app1");
  CHECK(records[0]["body"].get<std::string>() == body);
  CHECK(records[0]["dropped"] == false);
  CHECK(records[0]["received_at"].get<int64_t>() >= before);
  CHECK(records[0]["received_at"].get<int64_t>() <= after);
  CHECK(records[0].size() == 4);
}

TEST_CASE("each row of the reference's error table is answered with its status and error name, and nothing is recorded") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--slugs", "buy,view", "--s2s-disabled", "app2"}, kKeysEnv);
  struct Row {
    const char* what;
    std::string app, key, body;
    long status;
    std::string error;
  };
  const std::vector<Row> rows = {
      {"no device id", "app1", kKey1, R"({"metrixUserId":"u1","eventSlug":"buy"})", 400,
       "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL"},
      {"device ids null or empty", "app1", kKey1, R"({"metrixUserId":"u1","idfa":null,"oaid":"","eventSlug":"buy"})",
       400, "IDFA_AND_ADVERTISING_ID_SHOULD_NOT_BE_NULL"},
      {"idfa and advertisingId", "app1", kKey1,
       R"({"metrixUserId":"u1","idfa":"i","advertisingId":"a","eventSlug":"buy"})", 400,
       "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET"},
      {"advertisingId and oaid", "app1", kKey1,
       R"({"metrixUserId":"u1","advertisingId":"a","oaid":"o","eventSlug":"buy"})", 400,
       "ONLY_ONE_OF_IDFA_AND_ADVERTISING_ID_SHOULD_BE_SET"},
      {"S2S disabled for the app", "app2", kKey2, kValidEvent, 403, "S2S_FEATURE_NOT_AVAILABLE"},
      {"wrong dev key", "app1", kKey2, kValidEvent, 403, "INVALID_PARAMETERS"},
      {"unknown app", "app9", kKey1, kValidEvent, 403, "INVALID_PARAMETERS"},
      {"unknown slug", "app1", kKey1, R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"sell"})", 404,
       "EVENT_TYPE_DOES_NOT_EXIST"},
  };
  for (const Row& row : rows) {
    CAPTURE(row.what);
    HttpAnswer answer = send(server, row.app, row.key, row.body);
    REQUIRE(answer.transport_ok());
    CHECK(answer.status == row.status);
    CHECK(error_of(answer) == row.error);
  }
  SUBCASE("a request without Authorization is INVALID_PARAMETERS too") {
    HttpClient client;
    HttpAnswer answer = client.post(server.url() + "/inappevent/app1", kValidEvent);
    CHECK(answer.status == 403);
    CHECK(error_of(answer) == "INVALID_PARAMETERS");
  }
  CHECK(server.records().empty());
  CHECK(server.stats()["accepted"] == 0);
}

TEST_CASE("malformed JSON and wrongly typed fields are answered 400 BAD_REQUEST") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {}, kKeysEnv);
  const std::vector<std::string> bodies = {
      "",
      "{",
      "[]",
      R"("a string")",
      R"({"advertisingId":"a","eventSlug":"buy"})",
      R"({"metrixUserId":7,"advertisingId":"a","eventSlug":"buy"})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":""})",
      R"({"metrixUserId":"u1","advertisingId":7,"eventSlug":"buy"})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"buy","customAttributes":{"k":1}})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"buy","customMetrics":{"k":"1"}})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"buy","customMetrics":[1]})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"buy","eventTime":"yesterday"})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"buy","eventTime":1.5})",
      R"({"metrixUserId":"u1","advertisingId":"a","eventSlug":"buy","deviceIp":10})",
  };
  for (const std::string& body : bodies) {
    CAPTURE(body);
    HttpAnswer answer = send(server, "app1", kKey1, body);
    CHECK(answer.status == 400);
    CHECK(error_of(answer) == "BAD_REQUEST");
  }
  CHECK(server.records().empty());
}

TEST_CASE("without --slug every slug is known, and eventTime may be a number or a string of digits") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {}, kKeysEnv);
  CHECK(send(server, "app1", kKey1, R"({"metrixUserId":"u","oaid":"o","eventSlug":"anything","eventTime":"1570274953412"})")
            .status == 200);
  CHECK(send(server, "app2", kKey2, R"({"metrixUserId":"u","idfa":"i","eventSlug":"else","eventTime":1570274953412})")
            .status == 200);
  CHECK(server.records().size() == 2);
}

TEST_CASE("--slug and --slugs add up to the known slugs") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--slug", "a", "--slugs", "b,c", "--slug", "d"}, kKeysEnv);
  for (std::string slug : {"a", "b", "c", "d", "e"}) {
    CAPTURE(slug);
    HttpAnswer answer = send(server, "app1", kKey1, R"({"metrixUserId":"u","oaid":"o","eventSlug":")" + slug + "\"}");
    CHECK(answer.status == (slug == "e" ? 404 : 200));
  }
}

TEST_CASE("--any-key accepts any non-empty Authorization for any app, and refuses an empty one") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--any-key"});
  CHECK(send(server, "whatever-app", "whatever-key", kValidEvent).status == 200);
  HttpAnswer empty = send(server, "whatever-app", "", kValidEvent);
  CHECK(empty.status == 403);
  CHECK(error_of(empty) == "INVALID_PARAMETERS");
}

TEST_CASE("keys come from a keys file, and --app limits the apps that exist") {
  TempDir dir;
  std::ofstream(dir.file("keys")) << "# dev keys\n\napp1=" << kKey1 << "\n  app2 = " << kKey2 << "  \n";
  auto server = FakeMetrix::start(dir, {"--keys-file", dir.file("keys").string(), "--app", "app1"});
  CHECK(send(server, "app1", kKey1, kValidEvent).status == 200);
  CHECK(send(server, "app2", kKey2, kValidEvent).status == 403);
}

TEST_CASE("the script answers the first requests in order, then normal service resumes") {
  TempDir dir;
  auto server = FakeMetrix::start(
      dir, {"--script", "500,503,429,404:EVENT_TYPE_DOES_NOT_EXIST,drop,201,403:S2S_FEATURE_NOT_AVAILABLE",
            "--retry-after", "3"},
      kKeysEnv);
  HttpClient client;
  std::vector<HttpAnswer> answers;
  for (int i = 0; i < 9; ++i) answers.push_back(send(client, server, "app1", kKey1, kValidEvent));

  CHECK(answers[0].status == 500);
  CHECK(error_of(answers[0]) == "INTERNAL_SERVER_ERROR");
  CHECK(answers[1].status == 503);
  CHECK(error_of(answers[1]) == "SERVICE_UNAVAILABLE");
  CHECK(answers[2].status == 429);
  CHECK(error_of(answers[2]) == "TOO_MANY_REQUESTS");
  CHECK(answers[2].header("Retry-After") == "3");
  CHECK(answers[3].status == 404);
  CHECK(error_of(answers[3]) == "EVENT_TYPE_DOES_NOT_EXIST");
  CHECK(answers[4].curl_code == CURLE_PARTIAL_FILE);
  CHECK(answers[5].status == 201);
  CHECK(answers[6].status == 403);
  CHECK(error_of(answers[6]) == "S2S_FEATURE_NOT_AVAILABLE");
  CHECK(answers[7].status == 200);
  CHECK(answers[8].status == 200);

  // The drop, the scripted 201 and the two normal answers accepted the event.
  std::vector<json> records = server.records();
  REQUIRE(records.size() == 4);
  CHECK(records[0]["dropped"] == true);
  CHECK(records[1]["dropped"] == false);
  CHECK(records[3]["body"] == kValidEvent);
}

TEST_CASE("a scripted 2xx still validates: an invalid event gets its 400 and is not recorded") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--script", "200"}, kKeysEnv);
  HttpAnswer answer = send(server, "app1", kKey1, R"({"metrixUserId":"u1","eventSlug":"buy"})");
  CHECK(answer.status == 400);
  CHECK(server.records().empty());
}

TEST_CASE("a dropped answer is a transport error for libcurl, yet the event is recorded as accepted") {
  TempDir dir;
  SUBCASE("partial (the default): a 200 status line arrives, then the transfer fails") {
    auto server = FakeMetrix::start(dir, {"--drop-rate", "1"}, kKeysEnv);
    HttpClient client;
    for (int i = 0; i < 3; ++i) {  // on a fresh connection, then on reused ones
      HttpAnswer answer = send(client, server, "app1", kKey1, kValidEvent);
      CHECK(answer.curl_code == CURLE_PARTIAL_FILE);
      CHECK(answer.status == 200);  // the trap: only the transfer result tells the truth
    }
    std::vector<json> records = server.records();
    REQUIRE(records.size() == 3);
    CHECK(records[0]["dropped"] == true);
    CHECK(records[0]["body"] == kValidEvent);
    json stats = server.stats();
    CHECK(stats["requests"] == 3);
    CHECK(stats["dropped"] == 3);
    CHECK(stats["accepted"] == 3);
    CHECK(stats["by_status"] == json::object());
  }
  SUBCASE("close, on a fresh connection: nothing at all arrives") {
    auto server = FakeMetrix::start(dir, {"--drop-rate", "1", "--drop-style", "close"}, kKeysEnv);
    HttpAnswer answer = send(server, "app1", kKey1, kValidEvent);
    CHECK(answer.curl_code == CURLE_GOT_NOTHING);
    CHECK(answer.status == 0);
    REQUIRE(server.records().size() == 1);
    CHECK(server.records()[0]["dropped"] == true);
  }
  SUBCASE("a rejected event's answer can be dropped too, and it is not recorded") {
    auto server = FakeMetrix::start(dir, {"--script", "drop"}, kKeysEnv);
    HttpAnswer answer = send(server, "app1", kKey2, kValidEvent);
    CHECK(answer.curl_code == CURLE_PARTIAL_FILE);
    CHECK(answer.status == 403);
    CHECK(server.records().empty());
    CHECK(server.stats()["dropped"] == 1);
  }
}

// Not a property of fake-metrix but of libcurl, pinned here because the relay
// depends on it: an answer lost before its first byte on a reused connection
// is indistinguishable from a stale keep-alive connection, so libcurl resends.
TEST_CASE("a close drop on a reused keep-alive connection makes libcurl resend: the event arrives twice") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--script", "200,drop-close"}, kKeysEnv);
  HttpClient client;
  REQUIRE(send(client, server, "app1", kKey1, kValidEvent).status == 200);
  HttpAnswer resent = send(client, server, "app1", kKey1, R"({"metrixUserId":"u2","oaid":"o","eventSlug":"buy"})");
  CHECK(resent.transport_ok());
  CHECK(resent.status == 200);
  std::vector<json> records = server.records();
  REQUIRE(records.size() == 3);
  CHECK(records[1]["dropped"] == true);
  CHECK(records[2]["dropped"] == false);
  CHECK(records[1]["body"] == records[2]["body"]);
  CHECK(server.stats()["requests"] == 3);
}

TEST_CASE("a 429 carries the configured Retry-After and does not record the event") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--rate-429", "1", "--retry-after", "7"}, kKeysEnv);
  HttpAnswer answer = send(server, "app1", kKey1, kValidEvent);
  CHECK(answer.status == 429);
  CHECK(answer.header("Retry-After") == "7");
  CHECK(error_of(answer) == "TOO_MANY_REQUESTS");
  CHECK(server.records().empty());
}

TEST_CASE("injected errors are 500, 502 or 503, and the same seed injects the same ones") {
  auto statuses = [](std::vector<std::string> args) {
    TempDir dir;
    auto server = FakeMetrix::start(dir, args, kKeysEnv);
    HttpClient client;
    std::vector<long> seen;
    for (int i = 0; i < 40; ++i) seen.push_back(send(client, server, "app1", kKey1, kValidEvent).status);
    return seen;
  };
  std::vector<long> all_errors = statuses({"--error-rate", "1", "--seed", "1"});
  CHECK(std::set<long>(all_errors.begin(), all_errors.end()) == std::set<long>{500, 502, 503});

  std::vector<long> first = statuses({"--error-rate", "0.5", "--seed", "42"});
  std::vector<long> second = statuses({"--error-rate", "0.5", "--seed", "42"});
  CHECK(first == second);
  CHECK(std::count(first.begin(), first.end(), 200) > 0);
  CHECK(std::count(first.begin(), first.end(), 200) < 40);
}

TEST_CASE("the control endpoint changes faults at run time, and refuses a bad value without applying any") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {}, kKeysEnv);
  HttpClient client;
  CHECK(send(client, server, "app1", kKey1, kValidEvent).status == 200);

  server.control("error-rate=1&seed=3");
  long status = send(client, server, "app1", kKey1, kValidEvent).status;
  CHECK((status == 500 || status == 502 || status == 503));

  HttpAnswer refused = client.post(server.url() + "/__control?error-rate=0&latency-ms=soon", "");
  CHECK(refused.status == 400);
  CHECK(refused.body.find("latency-ms") != std::string::npos);
  CHECK_THROWS(server.control("no-such-setting=1"));
  status = send(client, server, "app1", kKey1, kValidEvent).status;
  CHECK((status == 500 || status == 502 || status == 503));  // error-rate=0 was not applied either

  server.control("error-rate=0&latency-ms=300&s2s-disabled=app2&script=404");
  auto start = std::chrono::steady_clock::now();
  HttpAnswer scripted = send(client, server, "app1", kKey1, kValidEvent);
  CHECK(std::chrono::steady_clock::now() - start >= 300ms);
  CHECK(error_of(scripted) == "EVENT_TYPE_DOES_NOT_EXIST");
  CHECK(error_of(send(client, server, "app2", kKey2, kValidEvent)) == "S2S_FEATURE_NOT_AVAILABLE");

  // latency-slug: only events of that slug wait (here a minute: longer than the client's 30 s
  // timeout, so an answer at all says this event of another slug did not wait).
  server.control("latency-ms=60000&latency-slug=a-slow-slug");
  CHECK(send(client, server, "app1", kKey1, kValidEvent).status == 200);
  CHECK(json::parse(client.get(server.url() + "/__control").body)["latency-slug"] == "a-slow-slug");
  server.control("latency-slug=");

  server.control("latency_ms=0&s2s_disabled=");  // `_` for `-` is accepted
  CHECK(send(client, server, "app2", kKey2, kValidEvent).status == 200);
  json settings = json::parse(client.get(server.url() + "/__control").body);
  CHECK(settings["s2s-disabled"] == json::array());
  CHECK(settings["seed"] == 3);
}

TEST_CASE("stats count TCP connections: a keep-alive client uses one for many requests") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {}, kKeysEnv);
  uint64_t before = connections(server);  // counts the /__stats call itself

  HttpClient keep_alive;
  for (int i = 0; i < 20; ++i) REQUIRE(send(keep_alive, server, "app1", kKey1, kValidEvent).status == 200);
  CHECK(connections(server) == before + 2);  // the client's one, and this /__stats call

  before = connections(server);
  for (int i = 0; i < 5; ++i) REQUIRE(send(server, "app1", kKey1, kValidEvent).status == 200);  // new client each
  CHECK(connections(server) == before + 6);

  json stats = server.stats();
  CHECK(stats["requests"] == 25);
  CHECK(stats["accepted"] == 25);
  CHECK(stats["by_status"] == json{{"200", 25}});
}

TEST_CASE("300 concurrent keep-alive connections are served at once") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--latency-ms", "1500"}, kKeysEnv);
  constexpr int kClients = 300;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      HttpClient client;
      if (send(client, server, "app1", kKey1, kValidEvent).status == 200) ++ok;
    });
  }
  for (std::thread& client : clients) client.join();
  CHECK(ok == kClients);
  json stats = server.stats();
  CHECK(stats["max_concurrent_requests"] == kClients);
  CHECK(stats["connections"] == kClients + 1);
  CHECK(server.wait_for_accepted(kClients, 1s));
}

TEST_CASE("https: every connection is one TLS handshake, and keep-alive reuses it") {
  TempDir dir;
  RunResult made = run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        dir.file("key.pem").string(), "-out", dir.file("cert.pem").string()});
  REQUIRE_MESSAGE(made.exit_code == 0, made.err);
  auto server = FakeMetrix::start(
      dir, {"--tls-cert", dir.file("cert.pem").string(), "--tls-key", dir.file("key.pem").string()}, kKeysEnv);
  REQUIRE(server.url().rfind("https://127.0.0.1:", 0) == 0);

  uint64_t before = connections(server);
  HttpClient client;
  client.set_ca_file(dir.file("cert.pem").string());
  for (int i = 0; i < 10; ++i) REQUIRE(send(client, server, "app1", kKey1, kValidEvent).status == 200);
  CHECK(connections(server) == before + 2);

  HttpClient untrusting;  // the system CAs do not know this certificate
  HttpAnswer refused = send(untrusting, server, "app1", kKey1, kValidEvent);
  CHECK(refused.curl_code == CURLE_PEER_FAILED_VERIFICATION);
}

TEST_CASE("the dev keys never appear in stdout, stderr or the record file") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--verbose", "--script", "500,drop"}, kKeysEnv);
  HttpClient client;
  send(client, server, "app1", kKey1, kValidEvent);                    // scripted 500
  send(client, server, "app1", kKey1, kValidEvent);                    // dropped, recorded
  send(client, server, "app1", kKey1, kValidEvent);                    // accepted
  send(client, server, "app1", kKey2, kValidEvent);                    // the other app's key
  send(client, server, "app1", kKey1 + "x", kValidEvent);              // almost the key
  send(client, server, "app1", kKey1, R"({"metrixUserId":"u1"})");   // invalid body
  server.control("seed=1");
  server.stats();
  server.process().kill(SIGTERM);
  REQUIRE(server.process().wait(10s) == 0);

  std::string everything = server.process().out() + server.process().err() + read_file(server.record_file());
  CHECK(server.records().size() == 2);
  CHECK(everything.find(kKey1) == std::string::npos);
  CHECK(everything.find(kKey2) == std::string::npos);
  CHECK(everything.find("dk-") == std::string::npos);
}

TEST_CASE("a malformed keys file is refused with exit code 2 and a message that does not quote it") {
  TempDir dir;
  std::ofstream(dir.file("keys")) << "app1=" << kKey1 << "\n" << kKey2 << "\n";
  RunResult result = run({fake_metrix_binary(), "--keys-file", dir.file("keys").string()});
  CHECK(result.exit_code == 2);
  CHECK(result.err.find("line 2") != std::string::npos);
  CHECK(result.err.find(kKey2) == std::string::npos);
  CHECK(result.out.empty());

  result = run({fake_metrix_binary()}, "", {{"FAKE_METRIX_KEYS", "app1=" + kKey1 + "," + kKey2}});
  CHECK(result.exit_code == 2);
  CHECK(result.err.find("entry 2 of FAKE_METRIX_KEYS") != std::string::npos);
  CHECK(result.err.find(kKey1) == std::string::npos);
  CHECK(result.err.find(kKey2) == std::string::npos);
}

TEST_CASE("--help explains and exits 0; bad flags exit 2 with a message") {
  RunResult help = run({fake_metrix_binary(), "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("Metrix S2S endpoint") != std::string::npos);
  CHECK(help.out.find("Examples:") != std::string::npos);
  CHECK(help.out.find("FAKE_METRIX_KEYS") != std::string::npos);

  struct Bad {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Bad> bad = {
      {{"--any-key", "--no-such-flag"}, "--no-such-flag"},
      {{"--any-key", "--error-rate", "1.5"}, "error-rate"},
      {{"--any-key", "--latency-ms", "-1"}, "latency-ms"},
      {{"--any-key", "--script", "500,teapot"}, "teapot"},
      {{"--any-key", "--drop-style", "sideways"}, "drop-style"},
      {{"--any-key", "--port", "70000"}, "--port"},
      {{"--any-key", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"}, "nonexistent"},
      {{"--app", "app1"}, "app1"},
      {{}, "FAKE_METRIX_KEYS"},
  };
  for (const Bad& b : bad) {
    std::vector<std::string> argv = {fake_metrix_binary()};
    argv.insert(argv.end(), b.args.begin(), b.args.end());
    CAPTURE(b.says);
    RunResult result = run(argv, "", {{"FAKE_METRIX_KEYS", ""}}, 10s);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find(b.says) != std::string::npos);
    CHECK(result.out.empty());
  }
}

TEST_CASE("SIGTERM and SIGINT stop it with exit code 0 at once, even with an idle keep-alive connection open") {
  for (int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    TempDir dir;
    auto server = FakeMetrix::start(dir, {}, kKeysEnv);
    HttpClient idle;
    REQUIRE(send(idle, server, "app1", kKey1, kValidEvent).status == 200);
    auto start = std::chrono::steady_clock::now();
    server.process().kill(sig);
    CHECK(server.process().wait(10s) == 0);
    CHECK(std::chrono::steady_clock::now() - start < 2s);  // not the 5 s keep-alive timeout
  }
}

TEST_CASE("it prints exactly one listening line and writes the port to --port-file") {
  TempDir dir;
  auto server = FakeMetrix::start(dir, {"--port-file", dir.file("port").string()}, kKeysEnv);
  CHECK(server.process().out() == "fake-metrix listening on " + server.url() + "\n");
  CHECK(server.url() == "http://127.0.0.1:" + std::to_string(server.port()));
  CHECK(read_file(dir.file("port")) == std::to_string(server.port()) + "\n");
}

TEST_CASE("a second fake-metrix on a port one is listening on is refused, not silently sharing it") {
  TempDir dir;
  auto first = FakeMetrix::start(dir);
  for (const char* host : {"127.0.0.1", "0.0.0.0"}) {
    CAPTURE(host);
    // Before: SO_REUSEPORT (cpp-httplib's default) let it listen too, and the kernel split the
    // connections and the counters between the two servers.
    auto second = run({fake_metrix_binary(), "--any-key", "--host", host, "--port", std::to_string(first.port())}, {},
                      {}, 10s);
    CHECK_FALSE(second.timed_out);
    CHECK(second.exit_code == 1);
    CHECK(second.err.find("cannot listen on " + std::string(host) + ":" + std::to_string(first.port())) !=
          std::string::npos);
  }
}

#include <fmt/format.h>
#include <malloc.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>

#include "storage/import.h"
#include "storage/postgres/import.h"
#include "tools/metrix-relay/cli.h"
#include "tools/metrix-relay/output.h"
#include "storage/time_text.h"

namespace metrix::cli {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f != stdin) std::fclose(f);
  }
};

// The input, line by line, counting the bytes read for the progress bar.
class Input {
 public:
  static Result<Input> open(const std::string& path) {
    Input in;
    if (path == "-") {
      in.file_.reset(stdin);
    } else {
      std::FILE* f = std::fopen(path.c_str(), "re");
      if (!f) return Error{Errc::invalid_argument, fmt::format("{}: {}", path, std::strerror(errno))};
      in.file_.reset(f);
    }
    struct stat st {};
    if (fstat(fileno(in.file_.get()), &st) == 0 && S_ISDIR(st.st_mode)) {
      return Error{Errc::invalid_argument, fmt::format("{}: is a directory, not a file of events", path)};
    }
    if (S_ISREG(st.st_mode)) in.size_ = st.st_size;
    static constexpr size_t kBuffer = 1 << 20;
    std::setvbuf(in.file_.get(), nullptr, _IOFBF, kBuffer);
    return in;
  }

  Result<bool> next(std::string& line) {
    char* data = buffer_.get();
    ssize_t n = getline(&data, &capacity_, file_.get());
    buffer_.release();
    buffer_.reset(data);
    if (n < 0) {
      if (std::ferror(file_.get())) return Error{Errc::io, fmt::format("reading the input: {}", std::strerror(errno))};
      return false;
    }
    bytes_ += n;
    ++lines_;
    if (n > 0 && data[n - 1] == '\n') --n;
    line.assign(data, static_cast<size_t>(n));
    return true;
  }

  std::int64_t bytes() const { return bytes_; }
  std::int64_t lines() const { return lines_; }
  std::int64_t size() const { return size_; }  // 0: unknown (a pipe)

 private:
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::unique_ptr<char, FreeDeleter> buffer_;
  size_t capacity_ = 0;
  std::int64_t bytes_ = 0;
  std::int64_t lines_ = 0;
  std::int64_t size_ = 0;
};

// Progress on stderr: a bar redrawn in place on a terminal; otherwise (a log file, a CI job)
// a plain line every few seconds.
class Progress {
 public:
  Progress(const Input& input, bool tty) : input_(input), tty_(tty), started_(Clock::now()), last_(started_) {}

  void update(const ImportProgress& p, bool final = false) {
    auto now = Clock::now();
    auto since_last = now - last_;
    if (!final && since_last < (tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(5000))) return;
    last_ = now;
    double seconds = std::chrono::duration<double>(now - started_).count();
    double rate = seconds > 0 ? static_cast<double>(p.lines) / seconds : 0;
    std::string eta;
    double fraction = -1;
    if (input_.size() > 0 && input_.lines() > 0) {
      // Lines are read ahead of the writer: count the bytes of the lines already handled,
      // estimated from the average length of the lines read so far.
      double done_bytes = static_cast<double>(input_.bytes()) * static_cast<double>(p.lines) /
                          static_cast<double>(input_.lines());
      fraction = std::min(1.0, done_bytes / static_cast<double>(input_.size()));
      double byte_rate = seconds > 0 ? done_bytes / seconds : 0;
      if (byte_rate > 0) {
        eta = describe_duration(static_cast<std::int64_t>(1000.0 * (static_cast<double>(input_.size()) - done_bytes) / byte_rate));
      }
    }
    std::string counts = fmt::format("{} lines, {} new, {} already there{}, {:.0f} lines/s", p.lines, p.inserted, p.skipped,
                                     p.problems ? fmt::format(", {} bad", p.problems) : "", rate);
    if (tty_) {
      std::string bar;
      if (fraction >= 0) {
        constexpr int kWidth = 30;
        int filled = static_cast<int>(fraction * kWidth);
        bar = fmt::format("[{}{}] {:3.0f}% ", std::string(static_cast<size_t>(filled), '#'),
                          std::string(static_cast<size_t>(kWidth - filled), '.'), fraction * 100);
      }
      fmt::print(stderr, "\r\033[K{}{}{}", bar, counts, eta.empty() || final ? "" : ", ETA " + eta);
      if (final) fmt::print(stderr, "\n");
    } else if (!final) {
      fmt::print(stderr, "import: {}{}{}\n", fraction >= 0 ? fmt::format("{:.0f}%, ", fraction * 100) : "", counts,
                 eta.empty() ? "" : ", ETA " + eta);
    }
  }

  void finish(const ImportProgress& p) {
    if (tty_) update(p, true);
  }

 private:
  using Clock = std::chrono::steady_clock;
  const Input& input_;
  bool tty_;
  Clock::time_point started_, last_;
};

}  // namespace

void add_import(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("import", "Import a batch of events from NDJSON (atomic, idempotent with dedup keys)");
  cmd->footer(
      "Each line is one event: a bare S2S payload, or\n"
      "  {\"payload\": {...}, \"dedup_key\": \"order-1234\", \"app_id\": \"my-app\"}\n"
      "(dedup_key and app_id optional). Blank lines are skipped. Every line is checked against the\n"
      "same rules as enqueue; a bad line is reported as 'line N: field: rule'.\n\n"
      "All or nothing (default): one transaction. If any line is bad, nothing is imported, every bad\n"
      "line is reported, and the exit code is 2. A crash or kill imports nothing. The database's write\n"
      "lock is held for the whole import, so producers writing meanwhile wait; on a busy live database\n"
      "use --chunk. On PostgreSQL (--db postgresql://...) producers keep writing meanwhile; only a\n"
      "producer's event with a dedup key the open transaction is importing waits for it.\n"
      "--chunk N: a transaction per N lines. The first chunk holding a bad line is not imported (its\n"
      "bad lines are reported), the import stops there with exit 2, and the chunks before it stay.\n\n"
      "Re-running is safe with dedup keys: a line whose dedup_key is already in the outbox is skipped\n"
      "and counted, so after a crash, a kill or a fixed bad line, import the same file again. A line\n"
      "WITHOUT a dedup_key is inserted again on every run: give every line a dedup key (an order id,\n"
      "a transaction id) whenever a file may be imported twice.\n\n"
      "Progress goes to stderr: a bar with rate and ETA on a terminal, otherwise a line every 5s.\n"
      "The summary goes to stdout.\n"
      "Exit codes: 0 everything imported (or already there), 2 bad lines (see above) or bad options,\n"
      "1 the input or the database failed (nothing of the open transaction imported).\n\n"
      "Examples:\n"
      "  metrix-relay import --db app.db events.ndjson\n"
      "  zcat history.ndjson.gz | metrix-relay import --db app.db --chunk 50000 -\n"
      "  PGPASSWORD=... metrix-relay import --db postgresql://app@db.internal/bank --chunk 50000 events.ndjson");
  struct Args {
    std::string db, file;
    std::int64_t chunk = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--db", a->db, "outbox database: an SQLite file or a postgresql:// URI")->required();
  cmd->add_option("file", a->file, "NDJSON file, or - for standard input")->required();
  cmd->add_option("--chunk", a->chunk, "commit every N lines instead of all at once")->check(whole_number(1));
  add_format_flags(*cmd, a->json, nullptr);
  cmd->callback([a, &exit_code] {
    // SQLite's trigger programs allocate and free large blocks for every row; glibc would hand
    // that memory back to the kernel and fault it in again each time (measured: more system
    // than user time). Keeping freed memory in the process makes the import ~3x faster.
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
    // Lines are checked on several threads: SQLite's allocation statistics take one global
    // mutex per malloc, which those threads would spend their time fighting over. Must come
    // before SQLite's first use in this process (it is the first here; otherwise ignored).
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    auto input = Input::open(a->file);
    if (!input) return void(exit_code = fail(input.error()));
    std::optional<Database> db;
    std::optional<pg::Connection> pg_db;
    if (pg::is_uri(a->db)) {
      auto opened = open_pg_outbox(a->db);
      if (!opened) return void(exit_code = fail(opened.error()));
      pg_db.emplace(std::move(*opened));
    } else {
      auto opened = open_outbox(a->db);
      if (!opened) return void(exit_code = fail(opened.error()));
      db.emplace(std::move(*opened));
    }
    Progress progress(*input, isatty(STDERR_FILENO) != 0);
    ImportOptions options;
    options.chunk_lines = a->chunk;
    ImportProgress last;
    auto started = std::chrono::steady_clock::now();
    auto next = [&](std::string& line) { return input->next(line); };
    auto on_progress = [&](const ImportProgress& p) {
      last = p;
      progress.update(p);
    };
    auto report = pg_db ? pg::import_ndjson(*pg_db, next, options, on_progress)
                        : import_ndjson(*db, next, options, on_progress);
    progress.finish(last);
    if (!report) {
      if (a->chunk > 0 && last.committed_lines > 0) {
        fmt::print(stderr, "metrix-relay: lines 1..{} were imported before the failure\n", last.committed_lines);
      }
      return void(exit_code = fail(report.error()));
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (const auto& p : report->problems) fmt::print(stderr, "line {}: {}\n", p.line, p.message);
    bool complete = report->problems.empty();
    if (a->json) {
      nlohmann::ordered_json out;
      out["complete"] = complete;
      out["lines"] = report->lines;
      out["inserted"] = report->inserted;
      out["skipped_duplicates"] = report->skipped;
      out["committed_lines"] = report->committed_lines;
      out["bad_lines"] = nlohmann::ordered_json::array();
      for (const auto& p : report->problems) out["bad_lines"].push_back({{"line", p.line}, {"error", p.message}});
      out["seconds"] = seconds;
      out["checked_in_parallel"] = report->triggers_bypassed;
      print_json(out);
    } else if (complete) {
      fmt::print("imported {} rows, skipped {} already in the outbox (dedup_key), {} lines in {:.1f}s\n",
                 report->inserted, report->skipped, report->lines, seconds);
    } else if (a->chunk == 0) {
      fmt::print("nothing imported: {} bad lines (listed on stderr); fix them and run the same import again\n",
                 report->problems.size());
    } else if (report->committed_lines == 0) {
      fmt::print("stopped at the first chunk, which has {} bad lines (listed on stderr); nothing imported; fix "
                 "them and run the same import again\n",
                 report->problems.size());
    } else {
      fmt::print("stopped at a chunk with {} bad lines (listed on stderr); lines 1..{} are imported ({} rows, {} "
                 "skipped as already there), the rest is not; fix the file and run the same import again\n",
                 report->problems.size(), report->committed_lines, report->inserted, report->skipped);
    }
    exit_code = complete ? kOk : kInvalidInput;
  });
}

}  // namespace metrix::cli

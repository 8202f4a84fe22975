// The import's reading loop, whatever database the lines go to (storage/import.cc on SQLite,
// storage/postgres/import.cc on PostgreSQL): batches of lines read ahead and checked on the
// pool's threads, handed to the writer in input order, until the input ends or the writer
// stops. The writer is the caller's chunk writer: state() (Writer::State::stopped ends the
// loop), write(lines), progress() and finish().
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "storage/import.h"
#include "storage/import_checkers.h"

namespace metrix {

// The checking threads an import runs: ImportOptions::validators, else one per core.
inline int checker_threads(const ImportOptions& options) {
  return options.validators > 0 ? options.validators : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

template <class Writer>
Result<ImportReport> run_import(Writer& writer, CheckPool& pool, const LineReader& next_line,
                                const ImportOptions& options,
                                const std::function<void(const ImportProgress&)>& progress) {
  const std::int64_t batch_lines = std::max<std::int64_t>(1, options.batch_lines);
  std::deque<std::pair<std::shared_ptr<LineBatch>, std::future<Status>>> in_flight;  // before the pool's end
  const size_t max_in_flight = static_cast<size_t>(checker_threads(options)) * 3;
  std::int64_t next_line_number = 1;
  bool eof = false;
  for (;;) {
    while (!eof && writer.state() != Writer::State::stopped && in_flight.size() < max_in_flight) {
      auto batch = std::make_shared<LineBatch>();
      batch->first_line = next_line_number;
      batch->text.reserve(static_cast<size_t>(batch_lines));
      std::string line;
      while (static_cast<std::int64_t>(batch->text.size()) < batch_lines) {
        line.clear();
        auto more = next_line(line);
        if (!more) return more.error();
        if (!*more) {
          eof = true;
          break;
        }
        if (next_line_number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a UTF-8 BOM
        batch->text.push_back(std::move(line));
        ++next_line_number;
      }
      if (batch->text.empty()) break;
      auto checked = pool.submit(batch);
      in_flight.emplace_back(std::move(batch), std::move(checked));
    }
    if (in_flight.empty() || writer.state() == Writer::State::stopped) break;
    auto [batch, checked] = std::move(in_flight.front());
    in_flight.pop_front();
    if (auto s = checked.get(); !s) return s.error();
    if (auto s = writer.write(batch->lines); !s) return s.error();
    if (progress) progress(writer.progress());
  }
  return writer.finish();
}

}  // namespace metrix

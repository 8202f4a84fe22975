// Writer: the relay's write rounds, on a thread of their own with a connection of their own,
// so that requests keep flowing while outcomes commit (a round holds the write lock for
// milliseconds, the fsync included; on the relay's one loop no answer was read meanwhile).
//
// A round is RelayStore::write_round (storage/relay_store.h): record the answered outcomes,
// write the relay's heartbeat and app pauses when due, list the apps with unfinished rows,
// note why unroutable apps are not sent, and claim due rows of the apps the loop opened, in
// one transaction. A round that fails hands its outcomes back to the loop, claims nothing,
// and leaves the database as it was.
//
// Threads: the relay loop owns the Writer and calls every method; the writer thread only
// runs rounds. One round at a time: submit() while busy() is a bug.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/relay_store.h"

namespace metrix {

// A round's outcome as the loop sees it: what the store did, or, when the round failed, what
// must be tried again.
struct WriteDone : RoundResult {
  Status status;                  // failed: nothing of the round was written, and the rest is empty
  std::vector<Outcome> outcomes;  // the job's: recorded (less recorded.fenced_ids), or not if it failed
  std::vector<std::pair<std::string, std::optional<AppPause>>> unwritten_pauses;  // the job's, if it failed
};

class Writer {
 public:
  // Takes a store of its own (used from the writer thread only from now on). `wake` is
  // called from the writer thread when a round is done; it must be thread-safe.
  Writer(std::unique_ptr<RelayStore> store, std::function<void()> wake);
  ~Writer();  // waits for the round in progress, then stops the thread
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void submit(WriteJob job);
  bool busy() const { return busy_; }
  // The finished round, if there is one; never blocks.
  std::optional<WriteDone> take();
  // Blocks until the round in progress is done.
  WriteDone wait();

 private:
  void loop();
  WriteDone run_round(WriteJob& job);

  std::unique_ptr<RelayStore> store_;  // the writer thread's
  std::function<void()> wake_;
  bool busy_ = false;  // the loop's view: a job submitted and not yet taken

  std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<WriteJob> job_;    // guarded by mutex_
  std::optional<WriteDone> done_;  // guarded by mutex_
  bool quit_ = false;              // guarded by mutex_
  std::thread thread_;             // last: starts after everything above exists
};

}  // namespace metrix

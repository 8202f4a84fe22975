#include "relay/writer.h"

#include <algorithm>
#include <cassert>
#include <chrono>

namespace metrix {

Writer::Writer(Database db, std::function<void()> wake)
    : db_(std::move(db)), outbox_(db_), wake_(std::move(wake)), thread_([this] { loop(); }) {}

Writer::~Writer() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void Writer::submit(WriteJob job) {
  assert(!busy_ && "one round at a time: submit() while busy() is a bug");
  {
    std::lock_guard lock(mutex_);
    job_ = std::move(job);
  }
  busy_ = true;
  changed_.notify_all();
}

std::optional<WriteDone> Writer::take() {
  std::lock_guard lock(mutex_);
  if (!done_) return std::nullopt;
  busy_ = false;
  return std::exchange(done_, std::nullopt);
}

WriteDone Writer::wait() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return done_.has_value(); });
  busy_ = false;
  return *std::exchange(done_, std::nullopt);
}

void Writer::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return quit_ || job_.has_value(); });
    if (!job_) return;  // quit, and no round left to run
    WriteJob job = *std::exchange(job_, std::nullopt);
    lock.unlock();
    WriteDone done = run_round(job);
    lock.lock();
    done_ = std::move(done);
    changed_.notify_all();
    wake_();
  }
}

WriteDone Writer::run_round(WriteJob& job) {
  WriteDone done;
  auto failed = [&](Error error) {
    // The transaction rolls back as the round's scope ends: nothing of the round is written
    // and no row is ours.
    done.status = std::move(error);
    done.outcomes = std::move(job.outcomes);
    done.unwritten_pauses = std::move(job.pauses);
    done.claims.clear();
    done.active_apps.clear();
    done.recorded = {};
    return std::move(done);
  };
  std::chrono::steady_clock::time_point locked;
  {
    // One short write transaction for everything: the fewer times the relay takes the
    // write lock, the less a producer committing beside it waits.
    auto tx = Transaction::begin(db_.handle());
    if (!tx) return failed(tx.error());
    locked = std::chrono::steady_clock::now();  // the lock is held from here, not the wait for it
    // Read with the write lock held, so no commit of another connection falls between this
    // round and the next unseen.
    auto version = db_.data_version();
    if (!version) return failed(version.error());
    const bool changed = data_version_ && *data_version_ != *version;
    done.others_wrote = changed;
    data_version_ = *version;
    if (!job.outcomes.empty()) {
      auto report = outbox_.record(job.outcomes);
      if (!report) return failed(report.error());
      done.recorded = *report;
    }
    if (job.heartbeat) {
      if (auto s = outbox_.beat(*job.heartbeat); !s) return failed(s.error());
    }
    for (const auto& [app, pause] : job.pauses) {
      if (auto s = pause ? outbox_.save_pause(*pause) : outbox_.clear_pause(app); !s) return failed(s.error());
    }
    for (const auto& [app, reason] : job.notes) {
      if (auto s = outbox_.note_unroutable(app, reason); !s) return failed(s.error());
    }
    auto active = outbox_.active_apps();
    if (!active) return failed(active.error());
    done.active_apps = std::move(*active);
    int limit = job.claim_limit;
    bool suspect_taken = !job.claim_suspect;
    for (const auto& app : done.active_apps) {
      auto gate = job.gates.find(app);
      if (limit <= 0) break;
      if (gate == job.gates.end() || gate->second <= 0) continue;
      const int asked = std::min(limit, gate->second);
      int skipped = 0;
      auto claims = outbox_.claim(app, job.now, job.lease_ms, asked, suspect_taken ? 0 : 1, &skipped);
      if (!claims) return failed(claims.error());
      for (const Claim& c : *claims) suspect_taken = suspect_taken || c.lease_expiries > 0;
      // Rows left due because they are suspects do not make the next claim worth making
      // sooner: it would find them again.
      if (static_cast<int>(claims->size()) < asked && skipped == 0) {
        auto due = outbox_.next_due_at(app);
        if (!due) return failed(due.error());
        if (*due && (!done.next_due_at || **due < *done.next_due_at)) done.next_due_at = *due;
      }
      limit -= static_cast<int>(claims->size());
      std::move(claims->begin(), claims->end(), std::back_inserter(done.claims));
    }
    if (auto s = tx->commit(); !s) return failed(s.error());
  }
  done.outcomes = std::move(job.outcomes);
  done.lock_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - locked).count();
  return done;
}

}  // namespace metrix

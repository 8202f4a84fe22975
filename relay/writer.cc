#include "relay/writer.h"

#include <cassert>

namespace metrix {

Writer::Writer(std::unique_ptr<RelayStore> store, std::function<void()> wake)
    : store_(std::move(store)), wake_(std::move(wake)), thread_([this] { loop(); }) {}

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
  auto round = store_->write_round(job);
  WriteDone done;
  if (round) static_cast<RoundResult&>(done) = std::move(*round);
  else done.status = round.error();
  done.outcomes = std::move(job.outcomes);
  if (!done.status) done.unwritten_pauses = std::move(job.pauses);
  return done;
}

}  // namespace metrix

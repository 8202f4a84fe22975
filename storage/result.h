// Errors as values. Every fallible operation of the storage and relay libraries returns
// a Result<T> (or Status): the caller sees the error where it happens, with a message
// that names what went wrong. Exceptions never cross these APIs.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace metrix {

enum class Errc {
  invalid_event,   // the event breaks a rule; message is "field: rule"; nothing was written
  duplicate,       // dedup_key already present; nothing was written
  busy,            // the database stayed locked longer than the busy timeout; retry later
  schema,          // a newer schema, an altered migration, or a damaged file; nothing was written
  no_outbox,       // the database has no outbox schema: migrate() creates it; nothing was written
  old_schema,      // the outbox schema is older than this code: migrate() upgrades it; nothing was written
  io,              // SQLite or the file system failed (full disk, read-only, corrupt file)
  not_found,       // no such row, or no such database file
  invalid_argument,
};

struct Error {
  Errc code;
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_{Errc::io, {}};
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace metrix

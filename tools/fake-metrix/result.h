// Result<T>: a value or an error message, returned instead of thrown.
//
// fake-metrix reports every failure (bad flag value, unreadable key file, a
// port that cannot be bound, a record file that cannot be written) as a value
// so that main() decides the exit code and the message in one place.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace fake_metrix {

struct Error {
  std::string message;  // says what is wrong; never contains a dev key
  // Caused by what the user gave (a flag value, a file it names) rather than
  // by the system: main exits 2 instead of 1.
  bool bad_input = false;
};

template <class T>
class Result {
 public:
  Result(T value) : state_(std::move(value)) {}
  Result(Error error) : state_(std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  T& value() { return std::get<0>(state_); }
  const T& value() const { return std::get<0>(state_); }
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// For operations that produce nothing but can fail.
using Status = Result<std::monostate>;
inline Status ok_status() { return Status(std::monostate{}); }

}  // namespace fake_metrix

// What the fuzz targets share: how a broken invariant is reported, a private scratch
// directory, and the byte-level checks the oracles need.
//
// A broken invariant aborts the process with a message on stderr: libFuzzer saves the
// input as crash-<sha1> and prints the stack, so an invariant counts like a sanitizer report.
#pragma once

#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace metrix::fuzz {

template <class... Args>
[[noreturn]] void broken(fmt::format_string<Args...> format, Args&&... args) {
  std::fprintf(stderr, "\n==fuzz== invariant broken: %s\n", fmt::format(format, std::forward<Args>(args)...).c_str());
  std::fflush(stderr);
  std::abort();
}

#define METRIX_FUZZ_REQUIRE(condition, ...)               \
  do {                                                    \
    if (!(condition)) ::metrix::fuzz::broken(__VA_ARGS__); \
  } while (0)

// Shows bytes the way a reader of a crash report needs them: printable ASCII as is,
// everything else as \xNN, cut after `limit` bytes.
inline std::string printable(std::string_view bytes, size_t limit = 300) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < limit; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f) out.push_back(static_cast<char>(c));
    else out += fmt::format("\\x{:02x}", c);
  }
  if (bytes.size() > limit) out += fmt::format("... ({} bytes)", bytes.size());
  return out;
}

// A directory of this process's own, on tmpfs when there is one (the targets commit to
// SQLite files many times a second; fsync on a real disk would be the whole cost).
// Removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string base =
        std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path().string();
    std::string pattern = base + "/metrix-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) broken("mkdtemp {}: cannot create the scratch directory", pattern);
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// Strict UTF-8 (RFC 3629): no overlong forms, no encoded surrogates, nothing above U+10FFFF.
inline bool is_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c == 0xe0) n = 2, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) n = 2;
    else if (c == 0xed) n = 2, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef) n = 2;
    else if (c == 0xf0) n = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) n = 3;
    else if (c == 0xf4) n = 3, hi = 0x8f;
    else return false;
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      auto d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xbf)) return false;
    }
    i += n + 1;
  }
  return true;
}

// True when the JSON text has a \u escape of a UTF-16 surrogate (\uD800..\uDFFF). SQLite
// accepts one that is unpaired, strict parsers do not: like invalid UTF-8 bytes, it is
// text that is not Unicode, the documented gap (README, "What a valid event is").
inline bool has_surrogate_escape(std::string_view s) {
  for (size_t i = 0; i + 3 < s.size(); ++i) {
    if (s[i] != '\\') continue;
    if (s[i + 1] == '\\') {  // an escaped backslash: what follows is not an escape
      ++i;
      continue;
    }
    char c = static_cast<char>(s[i + 3] | 0x20);
    if (s[i + 1] == 'u' && (s[i + 2] | 0x20) == 'd' && ((c >= '8' && c <= '9') || (c >= 'a' && c <= 'f'))) return true;
  }
  return false;
}

// FNV-1a: a stable choice derived from the input, so a saved input replays the same way.
inline std::uint64_t fingerprint(std::string_view bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace metrix::fuzz

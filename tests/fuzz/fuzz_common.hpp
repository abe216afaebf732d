#pragma once
// Shared by the libFuzzer harnesses: a property check that stops the run (libFuzzer then saves
// the input as crash-<sha1>), and small helpers to read options from the input's first bytes.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace spanrelay::fuzz {

// A property violation: print what and where, then abort (a finding, like a crash).
[[noreturn]] inline void violated(const char* what, const char* file, int line) {
  std::fprintf(stderr, "\n==fuzz property violated== %s:%d: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}

// Takes option bytes off the front of the input; 0 when the input has run out.
struct Input {
  const std::uint8_t* data;
  std::size_t size;

  std::uint8_t byte() noexcept {
    if (size == 0) {
      return 0;
    }
    --size;
    return *data++;
  }
  std::uint16_t u16() noexcept {
    const std::uint16_t lo = byte();
    return static_cast<std::uint16_t>(lo | (byte() << 8));
  }
  std::string_view rest() const noexcept {
    return {reinterpret_cast<const char*>(data), size};
  }
};

}  // namespace spanrelay::fuzz

#define FUZZ_CHECK(cond)                                          \
  do {                                                            \
    if (!(cond)) {                                                \
      ::spanrelay::fuzz::violated(#cond, __FILE__, __LINE__);     \
    }                                                             \
  } while (false)

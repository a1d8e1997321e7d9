// The fuzz harnesses' own checks (fuzz/harness.h, fuzz/harness_data.h). A broken invariant throws
// InvariantBroken, which no fuzz target catches (libFuzzer reports the uncaught exception as a
// crash) and the unit tests that replay the corpora report as a failure, naming the input.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

namespace mfqat::fuzz {

struct InvariantBroken : std::logic_error {
  using std::logic_error::logic_error;
};

inline void require(bool ok, const char* what) {
  if (!ok) throw InvariantBroken(std::string("fuzz invariant broken: ") + what);
}

// A rejection must be one line (the CLI prints it as `mfqat: error: …`).
inline void check_one_line(const std::exception& e) {
  const std::string w = e.what();
  if (w.find_first_of("\r\n") != std::string::npos) throw InvariantBroken("fuzz invariant broken: a message of more than one line: " + w);
}

}  // namespace mfqat::fuzz

// Replays the seed corpora (fuzz/corpus/TARGET/) and every input the fuzzers ever crashed on or
// that a fix added (fuzz/regressions/) through the same code the fuzz targets run
// (fuzz/harness.h). Each input must be parsed or rejected with its parser's documented exception
// type and a one-line message; another exception type fails the test, and so does a corpus input
// that is not handled as its name says (bad_* must be rejected, everything else accepted) or a
// regression input whose expected outcome is not the one listed below. The data-set parsers'
// corpora (rdata, idx, gzip) are replayed by tests/test_data.cpp.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include "../fuzz/harness.h"
#include "../fuzz/harness_chat.h"
#include "../fuzz/harness_plan.h"
#include "mfqat/ckpt/file.h"

namespace fs = std::filesystem;
using namespace mfqat;

namespace {

enum class Outcome { Accepted, Rejected };

struct Result {
  Outcome outcome = Outcome::Accepted;
  std::string message;  // the rejection's what()
};

using Bytes = std::vector<std::uint8_t>;

// One fuzz target: what it runs and which exception types count as a clean rejection.
struct Target {
  std::function<void(const Bytes&, const std::string&)> run;
  bool runtime_error_ok = false, invalid_argument_ok = false;
};

const std::map<std::string, Target>& targets() {
  static const std::map<std::string, Target> t = {
      {"safetensors", {[](const Bytes& b, const std::string& n) { fuzz::safetensors(b, n); }, true, true}},
      {"npy", {[](const Bytes& b, const std::string& n) { fuzz::npy(b, n); }, true, false}},
      {"config", {[](const Bytes& b, const std::string& n) { fuzz::config(std::string(b.begin(), b.end()), n); }, false, true}},
      {"request", {[](const Bytes& b, const std::string&) { fuzz::request(std::string(b.begin(), b.end())); }, false, true}},
      {"gguf", {[](const Bytes& b, const std::string& n) { fuzz::gguf_file(b, n); }, true, false}},
      {"plan", {[](const Bytes& b, const std::string& n) { fuzz::plan_file(std::string(b.begin(), b.end()), n); }, true, false}},
      {"chat_template", {[](const Bytes& b, const std::string& n) { fuzz::chat_template(std::string(b.begin(), b.end()), n); }, true, false}},
  };
  return t;
}

// Runs one input through one target. An exception of a type the target does not document is a
// test failure (reported with its type and message), never swallowed.
Result replay_with(const Target& t, const std::string& where, const Bytes& bytes, const std::string& name) {
  try {
    t.run(bytes, name);
    return {};
  } catch (const std::invalid_argument& e) {
    if (!t.invalid_argument_ok) ADD_FAILURE() << where << ": unexpected std::invalid_argument: " << e.what();
    return {Outcome::Rejected, e.what()};
  } catch (const std::runtime_error& e) {
    if (!t.runtime_error_ok) ADD_FAILURE() << where << ": unexpected std::runtime_error: " << e.what();
    return {Outcome::Rejected, e.what()};
  } catch (const std::exception& e) {
    ADD_FAILURE() << where << ": unexpected exception " << typeid(e).name() << ": " << e.what();
  } catch (...) {
    ADD_FAILURE() << where << ": unexpected non-std exception";
  }
  return {Outcome::Rejected, ""};
}

Result replay(const std::string& target, const fs::path& file) {
  return replay_with(targets().at(target), target + " <- " + file.filename().string(), ckpt::read_file(file.string()), file.string());
}

// What each file of fuzz/regressions/ must do: the prefix before the first '-' names the target
// ("checkpoint" = the safetensors target, whose checkpoint stage refuses these files).
struct Known {
  Outcome outcome;
  std::string needle;  // in the rejection message
};
const std::map<std::string, Known>& known_regressions() {
  static const std::map<std::string, Known> k = {
      // ASan: unary minus read its operand after the temporary holding it had gone (fuzz_chat_template).
      {"chat_template-unary-minus-use-after-scope.jinja", {Outcome::Accepted, ""}},
      // UBSan: signed overflow in 2 ** 80 (Python's integers are unbounded; mfqat's 64-bit ones refuse).
      {"chat_template-int-overflow.jinja", {Outcome::Rejected, "integer overflow in ** (integers are 64-bit here)"}},
      // UBSan: memcpy from a null pointer for shape (0, 2040); an empty matrix is valid.
      {"npy-empty-shape-memcpy.npy", {Outcome::Accepted, ""}},
      // A dtype with a newline was echoed into the message, which then spanned two lines.
      {"npy-newline-in-dtype.npy", {Outcome::Rejected, "dtype '<f4\\n' is not float32"}},
      // UBSan: memcpy from a null pointer for an F32 tensor of 0 elements (found by fuzz_gguf).
      {"gguf-empty-tensor-memcpy.gguf", {Outcome::Accepted, ""}},
      // Anchors whose MX tensors or metadata disagree (model::Checkpoint names the tensor).
      {"checkpoint-mixed-block-size.safetensors",
       {Outcome::Rejected, "tensor 'layers.1.weight' is mxint8 (block size 16), but the anchor's block size is 32 (metadata mfqat.anchor_block_size = 32)"}},
      {"checkpoint-mixed-block-size-no-key.safetensors",
       {Outcome::Rejected, "tensor 'layers.1.weight' is mxint8 (block size 16), but the anchor's block size is 32 (tensor 'layers.0.weight')"}},
      {"checkpoint-mixed-format.safetensors", {Outcome::Rejected, "tensor 'layers.1.weight' is mxint4 (block size 32), not the anchor format mxint8"}},
      {"checkpoint-anchor-format-disagrees.safetensors",
       {Outcome::Rejected, "tensor 'layers.0.weight' is mxint8 (block size 32), not the anchor format mxint4"}},
      {"checkpoint-block-size-key-disagrees.safetensors",
       {Outcome::Rejected, "tensor 'layers.0.weight' is mxint8 (block size 32), but the anchor's block size is 16"}},
      {"checkpoint-mx-without-anchor-key.safetensors",
       {Outcome::Rejected, "tensor 'layers.0.weight' is an MX tensor (mxint8 (block size 32)), but the metadata has no mfqat.anchor"}},
  };
  return k;
}

// Prefixes of regression files replayed by tests/test_data.cpp instead.
const std::set<std::string> kDataTargets = {"rdata", "idx", "gzip"};

void expect_one_line_naming(const Result& r, const fs::path& file) {
  if (r.outcome != Outcome::Rejected || r.message.empty()) return;
  EXPECT_EQ(r.message.find('\n'), std::string::npos) << r.message;
  EXPECT_EQ(r.message.rfind(file.string(), 0), 0u) << "the message should start with the input's name: " << r.message;
}

}  // namespace

TEST(FuzzRegressions, CorpusInputsAreAcceptedOrRejectedAsNamed) {
  int files = 0;
  for (const auto& [target, t] : targets()) {
    const fs::path d = fs::path(MFQAT_FUZZ_DIR) / "corpus" / target;
    ASSERT_TRUE(fs::is_directory(d)) << d;
    int here = 0;
    for (const auto& e : fs::directory_iterator(d)) {
      ++files;
      ++here;
      const bool bad = e.path().filename().string().rfind("bad_", 0) == 0;
      const Result r = replay(target, e.path());
      EXPECT_EQ(r.outcome, bad ? Outcome::Rejected : Outcome::Accepted) << target << " <- " << e.path().filename() << ": " << r.message;
      // the request parser's messages do not carry a name (they become an HTTP 400 body)
      if (target != "request") expect_one_line_naming(r, e.path());
    }
    EXPECT_GE(here, 1) << "no seed input for " << target;
  }
  EXPECT_GE(files, 16);
}

TEST(FuzzRegressions, EveryRegressionInputHasItsExpectedOutcome) {
  const fs::path d = fs::path(MFQAT_FUZZ_DIR) / "regressions";
  std::set<std::string> seen;
  for (const auto& e : fs::directory_iterator(d)) {
    const std::string name = e.path().filename().string();
    const std::string prefix = name.substr(0, name.find('-'));
    if (kDataTargets.count(prefix)) continue;
    seen.insert(name);
    const auto it = known_regressions().find(name);
    if (it == known_regressions().end()) {
      ADD_FAILURE() << "fuzz/regressions/" << name << " has no expected outcome in this test (add it to known_regressions())";
      continue;
    }
    const std::string target = prefix == "checkpoint" ? "safetensors" : prefix;
    ASSERT_TRUE(targets().count(target)) << name << ": unknown target prefix '" << prefix << "'";
    const Result r = replay(target, e.path());
    EXPECT_EQ(r.outcome, it->second.outcome) << name << ": " << r.message;
    EXPECT_NE(r.message.find(it->second.needle), std::string::npos) << name << ": " << r.message;
    expect_one_line_naming(r, e.path());
    // the other binary parsers must survive it too (accepted or cleanly rejected)
    for (const char* other : {"safetensors", "npy"}) {
      if (other != target) (void)replay(other, e.path());
    }
  }
  for (const auto& [name, k] : known_regressions()) EXPECT_TRUE(seen.count(name)) << "fuzz/regressions/" << name << " is missing";
}

// The replay itself must be able to fail: an exception type the target does not document is
// reported, not swallowed.
TEST(FuzzRegressions, ReplayReportsUnexpectedExceptionTypes) {
  const Bytes b = {1, 2};
  const Target strict{[](const Bytes&, const std::string&) { throw std::invalid_argument("x"); }, true, false};
  const Target odd{[](const Bytes&, const std::string&) { throw std::out_of_range("y"); }, true, true};
  const Target thrower{[](const Bytes&, const std::string&) { throw 42; }, true, true};
  const Target fine{[](const Bytes&, const std::string&) { throw std::runtime_error("z"); }, true, false};
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD,
                                                         &failures);
    EXPECT_EQ(replay_with(strict, "strict", b, "n").outcome, Outcome::Rejected);
    (void)replay_with(odd, "odd", b, "n");
    (void)replay_with(thrower, "thrower", b, "n");
    EXPECT_EQ(replay_with(fine, "fine", b, "n").message, "z");
  }
  ASSERT_EQ(failures.size(), 3);
  EXPECT_NE(std::string(failures.GetTestPartResult(0).message()).find("strict: unexpected std::invalid_argument: x"), std::string::npos);
  EXPECT_NE(std::string(failures.GetTestPartResult(1).message()).find("odd: unexpected exception"), std::string::npos);
  EXPECT_NE(std::string(failures.GetTestPartResult(2).message()).find("thrower: unexpected non-std exception"), std::string::npos);
}

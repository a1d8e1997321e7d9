// What each libFuzzer target does with one input, shared with the unit tests that replay the seed
// corpora and fuzz/regressions/ (tests/test_fuzz_regressions.cpp), so that both run the same code.
//
// Each function either returns (the input was accepted and every accessor ran on it) or throws
// one of the exception types its parser documents; anything else (another exception type, a
// crash, a sanitizer report, a broken invariant: InvariantBroken, see invariant.h) is a finding.
// The fuzz targets catch only the documented types, so an unexpected exception fails the run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <optional>
#include <string>
#include <vector>

#include "invariant.h"
#include "mfqat/ckpt/npy.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/export/ggml_blocks.h"
#include "mfqat/export/gguf.h"
#include "mfqat/model/checkpoint.h"
#include "mfqat/model/config.h"
#include "mfqat/model/hf.h"
#include "mfqat/mx/format.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/runtime/server.h"

namespace mfqat::fuzz {

// safetensors reader + MX metadata validation, then every accessor; a file with a model config
// then goes through the model checkpoint checks (Checkpoint::from_file) and has its parameters read.
// Throws std::runtime_error (file, checkpoint) or std::invalid_argument (bad model config).
inline void safetensors(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  try {
    auto f = ckpt::SafetensorsFile::from_bytes(bytes, name);
    std::uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      const auto d = f.data(t);
      if (!d.empty()) sum += d[0] + d[d.size() - 1];
      require(f.find(t.name) == &t, "find() of a listed tensor");
      (void)f.is_mx_part(t);
    }
    for (const auto& m : f.mx_tensors()) {
      require(f.find_mx(m.name) == &m && f.is_mx_part(*m.elements) && f.is_mx_part(*m.scales), "MX tensor parts");
      if (m.rows * m.cols > (1 << 16)) continue;
      const auto p = f.load_mx(m);
      const auto v = mx::dequantize(p);
      if (!v.empty()) sum += static_cast<std::uint64_t>(v[0] == v[0]);
    }
    volatile std::uint64_t sink = sum;
    (void)sink;
    if (!f.metadata().count(ckpt::kModelConfigKey)) return;
    const auto c = model::Checkpoint::from_file(std::move(f));
    for (const auto& p : c.params()) {
      std::int64_t n = 1;
      for (auto d : p.shape) n *= d;
      if (n > (1 << 16)) continue;
      const auto v = c.values(p);
      require(static_cast<std::int64_t>(v.size()) == n, "parameter size");
    }
  } catch (const std::exception& e) {
    check_one_line(e);
    throw;
  }
}

// The .npy parser. Throws std::runtime_error.
inline void npy(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  try {
    const auto m = ckpt::parse_npy(bytes, name);
    require(static_cast<std::int64_t>(m.data.size()) == m.rows * m.cols, "npy size");
  } catch (const std::exception& e) {
    check_one_line(e);
    throw;
  }
}

// The model config JSON; an accepted config must describe a buildable model and round-trip.
// Accepted also as a Hugging Face config.json (model/hf.h), which must then give an mfqat config
// that round-trips. Throws std::invalid_argument.
inline void config(const std::string& text, const std::string& name) {
  std::optional<model::ModelConfig> hf;
  try {
    model::ModelConfig h;
    h.lm = model::hf_config(text, name);
    hf = h;
  } catch (const std::invalid_argument& e) {
    check_one_line(e);
  }
  if (hf) {  // a Hugging Face config.json: accepted
    volatile std::int64_t n = hf->param_count();
    (void)n;
    require(model::ModelConfig::from_json(hf->to_json(), "round-trip").to_json() == hf->to_json(), "hf config round trip");
    return;
  }
  const auto c = model::ModelConfig::from_json(text, name);
  volatile std::int64_t n = c.param_count();
  (void)n;
  require(model::ModelConfig::from_json(c.to_json(), "round-trip").to_json() == c.to_json(), "config round trip");
}

// The GGUF reader (src/export), then every accessor: metadata values, tensor lookups and data
// spans, and the values of every small tensor of a type mfqat reads. Throws std::runtime_error.
inline void gguf_file(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  try {
    const auto f = gguf::File::from_bytes(bytes, name);
    std::uint64_t sum = 0;
    for (const auto& [k, v] : f.metadata()) {
      require(f.find_value(k) == &v, "find_value() of a listed key");
      sum += v.to_string().size();
      if (v.is_integer()) sum += static_cast<std::uint64_t>(v.as_int() & 1);
    }
    for (const auto& t : f.tensors()) {
      require(f.find(t.name) == &t, "find() of a listed tensor");
      const auto d = f.data(t);
      require(d.size() == t.bytes && t.offset % f.alignment() == 0, "tensor span");
      require(f.data_offset() + t.offset + t.bytes <= f.file_size(), "tensor inside the file");
      if (!d.empty()) sum += d[0] + d[d.size() - 1];
      using gguf::GgmlType;
      const bool readable = t.type == GgmlType::F32 || t.type == GgmlType::F16 || t.type == GgmlType::BF16 ||
                            t.type == GgmlType::Q8_0 || t.type == GgmlType::Q5_0 || t.type == GgmlType::Q4_0 || t.type == GgmlType::MXFP4;
      if (!readable || t.numel() > (1 << 16)) continue;
      std::vector<float> v(static_cast<std::size_t>(t.numel()));
      gguf::to_f32(t.type, d, t.numel(), v.data());
      if (!v.empty()) sum += static_cast<std::uint64_t>(v[0] == v[0]);
    }
    volatile std::uint64_t sink = sum;
    (void)sink;
  } catch (const std::exception& e) {
    check_one_line(e);
    throw;
  }
}

// The HTTP request bodies of /v1/completions and /v1/chat/completions: accepted when either
// endpoint accepts it (and then within the limits). Throws std::invalid_argument (RequestError
// is one) when both refuse it.
inline void request(const std::string& body) {
  auto canonical = [](const std::string& f) {
    return f == "anchor" || f == "fp32" ? f : mx::find_format(f).name;  // throws std::invalid_argument
  };
  runtime::RequestLimits lim;
  lim.max_prompt_bytes = 255;
  lim.max_tokens = 256;
  bool accepted = false;
  std::string why;
  try {
    const auto r = runtime::parse_completion_request(body, lim, canonical);
    require(r.prompt.size() <= 255 && r.max_tokens >= 1 && r.max_tokens <= 256 && r.sampling.temperature >= 0, "request limits");
    require(r.stop.size() <= 4, "at most 4 stop strings");
    // the stop scan on the prompt: a cut never past the text
    const auto sc = runtime::scan_stop(r.prompt, r.stop);
    require(sc.safe <= r.prompt.size() && (sc.stop == std::string::npos || sc.stop == sc.safe), "stop scan");
    accepted = true;
  } catch (const std::invalid_argument& ex) {
    why = ex.what();
  }
  for (const auto& t : {runtime::ChatTemplate::Plain, runtime::ChatTemplate::ChatMl, runtime::ChatTemplate::Llama3}) {
    try {
      const auto c = runtime::parse_completion_request(body, lim, canonical, true,
                                                       [t](const std::vector<runtime::ChatMessage>& m, const nlohmann::ordered_json& v) {
                                                         return runtime::render_chat(t, m, v);
                                                       });
      require(c.chat && !c.messages.empty() && c.prompt.size() <= 255 && c.max_tokens >= 1 && c.max_tokens <= 256, "chat limits");
      accepted = true;
    } catch (const std::invalid_argument&) {
    }
  }
  if (!accepted) throw std::invalid_argument(why);
}

}  // namespace mfqat::fuzz

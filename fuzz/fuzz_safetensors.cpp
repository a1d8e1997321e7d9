// libFuzzer target: the safetensors reader and MX metadata validation, then every accessor on
// whatever it accepts (data spans, MX loads, dequantize of small tensors).
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "mfqat/ckpt/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = mfqat::ckpt::SafetensorsFile::from_bytes(std::vector<std::uint8_t>(data, data + size), "fuzz");
    std::uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      const auto d = f.data(t);
      if (!d.empty()) sum += d[0] + d[d.size() - 1];
      (void)f.find(t.name);
      (void)f.is_mx_part(t);
    }
    for (const auto& m : f.mx_tensors()) {
      if (m.rows * m.cols > (1 << 16)) continue;
      const auto p = f.load_mx(m);
      const auto v = mfqat::mx::dequantize(p);
      if (!v.empty()) sum += static_cast<std::uint64_t>(v[0] == v[0]);
    }
    volatile std::uint64_t sink = sum;
    (void)sink;
  } catch (const std::exception&) {
  }
  return 0;
}

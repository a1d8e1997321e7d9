#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemv_internal.h"
#include "mfqat/mx/codec.h"
#include "mfqat/mx/parallel.h"

namespace mfqat::runtime {

namespace detail {

ScaleTable::ScaleTable() {
  for (int s = 0; s < 256; ++s) v[s] = mx::e8m0_to_float(static_cast<std::uint8_t>(s));
}
const ScaleTable kScales;

Decoder Decoder::make(const mx::Format& f) {
  Decoder d;
  d.p = mx::detail::make_params(f);
  d.is_int = f.family == mx::Family::Int;
  d.bits = f.bits;
  d.mbits = f.mbits;
  d.bias = f.bias;
  d.aligned32 = f.block_size == 32;  // 32 * B bits: always whole bytes
  d.int_mul = d.is_int ? std::ldexp(1.0f, -(f.bits - 2)) : 1.0f;
  d.sub_off = std::ldexp(1.0f, 1 - f.bias);
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 4; ++j) d.gather_idx[4 * i + j] = static_cast<std::int8_t>(std::min(i * f.bits / 8 + j, 7));
    d.gather_shift[i] = i * f.bits % 8;
  }
  if (f.bits == 8 && !d.is_int && f.mbits >= 2) {
    // The half whose exponent field is the code's: sign to bit 15, magnitude << (10 - M).
    d.half8 = true;
    const float k = std::ldexp(1.0f, 15 - f.bias);
    for (int c = 0; c < 256 && d.half8; ++c) {
      if (!std::isfinite(d.p.lut[c])) continue;  // NaN/Inf codes never reach a kernel
      const int mag = c & 0x7F, e = mag >> f.mbits, m = mag & ((1 << f.mbits) - 1);
      const float h = e == 0 ? std::ldexp(static_cast<float>(m), -14 - f.mbits)
                             : e == 31 ? NAN : std::ldexp(1.0f + std::ldexp(static_cast<float>(m), -f.mbits), e - 15);
      d.half8 = (c & 0x80 ? -h : h) * k == d.p.lut[c];
    }
  }
  if (f.bits == 4) {
    // Smallest power-of-two multiplier that makes every code an integer in int8 range.
    for (int k = 0; k <= 6 && !d.nibble; ++k) {
      bool ok = true;
      for (int c = 0; c < 16 && ok; ++c) {
        const float v = std::ldexp(d.p.lut[c], k);
        ok = std::isfinite(v) && v == std::nearbyint(v) && std::fabs(v) <= 127;
        if (ok) d.nib[c] = static_cast<std::int8_t>(v);
      }
      if (ok) {
        d.nibble = true;
        d.nib_mul = std::ldexp(1.0f, -k);
      }
    }
  }
  return d;
}

float partial_block(const Decoder& d, const mx::Format& f, const std::uint8_t* row, std::uint8_t scale, const float* x, std::int64_t cols) {
  const std::int64_t full = cols / 32, len = cols - full * 32;
  std::uint8_t codes[32];
  mx::detail::unpack_codes_at(row, full * 32 * f.bits, len, f.bits, codes);
  float dot = 0;
  for (std::int64_t i = 0; i < len; ++i) dot += d.p.lut[codes[i]] * x[full * 32 + i];
  return kScales.v[scale] * dot;
}

float partial_block_q8(const mx::Format& f, const std::int8_t* table, float mul, const std::uint8_t* row, std::uint8_t scale,
                       const Q8Acts& a, std::int64_t cols) {
  const std::int64_t full = cols / 32, len = cols - full * 32;
  std::uint8_t codes[32];
  mx::detail::unpack_codes_at(row, full * 32 * f.bits, len, f.bits, codes);
  std::int32_t dot = 0;
  for (std::int64_t i = 0; i < len; ++i) dot += table[codes[i]] * a.q[static_cast<std::size_t>(full * 32 + i)];
  return static_cast<float>(dot) * (kScales.v[scale] * mul * a.scale[static_cast<std::size_t>(full)]);
}

void decode_row_scalar(const Decoder& d, const MxView& w, std::int64_t r, float* out) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), bs = f.block_size;
  const std::uint8_t* row = w.elements + r * static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::uint8_t codes[mx::kMaxBlockSize];
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::int64_t c0 = b * bs, len = std::min(bs, w.cols - c0);
    mx::detail::unpack_codes_at(row, c0 * f.bits, len, f.bits, codes);
    const float s = mx::e8m0_to_float(w.scales[r * nb + b]);
    for (std::int64_t i = 0; i < len; ++i) out[c0 + i] = d.p.lut[codes[i]] * s;
  }
}

namespace {

// The reference: per block, dot of decoded codes and x in fp32 (in order), times the scale,
// added to the fp32 row sum.
void rows_scalar(const Decoder& d, const MxView& w, const float* x, std::int64_t n, float* y, std::int64_t r0, std::int64_t r1) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), bs = f.block_size;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::uint8_t codes[mx::kMaxBlockSize];
  float vals[mx::kMaxBlockSize];
  for (std::int64_t r = r0; r < r1; ++r) {
    for (std::int64_t j = 0; j < n; ++j) y[j * w.rows + r] = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::int64_t c0 = b * bs, len = std::min(bs, w.cols - c0);
      mx::detail::unpack_codes_at(w.elements + r * rb, c0 * f.bits, len, f.bits, codes);
      for (std::int64_t i = 0; i < len; ++i) vals[i] = d.p.lut[codes[i]];
      const float s = mx::e8m0_to_float(w.scales[r * nb + b]);
      for (std::int64_t j = 0; j < n; ++j) {
        const float* xj = x + j * w.cols + c0;
        float dot = 0;
        for (std::int64_t i = 0; i < len; ++i) dot += vals[i] * xj[i];
        y[j * w.rows + r] += s * dot;
      }
    }
  }
}

}  // namespace

RowsFn scalar_rows() { return rows_scalar; }

int q8_offset(const Decoder& d) { return -*std::min_element(d.nib, d.nib + 16); }

std::int64_t q8_paired_blocks(const Decoder& d, std::int64_t cols, int bs) {
  if (!d.nibble || !d.aligned32 || bs != 32) return 0;
  if (q8_offset(d) + *std::max_element(d.nib, d.nib + 16) > 129) return 0;
  return cols / 32 / 8 * 8;
}

Q8Acts quantize_acts(const float* x, std::int64_t cols, int bs, bool nibble_order, std::int64_t grouped, int group) {
  Q8Acts a;
  const std::int64_t nb = (cols + bs - 1) / bs;
  a.q.assign(static_cast<std::size_t>(nb * bs), 0);
  a.scale.assign(static_cast<std::size_t>(nb), 0.0f);
  a.sum.assign(static_cast<std::size_t>(nb), 0);
  a.grouped = grouped;
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::int64_t c0 = b * bs, len = std::min<std::int64_t>(bs, cols - c0);
    float amax = 0;
    for (std::int64_t i = 0; i < len; ++i) amax = std::max(amax, std::fabs(x[c0 + i]));
    const float s = amax / 127.0f;
    a.scale[b] = s;
    if (s == 0 || !std::isfinite(s)) continue;
    const float inv = 1.0f / s;
    // Natural order first (a loop the compiler vectorizes), then into the layout.
    std::int8_t qb[mx::kMaxBlockSize];
    std::int32_t sum = 0;
    for (std::int64_t i = 0; i < len; ++i) {
      // round to nearest even by the 1.5 * 2^23 trick (|x * inv| <= 127 here): what
      // std::nearbyint gives in the default rounding mode, without a libm call per element
      const float v = (x[c0 + i] * inv + 12582912.0f) - 12582912.0f;
      qb[i] = static_cast<std::int8_t>(std::clamp(v, -127.0f, 127.0f));
      sum += qb[i];
    }
    std::int8_t* dst = a.q.data() + c0;
    if (!(nibble_order && len == 32)) {
      std::copy_n(qb, len, dst);
    } else {
      // [evens | odds]; a grouped block: its group starts (b % group) blocks before it, with the
      // evens of the group's blocks first (16 each), then their odds
      const std::int64_t k = b % group;
      std::int8_t* ev = b < grouped ? dst - k * 32 + k * 16 : dst;
      std::int8_t* od = b < grouped ? dst - k * 32 + group * 16 + k * 16 : dst + 16;
      for (int t = 0; t < 16; ++t) {
        ev[t] = qb[2 * t];
        od[t] = qb[2 * t + 1];
      }
    }
    a.sum[b] = sum;
  }
  return a;
}

X512 x512_layout(const Decoder& d) {
  if (!d.aligned32) return X512::None;
  if (d.bits == 4) return X512::Nibble;
  if (d.bits == 8 && d.is_int) return X512::Int8;
  if (d.half8) return X512::Fp8;
  return X512::None;
}

const float* prepare_x512(const Decoder& d, const float* x, std::int64_t cols, AlignedVec<float>& xp) {
  const std::int64_t full = cols / 32;
  if (x512_layout(d) == X512::Int8) return x;  // read as it is
  xp.resize(static_cast<std::size_t>(full * 32));
  switch (x512_layout(d)) {
    case X512::Nibble:
      for (std::int64_t b = 0; b < full; ++b) {
        float* o = xp.data() + b * 32;
        const float* in = x + b * 32;
        for (int i = 0; i < 16; ++i) {
          o[i] = in[2 * i];
          o[16 + i] = in[2 * i + 1];
        }
      }
      return xp.data();
    case X512::Fp8: {
      const float k = std::ldexp(1.0f, 15 - d.bias);
      float amax = 0;  // of the finite inputs: is one of them too large to scale?
      for (std::int64_t i = 0; i < full * 32; ++i) amax = std::max(amax, std::isfinite(x[i]) ? std::fabs(x[i]) : 0.0f);
      if (std::isinf(amax * k)) return nullptr;
      for (std::int64_t i = 0; i < full * 32; ++i) xp[static_cast<std::size_t>(i)] = x[i] * k;
      return xp.data();
    }
    case X512::Int8:
    case X512::None: break;
  }
  return nullptr;
}

bool fx_supported(const Decoder& d) { return d.aligned32 && d.bits == 4 && d.nibble; }

FxParams fx_params(const Decoder& d, int digits) {
  int m = 1;  // the block's dot: 32 * max|nib| * Xmax < 2^31
  for (const std::int8_t v : d.nib) m = std::max(m, std::abs(static_cast<int>(v)));
  const std::int32_t range = digits == 2 ? 127 * (1 + 256) : 127 * (1 + 256 + 65536);
  FxParams p;
  p.xmax = std::min<std::int32_t>(range, std::numeric_limits<std::int32_t>::max() / (32 * m));
  p.k = std::ilogb(static_cast<double>(p.xmax)) - 1;
  return p;
}

namespace {
std::atomic<int> g_digits{3};  // the process default of the Isa overloads
}  // namespace

int fx_digits() { return g_digits.load(); }

void set_fx_digits(int digits) {
  if (digits != 2 && digits != 3) throw std::invalid_argument("fixed-point digits: 2 or 3, not " + std::to_string(digits));
  g_digits = digits;
}

bool q8_ints(const Decoder& d, std::int8_t* table, float* mul) {
  if (d.nibble) {
    std::copy_n(d.nib, 16, table);
    *mul = d.nib_mul;
    return true;
  }
  if (d.is_int && d.bits == 8) {
    for (int c = 0; c < 256; ++c) table[c] = static_cast<std::int8_t>(static_cast<std::uint8_t>(c));
    *mul = d.int_mul;
    return true;
  }
  return false;
}

namespace {

// Reference: exact int32 dot per block, then float(dot) * (s_w * mul * s_x) added in block order.
void q8_rows_scalar(const Decoder& d, const MxView& w, const Q8Acts& a, float* y, std::int64_t r0, std::int64_t r1) {
  const mx::Format& f = *w.format;
  const std::int64_t nb = f.blocks_per_row(w.cols), bs = f.block_size;
  const std::int64_t rb = static_cast<std::int64_t>(f.packed_row_bytes(w.cols));
  std::int8_t table[256];
  float mul = 1;
  q8_ints(d, table, &mul);
  std::uint8_t codes[mx::kMaxBlockSize];
  for (std::int64_t r = r0; r < r1; ++r) {
    float sum = 0;
    for (std::int64_t b = 0; b < nb; ++b) {
      const std::int64_t c0 = b * bs, len = std::min(bs, w.cols - c0);
      mx::detail::unpack_codes_at(w.elements + r * rb, c0 * f.bits, len, f.bits, codes);
      std::int32_t dot = 0;
      for (std::int64_t i = 0; i < len; ++i) dot += table[codes[i]] * a.q[c0 + i];
      sum += static_cast<float>(dot) * (mx::e8m0_to_float(w.scales[r * nb + b]) * mul * a.scale[b]);
    }
    y[r] = sum;
  }
}

}  // namespace

Q8RowsFn scalar_q8_rows() { return q8_rows_scalar; }

#if !MFQAT_HAVE_AVX2
Q8RowsFn avx2_q8_rows() { return nullptr; }
bool cpu_avx512() { return false; }
bool cpu_vbmi() { return false; }
bool avx512_active() { return false; }
void set_avx512(bool) {}
Gemv512Fn avx512_gemv_rows() { return nullptr; }
Q8RowsFn avx512_q8_rows() { return nullptr; }
RowsFn avx512_gemm_rows() { return nullptr; }
FxPrepareFn avx512_fx_prepare() { return nullptr; }
FxPrepareDigitsFn avx512_fx_prepare_digits() { return nullptr; }
FxRowsFn avx512_fx_rows() { return nullptr; }
FxRowsFn avx512_fx_rows(bool) { return nullptr; }
bool fixed_point_acts() { return false; }
void set_fixed_point_acts(bool) {}
bool vbmi_active() { return false; }
void set_vbmi(bool) {}
RowsFn avx2_rows() { return nullptr; }
DecodeRowFn avx2_decode_row() { return nullptr; }
#endif

}  // namespace detail

MxView view(const mx::PackedMatrix& m) { return {&m.format, m.elements.data(), m.scales.data(), m.rows, m.cols}; }

namespace {

const detail::Decoder& decoder_for(const mx::Format& f) {
  // A few formats per process; keep each decoder (its 1 KiB table) once.
  static std::mutex mu;
  static std::vector<std::pair<std::string, std::unique_ptr<detail::Decoder>>> cache;
  const std::string key = f.name + "/" + std::to_string(f.block_size);
  std::lock_guard<std::mutex> lk(mu);
  for (const auto& [k, d] : cache) {
    if (k == key) return *d;
  }
  cache.emplace_back(key, std::make_unique<detail::Decoder>(detail::Decoder::make(f)));
  return *cache.back().second;
}

// Rows [r0, r1) of the m matrices taken as one (their rows one after another): calls
// part(i, local r0, local r1) for each matrix i the range meets.
template <class F>
void over_parts(const MxView* ws, int m, std::int64_t r0, std::int64_t r1, F&& part) {
  std::int64_t base = 0;
  for (int i = 0; i < m && base < r1; ++i) {
    const std::int64_t lo = std::max(r0, base), hi = std::min(r1, base + ws[i].rows);
    if (lo < hi) part(i, lo - base, hi - base);
    base += ws[i].rows;
  }
}

// Y_i = X W_i^T for m matrices of one format and width that share X (n rows), in one parallel
// region over all their rows; the activations are prepared once for all of them.
// The ISA that Auto stands for: the best the CPU has (not the environment: see KernelOptions).
mx::Isa resolve_isa(mx::Isa isa) {
  if (isa != mx::Isa::Auto) return isa;
  return mx::isa_supported(mx::Isa::Avx2) && detail::avx2_rows() ? mx::Isa::Avx2 : mx::Isa::Scalar;
}

// Which of the SIMD loops the options select here.
struct Paths {
  mx::Isa isa = mx::Isa::Scalar;
  bool w512 = false, fixed = false, vbmi = false;
};
Paths paths(const KernelOptions& k) {
  Paths p;
  p.isa = resolve_isa(k.isa);
  p.w512 = p.isa == mx::Isa::Avx2 && k.avx512 && detail::cpu_avx512() && detail::avx512_gemv_rows() != nullptr;
  p.fixed = p.w512 && k.fixed_point;
  p.vbmi = p.fixed && k.vbmi && detail::cpu_vbmi();
  return p;
}

void run(const MxView* ws, float* const* ys, int m, const float* x, std::int64_t n, const KernelOptions& k) {
  if (m < 1) throw std::invalid_argument("gemv: no matrices");
  std::int64_t total = 0;
  for (int i = 0; i < m; ++i) {
    const MxView& w = ws[i];
    if (!w.format || w.rows < 0 || w.cols < 0) throw std::invalid_argument("gemv: bad matrix view");
    if (w.cols != ws[0].cols || w.format->name != ws[0].format->name || w.format->block_size != ws[0].format->block_size) {
      throw std::invalid_argument("gemv: matrices that share x need one format and one width (" + w.format->name + " " + std::to_string(w.cols) +
                                  " vs " + ws[0].format->name + " " + std::to_string(ws[0].cols) + ")");
    }
    total += w.rows;
  }
  const std::int64_t cols = ws[0].cols;
  const detail::Decoder& d = decoder_for(*ws[0].format);
  const Paths p = paths(k);
  const mx::Isa isa = p.isa;
  detail::RowsFn fn = detail::scalar_rows();
  if (isa == mx::Isa::Avx2) {
    if (!mx::isa_supported(mx::Isa::Avx2) || !detail::avx2_rows()) throw std::invalid_argument("gemv: AVX2 is not available here");
    fn = detail::avx2_rows();
  }
  // Rows per task: enough work (~64K weights) to amortise the hand-off.
  const std::int64_t grain = std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, cols * n));
  if (n == 1 && p.fixed && detail::fx_supported(d)) {
    thread_local detail::FxActs fx;  // the calling thread's; passed by pointer (see below)
    if (detail::avx512_fx_prepare_digits()(d, x, cols, fx, k.fx_digits)) {
      const detail::FxActs* a = &fx;
      const detail::FxRowsFn rows = detail::avx512_fx_rows(p.vbmi);
      parallel_for(total, grain, [&](std::int64_t r0, std::int64_t r1) {
        over_parts(ws, m, r0, r1, [&](int i, std::int64_t lo, std::int64_t hi) { rows(d, ws[i], *a, x, ys[i], lo, hi); });
      });
      return;
    }
  }
  if (n == 1 && p.w512 && detail::x512_layout(d) != detail::X512::None) {
    thread_local detail::AlignedVec<float> xp;  // the calling thread's buffer
    // by pointer: inside the lambda `xp` would name each pool thread's own (empty) buffer
    if (const float* xpp = detail::prepare_x512(d, x, cols, xp)) {
      const detail::Gemv512Fn f512 = detail::avx512_gemv_rows();
      parallel_for(total, grain, [&](std::int64_t r0, std::int64_t r1) {
        over_parts(ws, m, r0, r1, [&](int i, std::int64_t lo, std::int64_t hi) { f512(d, ws[i], xpp, x, ys[i], lo, hi); });
      });
      return;
    }
  }
  if (n > 1 && p.w512) fn = detail::avx512_gemm_rows();
  parallel_for(total, grain, [&](std::int64_t r0, std::int64_t r1) {
    over_parts(ws, m, r0, r1, [&](int i, std::int64_t lo, std::int64_t hi) { fn(d, ws[i], x, n, ys[i], lo, hi); });
  });
}

}  // namespace

KernelOptions KernelOptions::process_defaults(mx::Isa isa) {
  KernelOptions k;
  k.isa = isa == mx::Isa::Auto ? mx::default_isa() : isa;  // MFQAT_ISA: the mx library's switch, for these overloads only
  k.avx512 = detail::avx512_active();
  k.fixed_point = detail::fixed_point_acts();
  k.fx_digits = detail::fx_digits();
  k.vbmi = detail::vbmi_active();
  return k;
}

void KernelOptions::validate() const {
  if (fx_digits != 2 && fx_digits != 3) throw std::invalid_argument("fixed-point digits: 2 or 3, not " + std::to_string(fx_digits));
  if (isa == mx::Isa::Avx2 && !(mx::isa_supported(mx::Isa::Avx2) && detail::avx2_rows())) {
    throw std::invalid_argument("kernels: AVX2 is not available on this CPU");
  }
}

std::string KernelOptions::describe() const {
  const Paths p = paths(*this);
  if (p.isa == mx::Isa::Scalar) return int8_acts ? "scalar, int8 activations" : "scalar";
  std::string s = p.w512 ? (p.vbmi ? "avx512+vbmi" : "avx512") : "avx2";
  if (int8_acts) return s + ", int8 activations";
  if (p.fixed) s += ", 4-bit fixed point " + std::to_string(fx_digits) + " digits";
  return s;
}

void gemv(const MxView& w, const float* x, float* y, mx::Isa isa) { gemv(w, x, y, KernelOptions::process_defaults(isa)); }
void gemv(const MxView& w, const float* x, float* y, const KernelOptions& k) { run(&w, &y, 1, x, 1, k); }

void gemv_shared(std::span<const MxView> ws, const float* x, std::span<float* const> ys, mx::Isa isa) {
  gemv_shared(ws, x, ys, KernelOptions::process_defaults(isa));
}
void gemv_shared(std::span<const MxView> ws, const float* x, std::span<float* const> ys, const KernelOptions& k) {
  if (ws.size() != ys.size()) throw std::invalid_argument("gemv_shared: " + std::to_string(ws.size()) + " matrices but " + std::to_string(ys.size()) + " outputs");
  run(ws.data(), ys.data(), static_cast<int>(ws.size()), x, 1, k);
}

bool q8_supported(const mx::Format& f) {
  std::int8_t t[256];
  float m;
  return detail::q8_ints(decoder_for(f), t, &m);
}

void gemv_q8(const MxView& w, const float* x, float* y, mx::Isa isa) { gemv_q8(w, x, y, KernelOptions::process_defaults(isa)); }
void gemv_q8(const MxView& w, const float* x, float* y, const KernelOptions& k) {
  if (!w.format) throw std::invalid_argument("gemv_q8: bad matrix view");
  const detail::Decoder& d = decoder_for(*w.format);
  if (!q8_supported(*w.format)) throw std::invalid_argument("gemv_q8: no int8 path for " + w.format->name);
  const Paths p = paths(k);
  const mx::Isa isa = p.isa;
  detail::Q8RowsFn fn = detail::scalar_q8_rows();
  bool nibble_order = false;
  std::int64_t grouped = 0;  // blocks stored in groups of `group` (see quantize_acts)
  int group = 2;
  if (isa == mx::Isa::Avx2) {
    if (!mx::isa_supported(mx::Isa::Avx2) || !detail::avx2_q8_rows()) throw std::invalid_argument("gemv_q8: AVX2 is not available here");
    nibble_order = d.nibble && d.aligned32;
    if (p.w512 && d.aligned32) {  // groups of 4 blocks, any 4-bit table
      fn = detail::avx512_q8_rows();
      group = 4;
      grouped = w.cols / 32 / 4 * 4;
    } else {  // pairs, where the table cannot saturate vpmaddubsw
      fn = detail::avx2_q8_rows();
      grouped = detail::q8_paired_blocks(d, w.cols, w.format->block_size);
    }
  }
  const detail::Q8Acts a = detail::quantize_acts(x, w.cols, w.format->block_size, nibble_order, grouped, group);
  const std::int64_t grain = std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, w.cols));
  parallel_for(w.rows, grain, [&](std::int64_t r0, std::int64_t r1) { fn(d, w, a, y, r0, r1); });
}
void gemm(const MxView& w, const float* x, std::int64_t n, float* y, mx::Isa isa) { gemm(w, x, n, y, KernelOptions::process_defaults(isa)); }
void gemm(const MxView& w, const float* x, std::int64_t n, float* y, const KernelOptions& k) { run(&w, &y, 1, x, n, k); }
bool avx512_active() { return detail::avx512_active(); }
void set_avx512(bool allowed) { detail::set_avx512(allowed); }
bool fixed_point_acts() { return detail::fixed_point_acts(); }
void set_fixed_point_acts(bool allowed) { detail::set_fixed_point_acts(allowed); }
int fx_digits() { return detail::fx_digits(); }
void set_fx_digits(int digits) { detail::set_fx_digits(digits); }
bool vbmi_active() { return detail::vbmi_active(); }
void set_vbmi(bool allowed) { detail::set_vbmi(allowed); }

// OpenBLAS runs single-threaded inside each part of the mfqat pool. Its own worker threads spin
// (sched_yield) for a long while after every multi-threaded call; on a machine with as many
// threads as cores they then take a core from the next MX GEMV's pool thread (decode, where the
// fp32 head runs once per token: MX decode 25-45 % slower). The caller's OpenBLAS thread count
// (libtorch's matmuls may use it) is restored after the call.
namespace {
template <class F>
void openblas_on_pool(std::int64_t rows, std::int64_t grain, F&& part) {
  const int prev = openblas_get_num_threads();
  if (prev != 1) openblas_set_num_threads(1);
  parallel_for(rows, grain, part);
  if (prev != 1) openblas_set_num_threads(prev);
}
}  // namespace

void gemv_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, float* y) {
  openblas_on_pool(rows, std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, cols)), [&](std::int64_t r0, std::int64_t r1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(r1 - r0), static_cast<int>(cols), 1.0f, w + r0 * cols, static_cast<int>(cols),
                x, 1, 0.0f, y + r0, 1);
  });
}

void gemm_f32(const float* w, std::int64_t rows, std::int64_t cols, const float* x, std::int64_t n, float* y) {
  // Y [n, rows] = X [n, cols] * W^T, the columns of Y (rows of W) split over the pool
  openblas_on_pool(rows, std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, cols * n)), [&](std::int64_t r0, std::int64_t r1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(r1 - r0), static_cast<int>(cols), 1.0f, x,
                static_cast<int>(cols), w + r0 * cols, static_cast<int>(cols), 0.0f, y + r0, static_cast<int>(rows));
  });
}

}  // namespace mfqat::runtime

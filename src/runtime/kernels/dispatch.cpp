// The dispatch of the fused MX products: which loops KernelOptions select on this CPU (paths()),
// one decoder per format, and the public entry points (gemv, gemv_shared, gemm, gemv_q8), which
// prepare the activations once and spread the rows over the thread pool. The loops themselves:
// reference.cpp (scalar), gemv_avx2.cpp, gemv_avx512.cpp.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gemm_internal.h"
#include "gemv_internal.h"
#include "mfqat/mx/parallel.h"

namespace mfqat::runtime {

namespace detail {

// Where the ISA files are not compiled in (not x86-64): no SIMD loop, the process switches off.
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
GemmQ8Fn avx512_gemm_q8() { return nullptr; }
GemmQ8Fn avx512_gemm_q8_vbmi() { return nullptr; }
GemmQ8Fn avx2_gemm_q8() { return nullptr; }
GemmQ8PanelsFn avx512_gemm_q8_panels() { return nullptr; }
GemmBf16Fn avx512_gemm_bf16() { return nullptr; }
Bf16PrepareFn avx512_bf16_prepare() { return nullptr; }
RepackQ8Fn avx512_repack_q8() { return nullptr; }
#endif

}  // namespace detail

namespace {

// What a kernel derives from a format (its Decoder, its IntCodes), made once per format and
// block size and kept: a few formats per process, each a table of at most a few KiB.
template <class T>
const T& cached_for(const mx::Format& f) {
  static std::mutex mu;
  static std::vector<std::pair<std::string, std::unique_ptr<T>>> cache;
  const std::string key = f.name + "/" + std::to_string(f.block_size);
  std::lock_guard<std::mutex> lk(mu);
  for (const auto& [k, v] : cache) {
    if (k == key) return *v;
  }
  cache.emplace_back(key, std::make_unique<T>(T::make(f)));
  return *cache.back().second;
}
const detail::Decoder& decoder_for(const mx::Format& f) { return cached_for<detail::Decoder>(f); }
const detail::IntCodes& int_codes_for(const mx::Format& f) { return cached_for<detail::IntCodes>(f); }

// The rows of m matrices that share one x (one format, block size and width), checked; `what`
// names the caller in the message.
std::int64_t shared_rows(const MxView* ws, int m, const char* what) {
  if (m < 1) throw std::invalid_argument(std::string(what) + ": no matrices");
  std::int64_t total = 0;
  for (int i = 0; i < m; ++i) {
    const MxView& w = ws[i];
    if (!w.format || w.rows < 0 || w.cols < 0) throw std::invalid_argument(std::string(what) + ": bad matrix view");
    if (w.cols != ws[0].cols || w.format->name != ws[0].format->name || w.format->block_size != ws[0].format->block_size) {
      throw std::invalid_argument(std::string(what) + ": matrices that share x need one format and one width (" + w.format->name + " " +
                                  std::to_string(w.cols) + " vs " + ws[0].format->name + " " + std::to_string(ws[0].cols) + ")");
    }
    total += w.rows;
  }
  return total;
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

// Y_i = X W_i^T for m matrices of one format and width that share X (n rows), in one parallel
// region over all their rows; the activations are prepared once for all of them.
void run(const MxView* ws, float* const* ys, int m, const float* x, std::int64_t n, const KernelOptions& k) {
  const std::int64_t total = shared_rows(ws, m, "gemv");
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

// Whether panels pk were made from w (its shape and format); throws naming the mismatch.
void check_panels(const Q8Panels& pk, const MxView& w) {
  if (pk.rows != w.rows || pk.cols != w.cols || pk.format != w.format->name) {
    throw std::invalid_argument("gemm_q8: panels of a " + std::to_string(pk.rows) + " x " + std::to_string(pk.cols) + " " + pk.format +
                                " matrix given for a " + std::to_string(w.rows) + " x " + std::to_string(w.cols) + " " + w.format->name + " one");
  }
}

// Panels [p0, p1) of the m matrices taken as one (each matrix's panels one after another, a
// matrix's last panel possibly partial): calls part(i, local p0, local p1) for each matrix met.
template <class F>
void over_panels(const MxView* ws, int m, std::int64_t p0, std::int64_t p1, F&& part) {
  std::int64_t base = 0;
  for (int i = 0; i < m && base < p1; ++i) {
    const std::int64_t np = (ws[i].rows + detail::kPanelRows - 1) / detail::kPanelRows;
    const std::int64_t lo = std::max(p0, base), hi = std::min(p1, base + np);
    if (lo < hi) part(i, lo - base, hi - base);
    base += np;
  }
}

// gemm_q8 of m matrices sharing X (checked like run()); pks: each matrix's repacked panels or
// nullptr (all nullptr when pks is).
void run_q8(const MxView* ws, const Q8Panels* const* pks, float* const* ys, int m, const float* x, std::int64_t n, const KernelOptions& k) {
  if (n < 0) throw std::invalid_argument("gemm_q8: negative row count");
  const std::int64_t total = shared_rows(ws, m, "gemm_q8");
  const detail::IntCodes& ic = int_codes_for(*ws[0].format);
  if (!ic.ok) throw std::invalid_argument("gemm_q8: no integer codes for " + ws[0].format->name + " (block size " + std::to_string(ws[0].format->block_size) + ")");
  if (n == 0) return;
  const Paths p = paths(k);
  detail::GemmQ8Fn fn = detail::scalar_gemm_q8();
  if (p.w512 && k.vbmi && detail::avx512_gemm_q8_vbmi()) {
    fn = detail::avx512_gemm_q8_vbmi();
  } else if (p.w512 && detail::avx512_gemm_q8()) {
    fn = detail::avx512_gemm_q8();
  } else if (p.isa == mx::Isa::Avx2 && ic.fits_maddubs && detail::avx2_gemm_q8()) {
    fn = detail::avx2_gemm_q8();
  }
  thread_local detail::Q8Rows a;  // the calling thread's; reached through a pointer below
  detail::quantize_rows(x, n, ws[0].cols, ic.off, a);
  const detail::Q8Rows* ap = &a;
  if (ws[0].cols == 0) {
    for (int i = 0; i < m; ++i) std::fill_n(ys[i], n * ws[i].rows, 0.0f);
    return;
  }
  // Repacked panels, where the 512-bit kernel runs and every matrix has them: parts of whole
  // panels, at least ~64K multiply-adds each.
  bool panels = pks && (fn == detail::avx512_gemm_q8() || fn == detail::avx512_gemm_q8_vbmi()) && detail::avx512_gemm_q8_panels();
  for (int i = 0; i < m && panels; ++i) {
    panels = pks[i] != nullptr;
    if (panels) check_panels(*pks[i], ws[i]);
  }
  if (panels) {
    std::int64_t np = 0;
    for (int i = 0; i < m; ++i) np += (ws[i].rows + detail::kPanelRows - 1) / detail::kPanelRows;
    const detail::GemmQ8PanelsFn pf = detail::avx512_gemm_q8_panels();
    const std::int64_t pgrain = std::max<std::int64_t>(1, (1 << 16) / std::max<std::int64_t>(1, detail::kPanelRows * ws[0].cols * n));
    parallel_for(np, pgrain, [&](std::int64_t p0, std::int64_t p1) {
      over_panels(ws, m, p0, p1, [&](int i, std::int64_t lo, std::int64_t hi) { pf(*pks[i], *ap, ys[i], lo, hi); });
    });
    return;
  }
  // 16-row panels; at least ~64K multiply-adds per part
  const std::int64_t grain = std::max<std::int64_t>(16, ((1 << 16) / std::max<std::int64_t>(1, ws[0].cols * n) + 15) / 16 * 16);
  parallel_for(total, grain, [&](std::int64_t r0, std::int64_t r1) {
    over_parts(ws, m, r0, r1, [&](int i, std::int64_t lo, std::int64_t hi) { fn(ic, ws[i], *ap, ys[i], lo, hi); });
  });
}

}  // namespace

bool gemm_q8_supported(const mx::Format& f) { return int_codes_for(f).ok; }
bool gemm_q8_active(const mx::Format& f, const KernelOptions& k) {
  if (!k.int8_gemm || !gemm_q8_supported(f)) return false;
  const Paths p = paths(k);
  if (p.w512 && detail::avx512_gemm_q8()) return true;
  return p.isa == mx::Isa::Avx2 && int_codes_for(f).fits_maddubs && detail::avx2_gemm_q8();
}
void gemm_q8(const MxView& w, const float* x, std::int64_t n, float* y, const KernelOptions& k) { run_q8(&w, nullptr, &y, 1, x, n, k); }
void gemm_q8_shared(std::span<const MxView> ws, const float* x, std::int64_t n, std::span<float* const> ys, const KernelOptions& k) {
  if (ws.size() != ys.size()) throw std::invalid_argument("gemm_q8_shared: " + std::to_string(ws.size()) + " matrices but " + std::to_string(ys.size()) + " outputs");
  run_q8(ws.data(), nullptr, ys.data(), static_cast<int>(ws.size()), x, n, k);
}
void gemm_q8(const MxView& w, const Q8Panels* panels, const float* x, std::int64_t n, float* y, const KernelOptions& k) {
  run_q8(&w, panels ? &panels : nullptr, &y, 1, x, n, k);
}
void gemm_q8_shared(std::span<const MxView> ws, std::span<const Q8Panels* const> panels, const float* x, std::int64_t n,
                    std::span<float* const> ys, const KernelOptions& k) {
  if (ws.size() != ys.size() || ws.size() != panels.size()) {
    throw std::invalid_argument("gemm_q8_shared: " + std::to_string(ws.size()) + " matrices, " + std::to_string(panels.size()) + " panel sets, " +
                                std::to_string(ys.size()) + " outputs");
  }
  run_q8(ws.data(), panels.data(), ys.data(), static_cast<int>(ws.size()), x, n, k);
}

std::shared_ptr<const Q8Panels> repack_q8(const MxView& w, const KernelOptions& k) {
  if (!w.format || w.rows < 0 || w.cols < 0) throw std::invalid_argument("repack_q8: bad matrix view");
  const Paths p = paths(k);
  if (!k.int8_gemm || !p.w512 || !detail::avx512_gemm_q8() || !detail::avx512_repack_q8()) return nullptr;
  const detail::IntCodes& ic = int_codes_for(*w.format);
  if (!ic.ok || w.rows == 0 || w.cols == 0) return nullptr;
  auto pk = std::make_shared<Q8Panels>();
  pk->format = w.format->name;
  pk->rows = w.rows;
  pk->cols = w.cols;
  const std::int64_t np = (w.rows + detail::kPanelRows - 1) / detail::kPanelRows;
  pk->nb = (w.cols + 31) / 32;
  pk->nkp = (pk->nb + detail::kPanelBlocks - 1) / detail::kPanelBlocks;
  // 4-bit codes stay at 4 bits where every byte a panel can hold (the codes' integers + off, and
  // off for padding) is some code's: the formats with a zero code, i.e. all of them here
  if (ic.kind == detail::IntCodes::Kind::Nibble) {
    bool zero = false;
    for (int c = 0; c < 16; ++c) {
      pk->lut[c] = static_cast<std::uint8_t>(ic.ints[c] + ic.off);
      zero = zero || ic.ints[c] == 0;
    }
    pk->nibble = zero;
  }
  pk->block_bytes = pk->nibble ? 256 : 512;
  pk->bytes.resize(static_cast<std::size_t>(np * pk->nb * (pk->block_bytes + 64)));
  const detail::RepackQ8Fn fill = detail::avx512_repack_q8();
  const bool vbmi = k.vbmi && detail::avx512_gemm_q8_vbmi();
  parallel_for(np, 4, [&](std::int64_t p0, std::int64_t p1) { fill(ic, w, *pk, p0, p1, vbmi); });
  return pk;
}
std::uint64_t panel_bytes(const Q8Panels& p) { return p.bytes.size(); }

bool gemm_bf16_supported(const mx::Format& f) {
  return f.family == mx::Family::Fp && f.block_size == 32 && f.bits <= 8 && !int_codes_for(f).ok;
}
bool gemm_bf16_active(const mx::Format& f, const KernelOptions& k) {
  return k.bf16_gemm && gemm_bf16_supported(f) && paths(k).w512 && detail::avx512_gemm_bf16() != nullptr;
}
void gemm_bf16(const MxView& w, const float* x, std::int64_t n, float* y, const KernelOptions& k) {
  if (!w.format || w.rows < 0 || w.cols < 0 || n < 0) throw std::invalid_argument("gemm_bf16: bad matrix view or row count");
  if (!gemm_bf16_active(*w.format, k)) throw std::invalid_argument("gemm_bf16: not available for " + w.format->name + " with these kernels on this CPU");
  if (n == 0) return;
  if (w.cols == 0) {
    std::fill_n(y, n * w.rows, 0.0f);
    return;
  }
  const detail::Decoder& d = decoder_for(*w.format);
  thread_local detail::Bf16Rows a;  // the calling thread's; reached through a pointer below
  detail::avx512_bf16_prepare()(x, n, w.cols, a);
  const detail::Bf16Rows* ap = &a;
  const detail::GemmBf16Fn fn = detail::avx512_gemm_bf16();
  const std::int64_t grain = std::max<std::int64_t>(16, ((1 << 16) / std::max<std::int64_t>(1, w.cols * n) + 15) / 16 * 16);
  parallel_for(w.rows, grain, [&](std::int64_t r0, std::int64_t r1) { fn(d, w, *ap, y, r0, r1); });
  for (std::int64_t j = 0; j < n; ++j) {
    if (a.bad[static_cast<std::size_t>(j)]) std::fill_n(y + j * w.rows, w.rows, std::numeric_limits<float>::quiet_NaN());
  }
}

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
  if (ubatch < 1) throw std::invalid_argument("ubatch: at least 1 token, not " + std::to_string(ubatch));
  if (isa == mx::Isa::Avx2 && !(mx::isa_supported(mx::Isa::Avx2) && detail::avx2_rows())) {
    throw std::invalid_argument("kernels: AVX2 is not available on this CPU");
  }
}

std::string KernelOptions::describe() const {
  const Paths p = paths(*this);
  if (p.isa == mx::Isa::Scalar) return int8_acts ? "scalar, int8 activations" : "scalar";
  std::string s = p.w512 ? (p.vbmi ? "avx512+vbmi" : "avx512") : "avx2";
  if (int8_acts) s += ", int8 activations";
  else if (p.fixed) s += ", 4-bit fixed point " + std::to_string(fx_digits) + " digits";
  if (int8_gemm && p.w512 && detail::avx512_gemm_q8()) s += repack ? ", int8 gemm, repacked" : ", int8 gemm";
  if (bf16_gemm && p.w512 && detail::avx512_gemm_bf16()) s += ", bf16 gemm";
  else if (int8_gemm && detail::avx2_gemm_q8()) s += ", int8 gemm (not mxint8)";
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

}  // namespace mfqat::runtime

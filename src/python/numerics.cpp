// mfqat._core, part 1: the MX numerics for Python. Formats, packed MX tensors, quantize /
// dequantize / fake-quant (the mx core's kernels, read in place from numpy memory), Slice-and-Scale,
// and safetensors files with MX tensors (the CLI's reader and writer). Every long call releases the
// GIL. Errors: mfqat.Error (a ValueError) with the library's one-line message, the one the CLI
// prints after "mfqat: error: "; TypeError for an argument of the wrong type or dtype.
#include <random>
#include <stdexcept>

#include "bind.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/convert/slice.h"

namespace mfqat::python {

namespace {

using npy = py::detail::npy_api;

int array_flags(const py::array& a) { return py::detail::array_proxy(a.ptr())->flags; }

std::string type_name(const py::handle& obj) { return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>(); }

py::array as_array(const py::handle& obj, const std::string& what) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(what + ": expected a numpy array or a CPU torch tensor, got " + type_name(obj));
  }
  return py::reinterpret_borrow<py::array>(obj);
}

std::vector<std::int64_t> shape_of(const py::array& a) {
  std::vector<std::int64_t> s(static_cast<std::size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s[static_cast<std::size_t>(i)] = a.shape(i);
  return s;
}

// The layout checks every array argument shares; the words are the CLI's .npy reader's.
void check_layout(const py::array& a, const std::string& what) {
  const int fl = array_flags(a);
  if (!(fl & npy::NPY_ARRAY_C_CONTIGUOUS_)) {
    if (a.ndim() > 1 && (fl & npy::NPY_ARRAY_F_CONTIGUOUS_)) {
      throw std::invalid_argument(what + ": fortran_order arrays are not supported (need C order)");
    }
    throw std::invalid_argument(what + ": non-contiguous arrays are not supported (need C order; np.ascontiguousarray or .contiguous() copies)");
  }
  if (!(fl & npy::NPY_ARRAY_ALIGNED_)) throw std::invalid_argument(what + ": unaligned array (need the dtype's alignment)");
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype().attr("str")).cast<std::string>(); }

}  // namespace

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string o = "(";
  for (std::size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + (s.size() == 1 ? ",)" : ")");
}

F32View f32_view(const py::handle& obj, const std::string& what) {
  const py::array a = as_array(obj, what);
  if (!a.dtype().equal(py::dtype::of<float>())) {
    throw py::type_error(what + ": dtype '" + dtype_str(a) + "' is not float32 little-endian ('<f4')");
  }
  check_layout(a, what);
  if (a.ndim() == 0) throw std::invalid_argument(what + ": a 0-d array; need at least one dimension (blocks run along the last axis)");
  F32View v;
  v.shape = shape_of(a);
  v.cols = v.shape.back();
  v.rows = 1;
  for (std::size_t i = 0; i + 1 < v.shape.size(); ++i) v.rows *= v.shape[i];
  v.data = static_cast<const float*>(a.data());
  return v;
}

template <class T>
T* writable_view(const py::handle& obj, const std::string& what, const std::vector<std::int64_t>& shape) {
  const py::array a = as_array(obj, what);
  if (!a.dtype().equal(py::dtype::of<T>())) {
    throw py::type_error(what + ": dtype '" + dtype_str(a) + "' is not " + (sizeof(T) == 4 ? "float32 little-endian ('<f4')" : "uint8 ('|u1')"));
  }
  check_layout(a, what);
  if (!(array_flags(a) & npy::NPY_ARRAY_WRITEABLE_)) throw std::invalid_argument(what + ": the array is read-only");
  if (shape_of(a) != shape) throw std::invalid_argument(what + ": shape " + shape_text(shape_of(a)) + ", expected " + shape_text(shape));
  return reinterpret_cast<T*>(py::detail::array_proxy(a.ptr())->data);
}
template float* writable_view<float>(const py::handle&, const std::string&, const std::vector<std::int64_t>&);
template std::uint8_t* writable_view<std::uint8_t>(const py::handle&, const std::string&, const std::vector<std::int64_t>&);

mx::Format format_arg(const py::handle& fmt, int block_size) {
  if (py::isinstance<mx::Format>(fmt)) {
    const auto& f = fmt.cast<const mx::Format&>();
    return block_size > 0 ? f.with_block_size(block_size) : f;
  }
  if (!py::isinstance<py::str>(fmt)) throw py::type_error("format: expected a format name or an mfqat.Format, got " + type_name(fmt));
  return mx::find_format(fmt.cast<std::string>(), block_size > 0 ? block_size : mx::kDefaultBlockSize);
}

mx::Rounding rounding_arg(const std::string& r) { return mx::parse_rounding(r); }

namespace {

// A packed MX tensor: the mx core's PackedMatrix (per row a little-endian bit stream of B-bit
// codes, one E8M0 scale byte per block) and the logical shape (leading axes flattened to rows).
struct Packed {
  mx::PackedMatrix m;
  std::vector<std::int64_t> shape;
  mx::Rounding rounding = mx::Rounding::NearestEven;
};

std::shared_ptr<Packed> new_packed(const mx::Format& f, const std::vector<std::int64_t>& shape, std::int64_t rows, std::int64_t cols) {
  auto p = std::make_shared<Packed>();
  p->m.format = f;
  p->m.rows = rows;
  p->m.cols = cols;
  p->m.elements.resize(static_cast<std::size_t>(rows) * f.packed_row_bytes(cols));
  p->m.scales.resize(static_cast<std::size_t>(rows * f.blocks_per_row(cols)));
  p->shape = shape;
  return p;
}

// A read-only numpy view of bytes owned by `owner` (kept alive by the array).
py::array byte_view(const std::uint8_t* data, std::int64_t rows, std::int64_t cols, const py::handle& owner) {
  py::array a(py::dtype::of<std::uint8_t>(), std::vector<py::ssize_t>{rows, cols}, std::vector<py::ssize_t>{cols, 1}, data, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~npy::NPY_ARRAY_WRITEABLE_;
  return a;
}

py::array new_f32(const std::vector<std::int64_t>& shape) { return py::array(py::dtype::of<float>(), std::vector<py::ssize_t>(shape.begin(), shape.end())); }

std::vector<std::int64_t> shape_arg(const py::handle& s) {
  std::vector<std::int64_t> out;
  for (const auto& d : s) out.push_back(d.cast<std::int64_t>());
  return out;
}

std::shared_ptr<Packed> packed_from_arrays(const py::handle& elements, const py::handle& scales, const py::handle& shape_obj,
                                           const py::handle& fmt, int block_size, const std::string& rounding) {
  const mx::Format f = format_arg(fmt, block_size);
  const std::vector<std::int64_t> shape = shape_arg(shape_obj);
  if (shape.empty()) throw std::invalid_argument("shape: need at least one dimension");
  std::int64_t rows = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  for (const auto d : shape) {
    if (d < 0) throw std::invalid_argument("shape " + shape_text(shape) + ": dimensions must not be negative");
  }
  auto p = new_packed(f, shape, rows, shape.back());
  p->rounding = rounding_arg(rounding);
  const std::vector<std::int64_t> es = {rows, static_cast<std::int64_t>(f.packed_row_bytes(shape.back()))},
                                   ss = {rows, f.blocks_per_row(shape.back())};
  for (const auto& [arr, want, what, dst] : {std::tuple{elements, es, "elements", p->m.elements.data()}, std::tuple{scales, ss, "scales", p->m.scales.data()}}) {
    const py::array a = as_array(arr, what);
    if (!a.dtype().equal(py::dtype::of<std::uint8_t>())) throw py::type_error(std::string(what) + ": dtype '" + dtype_str(a) + "' is not uint8 ('|u1')");
    check_layout(a, what);
    if (shape_of(a) != want) {
      throw std::invalid_argument(std::string(what) + " shape " + shape_text(shape_of(a)) + ", expected " + shape_text(want) + " for " + f.name +
                                  " (block size " + std::to_string(f.block_size) + ") of shape " + shape_text(shape));
    }
    std::copy_n(static_cast<const std::uint8_t*>(a.data()), a.size(), dst);
  }
  return p;
}

std::string packed_repr(const Packed& p) {
  return "mfqat.Packed(" + p.m.format.name + ", shape=" + shape_text(p.shape) + ", block_size=" + std::to_string(p.m.format.block_size) +
         ", " + std::to_string(p.m.elements.size() + p.m.scales.size()) + " bytes)";
}

py::dict format_dict(const mx::Format& f) {
  py::dict d;  // the keys and values of `mfqat formats --json`
  d["name"] = f.name;
  d["family"] = f.family_name();
  d["bits"] = f.bits;
  d["ebits"] = f.ebits;
  d["mbits"] = f.mbits;
  d["bias"] = f.bias;
  d["emax"] = f.emax;
  d["emin"] = f.emin;
  d["max_normal"] = f.max_normal;
  d["min_subnormal"] = f.min_subnormal;
  d["max_code"] = f.max_code;
  d["specials"] = f.specials_name();
  d["block_size"] = f.block_size;
  d["packed_bytes_per_block"] = f.packed_bytes_per_block();
  d["bits_per_weight"] = f.bits_per_weight();
  d["builtin"] = f.builtin;
  d["description"] = f.description;
  return d;
}

// safetensors dtypes as numpy dtype strings (BF16 has none: it is widened to float32).
const char* numpy_dtype(ckpt::DType d) {
  switch (d) {
    case ckpt::DType::F64: return "<f8";
    case ckpt::DType::F32: return "<f4";
    case ckpt::DType::F16: return "<f2";
    case ckpt::DType::I64: return "<i8";
    case ckpt::DType::I32: return "<i4";
    case ckpt::DType::I16: return "<i2";
    case ckpt::DType::I8: return "|i1";
    case ckpt::DType::U64: return "<u8";
    case ckpt::DType::U32: return "<u4";
    case ckpt::DType::U16: return "<u2";
    case ckpt::DType::U8: return "|u1";
    case ckpt::DType::BOOL: return "|b1";
    case ckpt::DType::BF16: return nullptr;
  }
  return nullptr;
}

ckpt::DType safetensors_dtype(const py::array& a, const std::string& what) {
  const std::string s = dtype_str(a);
  for (const ckpt::DType d : {ckpt::DType::F64, ckpt::DType::F32, ckpt::DType::F16, ckpt::DType::I64, ckpt::DType::I32, ckpt::DType::I16,
                              ckpt::DType::I8, ckpt::DType::U64, ckpt::DType::U32, ckpt::DType::U16, ckpt::DType::U8, ckpt::DType::BOOL}) {
    if (s == numpy_dtype(d)) return d;
  }
  throw py::type_error(what + ": dtype '" + s + "' has no safetensors dtype (little-endian float, int, uint or bool)");
}

py::dict load_file(const Path& path) {
  std::shared_ptr<const ckpt::SafetensorsFile> file;
  {
    py::gil_scoped_release nogil;
    file = std::make_shared<const ckpt::SafetensorsFile>(ckpt::SafetensorsFile::open(path.string()));
  }
  // Plain tensors are read-only views of the mapping, which lives while any of them does.
  const py::capsule owner(new std::shared_ptr<const ckpt::SafetensorsFile>(file),
                          [](void* p) { delete static_cast<std::shared_ptr<const ckpt::SafetensorsFile>*>(p); });
  py::dict out;
  for (const auto& t : file->tensors()) {
    if (file->is_mx_part(t)) continue;
    const std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
    py::array a;
    if (t.dtype == ckpt::DType::BF16) {
      const auto b = file->data(t);
      a = py::array(py::dtype::of<float>(), shape);
      auto* dst = static_cast<std::uint32_t*>(a.mutable_data());
      for (std::size_t i = 0; i < b.size() / 2; ++i) dst[i] = static_cast<std::uint32_t>(b[2 * i] | (b[2 * i + 1] << 8)) << 16;
    } else {
      a = py::array(py::dtype(numpy_dtype(t.dtype)), shape, {}, file->data(t).data(), owner);
      py::detail::array_proxy(a.ptr())->flags &= ~npy::NPY_ARRAY_WRITEABLE_;
    }
    out[py::str(t.name)] = a;
  }
  for (const auto& mi : file->mx_tensors()) {
    auto p = std::make_shared<Packed>();
    {
      py::gil_scoped_release nogil;
      p->m = file->load_mx(mi);
    }
    p->shape = {mi.rows, mi.cols};
    p->rounding = mi.rounding == "away" ? mx::Rounding::NearestAway : mi.rounding == "stochastic" ? mx::Rounding::Stochastic : mx::Rounding::NearestEven;
    out[py::str(mi.name)] = p;
  }
  return out;
}

void save_file(const Path& path, const py::dict& tensors, const std::map<std::string, std::string>& metadata) {
  ckpt::SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  for (const auto& [key, value] : tensors) {
    if (!py::isinstance<py::str>(key)) throw py::type_error("tensor names must be str, got " + type_name(key));
    const std::string name = key.cast<std::string>();
    if (py::isinstance<Packed>(value)) {
      const Packed& p = value.cast<const Packed&>();
      if (p.shape.size() != 2) throw std::invalid_argument("tensor '" + name + "': an MX tensor in a file is 2-D, this one has shape " + shape_text(p.shape));
      w.add_mx(name, p.m, p.rounding);
      continue;
    }
    const py::array a = as_array(value, "tensor '" + name + "'");
    const ckpt::DType d = safetensors_dtype(a, "tensor '" + name + "'");
    check_layout(a, "tensor '" + name + "'");
    w.add(name, d, shape_of(a), {static_cast<const std::uint8_t*>(a.data()), static_cast<std::size_t>(a.nbytes())});
  }
  py::gil_scoped_release nogil;
  w.write(path.string());
}

}  // namespace

}  // namespace mfqat::python

using namespace mfqat;
using namespace mfqat::python;

PYBIND11_MODULE(_core, m) {
  m.doc() = "mfqat's C++ core: MX numerics, Slice-and-Scale, checkpoints and the engine (see docs/python.md)";

  // Every mfqat error is one line; the CLI prints the same text after "mfqat: error: ".
  static PyObject* error = PyErr_NewException("mfqat.Error", PyExc_ValueError, nullptr);
  m.attr("Error") = py::handle(error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::builtin_exception&) {
      throw;
    } catch (const py::error_already_set&) {
      throw;
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(error, e.what());
    } catch (const std::runtime_error& e) {
      PyErr_SetString(error, e.what());
    }
  });

  py::class_<mx::Format>(m, "Format", "One MX format: a row of the registry (`mfqat formats`) with its block size")
      .def_readonly("name", &mx::Format::name)
      .def_property_readonly("family", &mx::Format::family_name)
      .def_readonly("bits", &mx::Format::bits)
      .def_readonly("ebits", &mx::Format::ebits)
      .def_readonly("mbits", &mx::Format::mbits)
      .def_readonly("bias", &mx::Format::bias)
      .def_readonly("emax", &mx::Format::emax)
      .def_readonly("emin", &mx::Format::emin)
      .def_readonly("max_normal", &mx::Format::max_normal)
      .def_readonly("min_subnormal", &mx::Format::min_subnormal)
      .def_readonly("max_code", &mx::Format::max_code)
      .def_property_readonly("specials", &mx::Format::specials_name)
      .def_readonly("block_size", &mx::Format::block_size)
      .def_readonly("builtin", &mx::Format::builtin)
      .def_readonly("description", &mx::Format::description)
      .def_property_readonly("packed_bytes_per_block", &mx::Format::packed_bytes_per_block)
      .def_property_readonly("bits_per_weight", &mx::Format::bits_per_weight)
      .def("with_block_size", &mx::Format::with_block_size, py::arg("block_size"))
      .def("to_dict", &format_dict, "The fields of `mfqat formats --json`")
      .def("__eq__", [](const mx::Format& a, const py::object& o) -> py::object {
        if (!py::isinstance<mx::Format>(o)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
        const auto& b = o.cast<const mx::Format&>();
        return py::bool_(a.name == b.name && a.block_size == b.block_size);
      })
      .def("__hash__", [](const mx::Format& f) { return py::hash(py::make_tuple(f.name, f.block_size)); })
      .def(py::pickle([](const mx::Format& f) { return py::make_tuple(f.name, f.block_size); },
                      [](const py::tuple& t) { return mx::find_format(t[0].cast<std::string>(), t[1].cast<int>()); }))
      .def("__str__", [](const mx::Format& f) { return f.name; })
      .def("__repr__", [](const mx::Format& f) { return "mfqat.Format('" + f.name + "', block_size=" + std::to_string(f.block_size) + ")"; });

  m.def("formats", [] { return mx::registry(); }, "The built-in formats, in the order `mfqat formats` lists them");
  m.def("format", &format_arg, py::arg("name"), py::arg("block_size") = 0,
        "A format by name: built-in rows, aliases (mxfp8, mxfp6, mxfp4) and generic mxfpB_eEmM");
  m.def("rounding", [](const std::string& r) { return std::string(mx::rounding_name(mx::parse_rounding(r))); }, py::arg("name"),
        "The canonical name of a rounding (even, away, stochastic; the CLI's aliases accepted)");
  m.def("parse_formats", &mx::parse_format_list, py::arg("names"), py::arg("block_size") = mx::kDefaultBlockSize,
        "A comma-separated list; 'int', 'fp' and 'all' name the built-in families (as --formats does)");

  py::class_<Packed, std::shared_ptr<Packed>>(m, "Packed",
                                              "A packed MX tensor: per row, a little-endian bit stream of B-bit element codes, and "
                                              "one E8M0 scale byte per block (docs/checkpoint.md). Immutable.")
      .def(py::init(&packed_from_arrays), py::arg("elements"), py::arg("scales"), py::arg("shape"), py::arg("format"),
           py::arg("block_size") = 0, py::arg("rounding") = "even",
           "From its parts (copied): elements uint8 [rows, ceil(cols*B/8)], scales uint8 [rows, ceil(cols/block)]")
      .def_property_readonly("format", [](const Packed& p) { return p.m.format; })
      .def_property_readonly("block_size", [](const Packed& p) { return p.m.format.block_size; })
      .def_property_readonly("shape", [](const Packed& p) { return py::tuple(py::cast(p.shape)); })
      .def_property_readonly("rounding", [](const Packed& p) { return std::string(mx::rounding_name(p.rounding)); })
      .def_property_readonly("nbytes", [](const Packed& p) { return p.m.elements.size() + p.m.scales.size(); })
      .def_property_readonly("elements", [](const py::object& self) {
        const Packed& p = self.cast<const Packed&>();
        return byte_view(p.m.elements.data(), p.m.rows, static_cast<std::int64_t>(p.m.format.packed_row_bytes(p.m.cols)), self);
      }, "uint8 [rows, ceil(cols*bits/8)]: the packed codes (a read-only view)")
      .def_property_readonly("scales", [](const py::object& self) {
        const Packed& p = self.cast<const Packed&>();
        return byte_view(p.m.scales.data(), p.m.rows, p.m.format.blocks_per_row(p.m.cols), self);
      }, "uint8 [rows, ceil(cols/block_size)]: the E8M0 scale bytes, value 2^(s-127), 0xFF = NaN (a read-only view)")
      .def("codes", [](const Packed& p) {
        py::array_t<std::uint8_t> out(std::vector<py::ssize_t>(p.shape.begin(), p.shape.end()));
        std::uint8_t* dst = out.mutable_data();
        const std::size_t rb = p.m.format.packed_row_bytes(p.m.cols);
        py::gil_scoped_release nogil;
        for (std::int64_t r = 0; r < p.m.rows; ++r) mx::unpack_codes(p.m.elements.data() + r * rb, p.m.cols, p.m.format.bits, dst + r * p.m.cols);
        return out;
      }, "The element codes unpacked, one per byte, in the tensor's shape")
      .def(py::pickle(
          [](const Packed& p) {
            return py::make_tuple(py::bytes(reinterpret_cast<const char*>(p.m.elements.data()), p.m.elements.size()),
                                  py::bytes(reinterpret_cast<const char*>(p.m.scales.data()), p.m.scales.size()), p.shape, p.m.format.name,
                                  p.m.format.block_size, std::string(mx::rounding_name(p.rounding)));
          },
          [](const py::tuple& t) {
            const mx::Format f = mx::find_format(t[3].cast<std::string>(), t[4].cast<int>());
            auto p = new_packed(f, t[2].cast<std::vector<std::int64_t>>(), 0, 0);
            std::int64_t rows = 1;
            for (std::size_t i = 0; i + 1 < p->shape.size(); ++i) rows *= p->shape[i];
            p->m.rows = rows;
            p->m.cols = p->shape.back();
            const auto e = t[0].cast<std::string>(), s = t[1].cast<std::string>();
            if (e.size() != rows * f.packed_row_bytes(p->m.cols) || s.size() != static_cast<std::size_t>(rows * f.blocks_per_row(p->m.cols))) {
              throw std::invalid_argument("Packed: a pickle whose parts do not fit its shape");
            }
            p->m.elements.assign(e.begin(), e.end());
            p->m.scales.assign(s.begin(), s.end());
            p->rounding = rounding_arg(t[5].cast<std::string>());
            return p;
          }))
      .def("__repr__", [](const Packed& p) { return packed_repr(p); });

  m.def("quantize", [](const py::handle& x, const py::handle& fmt, const std::string& rounding, std::uint64_t seed, int block_size) {
    const mx::Format f = format_arg(fmt, block_size);
    mx::QuantOptions q;
    q.rounding = rounding_arg(rounding);
    q.seed = seed;
    const F32View v = f32_view(x, "x");
    auto p = new_packed(f, v.shape, v.rows, v.cols);
    p->rounding = q.rounding;
    if (v.rows > 0 && v.cols > 0) {
      py::gil_scoped_release nogil;
      mx::quantize(f, v.data, v.rows, v.cols, p->m.elements.data(), p->m.scales.data(), q);
    }
    return p;
  }, py::arg("x"), py::arg("format"), py::arg("rounding") = "even", py::arg("seed") = 0, py::arg("block_size") = 0);

  m.def("dequantize", [](const Packed& p, const py::object& out) {
    py::object o = out.is_none() ? py::object(new_f32(p.shape)) : out;
    float* dst = writable_view<float>(o, "out", p.shape);
    if (p.m.rows > 0 && p.m.cols > 0) {
      py::gil_scoped_release nogil;
      mx::dequantize(p.m.format, p.m.elements.data(), p.m.scales.data(), p.m.rows, p.m.cols, dst);
    }
    return o;
  }, py::arg("packed"), py::arg("out") = py::none());

  m.def("fake_quant", [](const py::handle& x, const py::handle& fmt, const std::string& rounding, std::uint64_t seed, int block_size,
                         const py::object& out, const py::object& saturated) {
    const mx::Format f = format_arg(fmt, block_size);
    mx::QuantOptions q;
    q.rounding = rounding_arg(rounding);
    q.seed = seed;
    const F32View v = f32_view(x, "x");
    py::object o = out.is_none() ? py::object(new_f32(v.shape)) : out;
    float* dst = writable_view<float>(o, "out", v.shape);
    std::uint8_t* sat = saturated.is_none() ? nullptr : writable_view<std::uint8_t>(saturated, "saturated", v.shape);
    if (v.rows > 0 && v.cols > 0) {
      py::gil_scoped_release nogil;
      mx::fake_quantize(f, v.data, v.rows, v.cols, dst, q, sat);
    }
    return o;
  }, py::arg("x"), py::arg("format"), py::arg("rounding") = "even", py::arg("seed") = 0, py::arg("block_size") = 0,
     py::arg("out") = py::none(), py::arg("saturated") = py::none());

  m.def("slice", [](const Packed& p, const py::handle& to, bool via_float) {
    const mx::Format dst = format_arg(to, p.m.format.block_size);
    const std::string why = convert::slice_refusal(p.m.format, dst);
    if (!why.empty() && !via_float) throw std::invalid_argument(why + "; use via_float=True to dequantize and requantize");
    auto out = std::make_shared<Packed>();
    out->shape = p.shape;
    {
      py::gil_scoped_release nogil;
      out->m = why.empty() ? convert::slice(p.m, dst) : convert::via_float(p.m, dst);
    }
    return out;
  }, py::arg("packed"), py::arg("to"), py::arg("via_float") = false);

  m.def("load", &load_file, py::arg("path"),
        "A safetensors file: {name: numpy array (read-only view of the mapping; BF16 widened to float32) or Packed}");
  m.def("metadata", [](const Path& path) {
    py::gil_scoped_release nogil;
    return ckpt::SafetensorsFile::open(path.string()).metadata();
  }, py::arg("path"));
  m.def("save", &save_file, py::arg("path"), py::arg("tensors"), py::arg("metadata") = std::map<std::string, std::string>{},
        "Writes a safetensors file atomically: Packed values as MX tensors, numpy arrays as themselves");

  // The trainer samples its windows with std::uniform_int_distribution over std::mt19937_64; this
  // gives the same draws from the same standard library (to feed a PyTorch loop `mfqat train`'s
  // batches, as the tests do).
  m.def("_std_uniform_draws", [](std::uint64_t seed, std::int64_t lo, std::int64_t hi, std::int64_t n) {
    if (hi < lo || n < 0) throw std::invalid_argument("need lo <= hi and n >= 0");
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<std::int64_t> d(lo, hi);
    std::vector<std::int64_t> out(static_cast<std::size_t>(n));
    for (auto& v : out) v = d(rng);
    return out;
  }, py::arg("seed"), py::arg("lo"), py::arg("hi"), py::arg("n"));

  bind_models(m);
}

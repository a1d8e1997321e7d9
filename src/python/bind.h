// Shared by the two translation units of the extension module mfqat._core: numerics.cpp (formats,
// quantize / dequantize / fake-quant, Slice-and-Scale, safetensors files) and models.cpp (model
// configs, checkpoints, anchor export, the engine). No torch header: tensors arrive as numpy
// arrays (python/mfqat turns CPU torch tensors into zero-copy numpy views).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>  // paths: str or os.PathLike

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "mfqat/mx/quantize.h"

namespace mfqat::python {

namespace py = pybind11;
using Path = std::filesystem::path;

// A float32 input read in place: C-contiguous, aligned, little-endian float32, at least one
// dimension; rows = product of the leading dimensions, cols = the last (blocks run along it).
// Anything else is a TypeError (not an array, another dtype) or an mfqat.Error (ValueError:
// non-contiguous, 0-d) whose message names `what`, worded as the CLI's .npy reader words it.
struct F32View {
  const float* data = nullptr;
  std::int64_t rows = 0, cols = 0;
  std::vector<std::int64_t> shape;
};
F32View f32_view(const py::handle& obj, const std::string& what);

// A writable C-contiguous array of `shape` and dtype T (float32 or uint8) to write into.
template <class T>
T* writable_view(const py::handle& obj, const std::string& what, const std::vector<std::int64_t>& shape);

// "(2, 3)" as Python prints a shape.
std::string shape_text(const std::vector<std::int64_t>& s);

// A format argument: a name (aliases, generic mxfpB_eEmM, case-insensitive) or a Format object;
// block_size 0 keeps the Format's own (a name gets the default, 32).
mx::Format format_arg(const py::handle& fmt, int block_size);

mx::Rounding rounding_arg(const std::string& r);

// models.cpp: model configs, checkpoints, anchor export, the engine.
void bind_models(py::module_& m);

}  // namespace mfqat::python

// Typed access to tokenizer.json with one-line errors: "<origin>: <json path>: <what>".
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "mfqat/hf/tokenizer.h"
#include "text.h"

namespace mfqat::hf::detail {

using json = nlohmann::json;

struct JsonCtx {
  std::string origin;  // the file, in messages

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    throw TokenizerError(origin + ": " + (path.empty() ? "" : path + ": ") + what);
  }
  [[noreturn]] void unsupported(const std::string& path, const std::string& kind, const std::string& type,
                                const std::string& supported) const {
    fail(path, kind + " " + quote(type) + " is not supported (supported: " + supported + ")");
  }

  const json& member(const json& obj, const char* key, const std::string& path) const {
    if (!obj.is_object()) fail(path, "expected an object");
    const auto it = obj.find(key);
    if (it == obj.end()) fail(path, std::string("missing \"") + key + "\"");
    return *it;
  }
  // Absent or null -> nullptr.
  const json* optional(const json& obj, const char* key) const {
    if (!obj.is_object()) return nullptr;
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  std::string string(const json& obj, const char* key, const std::string& path) const {
    const json& v = member(obj, key, path);
    if (!v.is_string()) fail(path + "." + key, "expected a string");
    return v.get<std::string>();
  }
  std::string string_or(const json& obj, const char* key, const std::string& path, const std::string& dflt) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return dflt;
    if (!v->is_string()) fail(path + "." + key, "expected a string");
    return v->get<std::string>();
  }
  bool boolean_or(const json& obj, const char* key, const std::string& path, bool dflt) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return dflt;
    if (!v->is_boolean()) fail(path + "." + key, "expected true or false");
    return v->get<bool>();
  }
  std::int64_t integer_or(const json& obj, const char* key, const std::string& path, std::int64_t dflt, std::int64_t lo,
                          std::int64_t hi) const {
    const json* v = optional(obj, key);
    if (v == nullptr) return dflt;
    if (!v->is_number_integer()) fail(path + "." + key, "expected an integer");
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
      fail(path + "." + key, "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    const auto x = v->get<std::int64_t>();
    if (x < lo || x > hi) fail(path + "." + key, "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  std::string type(const json& obj, const std::string& path) const { return string(obj, "type", path); }
  // Calls f(element, its path) for each element of the array obj[key] (a Sequence's parts).
  template <class F>
  void each(const json& obj, const char* key, const std::string& path, F&& f) const {
    const json& arr = member(obj, key, path);
    if (!arr.is_array()) fail(path + "." + key, "expected an array");
    for (std::size_t i = 0; i < arr.size(); ++i) f(arr[i], path + "." + key + "[" + std::to_string(i) + "]");
  }
};

}  // namespace mfqat::hf::detail

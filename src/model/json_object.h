// Parses a config's JSON text into an object, or throws std::invalid_argument("NAME: why"), one
// line (shared by mfqat's model config and Hugging Face's config.json).
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace mfqat::model::detail {

inline nlohmann::json parse_json_object(const std::string& text, const std::string& name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    std::string w = e.what();
    for (auto& ch : w) ch = ch == '\n' ? ' ' : ch;
    throw std::invalid_argument(name + ": not valid JSON (" + w + ")");
  }
  if (!j.is_object()) throw std::invalid_argument(name + ": config must be a JSON object");
  return j;
}

}  // namespace mfqat::model::detail

// Renders chat templates with mfqat's Jinja subset for tests/chat/chat_template_oracle_test.py.
//   jinja_render CASES.json  ->  stdout: a JSON array, one {"out": text} or {"error": line} per case
// CASES.json: [{"template": source, "context": {...}}, ...] (contexts keep their key order).
#include <fstream>
#include <iostream>
#include <sstream>

#include "mfqat/hf/jinja.h"

int main(int argc, char** argv) {
  using json = nlohmann::ordered_json;
  if (argc != 2) {
    std::cerr << "usage: jinja_render CASES.json\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const json cases = json::parse(ss.str());
  json results = json::array();
  for (const json& c : cases) {
    try {
      const mfqat::hf::JinjaTemplate t(c.at("template").get<std::string>(), c.value("origin", std::string("template")));
      results.push_back({{"out", t.render(c.at("context"))}});
    } catch (const mfqat::hf::JinjaError& e) {
      results.push_back({{"error", e.what()}});
    }
  }
  std::cout << results.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  return 0;
}

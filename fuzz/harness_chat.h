// What fuzz_chat_template does with one input (the text of a chat template), shared with the unit
// test that replays fuzz/corpus/chat_template/ (tests/test_fuzz_regressions.cpp). Only
// mfqat/hf/jinja.h: the target links the tokenizer library alone.
#pragma once

#include <string>

#include "invariant.h"
#include "mfqat/hf/jinja.h"

namespace mfqat::fuzz {

// Parses the template and renders it on two conversations (transformers' variables, as the server
// passes them), under small limits. Throws hf::JinjaError (a std::runtime_error) for a template
// refused at parse or render time; its message must be one line naming the input.
inline void chat_template(const std::string& text, const std::string& name) {
  using json = nlohmann::ordered_json;
  hf::JinjaLimits lim;
  lim.max_output = std::size_t{1} << 20;
  lim.max_steps = 200000;
  lim.max_depth = 100;
  try {
    const hf::JinjaTemplate t(text, name);
    hf::ChatTemplateSource src;
    src.special_tokens = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
    const json chat = json::array({{{"role", "system"}, {"content", "Be brief."}},
                                   {{"role", "user"}, {"content", "  Hi \xC3\xA9\xF0\x9F\x99\x82 {{ x }} "}},
                                   {{"role", "assistant"}, {"content", "<think>\nr\n</think>\n\nHello"}},
                                   {{"role", "user"}, {"content", ""}}});
    for (const bool agp : {true, false}) {
      const std::string out = t.render(hf::chat_template_context(src, agp ? chat : json::array({chat[1]}), agp), lim);
      require(out.size() <= lim.max_output, "the output is within max_output");
    }
  } catch (const hf::JinjaError& e) {
    check_one_line(e);
    require(std::string(e.what()).rfind(name + ":", 0) == 0, "the message starts with the template's name");
    throw;
  }
}

}  // namespace mfqat::fuzz

// mfqat._core, part 2: models for Python. Model configs (mfqat's own JSON and Hugging Face
// config.json) with their parameter lists; any checkpoint mfqat opens read into float32 arrays;
// anchor export from a dict of float32 arrays through the very function `mfqat export --anchor`
// runs (model::export_anchor, on an in-memory fp32 master); and the elastic engine.
#include <atomic>
#include <nlohmann/json.hpp>
#include <set>

#include "bind.h"
#include "kernel_flags.h"  // src/cli: the --kernels rules and messages, reused as they are
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/hf/tokenizer.h"
#include "mfqat/model/checkpoint.h"
#include "mfqat/mx/parallel.h"
#include "mfqat/runtime/engine.h"

namespace mfqat::python {

namespace {

using nlohmann::json;

// layout "mfqat": an mfqat model config ({"model": "lm" | "mlp", ...}); "hf": a Hugging Face
// config.json (Llama, Mistral, Qwen2, Qwen3), read as `mfqat export DIR` reads it.
model::ModelConfig config_from(const std::string& text, const std::string& layout, std::int64_t ctx) {
  if (layout == "mfqat") {
    model::ModelConfig c = model::ModelConfig::from_json(text, "config");
    if (ctx > 0 && c.kind == model::Kind::Lm) c.lm.max_seq = ctx;
    return c;
  }
  if (layout == "hf") {
    model::ModelConfig c;
    c.kind = model::Kind::Lm;
    c.lm = model::hf_config(text, "config.json", ctx);
    return c;
  }
  throw std::invalid_argument("layout '" + layout + "' is not mfqat or hf");
}

// What python/mfqat needs to build the model in PyTorch without restating a default: the config
// as mfqat writes it, the derived sizes, the rotary frequencies and every parameter.
std::string config_info(const model::ModelConfig& c) {
  json j;
  j["config"] = json::parse(c.to_json());
  j["kind"] = c.kind_name();
  if (c.kind == model::Kind::Lm) {
    const model::LmConfig& l = c.lm;
    j["lm"] = {{"arch", l.arch},         {"vocab", l.vocab},         {"dim", l.dim},           {"n_layers", l.n_layers},
               {"n_heads", l.n_heads},   {"kv_heads", l.kv_heads()}, {"head_dim", l.head_dim()}, {"hidden", l.hidden()},
               {"max_seq", l.max_seq},   {"norm_eps", l.norm_eps},   {"qkv_bias", l.qkv_bias}, {"qk_norm", l.qk_norm},
               {"tie_embeddings", l.tie_embeddings}, {"quantize_head", l.quantize_head}, {"rope_inv_freq", model::rope_inv_freq(l)}};
  } else {
    j["mlp"] = {{"inputs", c.mlp.inputs}, {"hidden", c.mlp.hidden}, {"classes", c.mlp.classes}, {"quantize_head", c.mlp.quantize_head}};
  }
  json ps = json::array();
  for (const auto& p : c.params()) {
    json q = {{"name", p.name}, {"shape", p.shape}, {"quantized", p.quantized}};
    if (c.kind == model::Kind::Lm) q["hf_name"] = model::hf_name(p.name);
    ps.push_back(q);
  }
  j["params"] = ps;
  return j.dump();
}

py::array owned_f32(std::vector<float> v, const std::vector<std::int64_t>& shape) {
  auto* heap = new std::vector<float>(std::move(v));
  const py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  return py::array(py::dtype::of<float>(), std::vector<py::ssize_t>(shape.begin(), shape.end()), {}, heap->data(), owner);
}

py::tuple read_model(const Path& file, const py::object& format, std::int64_t ctx) {
  const std::string path = file.string();
  std::optional<model::Checkpoint> ck;
  {
    py::gil_scoped_release nogil;
    ck.emplace(model::Checkpoint::open(path, ctx));
  }
  std::optional<mx::Format> target;
  if (!format.is_none()) {
    if (!ck->is_anchor()) throw std::invalid_argument(path + ": an fp32 master; format= derives a format from an anchor");
    target = format_arg(format, ck->anchor_format()->block_size);
    const std::string why = ck->derive_refusal(*target);
    if (!why.empty()) throw std::invalid_argument("cannot derive " + target->name + " from the " + ck->anchor_format()->name + " anchor: " + why);
  }
  std::vector<std::vector<float>> values;
  {
    py::gil_scoped_release nogil;
    for (const auto& p : ck->params()) values.push_back(ck->values(p, p.quantized ? target : std::nullopt));
  }
  py::dict arrays;
  for (std::size_t i = 0; i < values.size(); ++i) arrays[py::str(ck->params()[i].name)] = owned_f32(std::move(values[i]), ck->params()[i].shape);
  const std::optional<std::string> tok = ck->tokenizer_json();
  return py::make_tuple(config_info(ck->config()), arrays, tok ? py::object(py::str(*tok)) : py::object(py::none()),
                        ck->is_anchor() ? py::object(py::str(ck->anchor_format()->name)) : py::object(py::none()));
}

// `mfqat export --anchor` on the model's float32 parameters: they become an in-memory fp32 master
// (the config in its metadata, mfqat's parameter names), which model::Checkpoint checks as it
// checks a file and model::export_anchor writes as the CLI does.
py::dict export_anchor(const std::string& config_text, const std::string& layout, const py::dict& params, const py::handle& fmt,
                       const Path& file, const py::object& tokenizer_json, const std::map<std::string, std::string>& metadata) {
  const std::string path = file.string();
  const model::ModelConfig mc = config_from(config_text, layout, 0);
  const mx::Format f = format_arg(fmt, 0);
  const std::string arch = mc.kind == model::Kind::Lm ? mc.lm.arch : std::string("mlp");
  ckpt::SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.set_metadata(ckpt::kModelConfigKey, mc.to_json());
  std::set<std::string> used;
  for (const auto& p : mc.params()) {
    const std::string key = layout == "hf" ? model::hf_name(p.name) : p.name;
    if (!params.contains(key)) {
      throw std::invalid_argument("model: parameter '" + key + "' is missing (the " + arch + " config needs it, shape " + shape_text(p.shape) + ")");
    }
    used.insert(key);
    const F32View v = f32_view(params[py::str(key)], "parameter '" + key + "'");
    if (v.shape != p.shape) {
      throw std::invalid_argument("model: parameter '" + key + "' has shape " + shape_text(v.shape) + ", the config says " + shape_text(p.shape));
    }
    w.add_f32(p.name, p.shape, {v.data, static_cast<std::size_t>(v.rows * v.cols)});
  }
  for (const auto& [k, v] : params) {
    const std::string key = py::str(k).cast<std::string>();
    if (!used.count(key)) throw std::invalid_argument("model: parameter '" + key + "' is not part of a " + arch + " model as its config describes it");
  }
  std::string tok;
  if (!tokenizer_json.is_none()) {
    tok = tokenizer_json.cast<std::string>();
    (void)hf::Tokenizer::from_json(tok, "tokenizer.json");  // refuse one the runtime could not load, before writing (as export does)
    w.add(model::kTokenizerTensor, ckpt::DType::U8, {static_cast<std::int64_t>(tok.size())},
          {reinterpret_cast<const std::uint8_t*>(tok.data()), tok.size()});
  }
  model::ExportStats s;
  {
    py::gil_scoped_release nogil;
    std::vector<std::uint8_t> bytes = w.to_bytes();
    w = ckpt::SafetensorsWriter();
    const model::Checkpoint master = model::Checkpoint::from_file(ckpt::SafetensorsFile::from_bytes(std::move(bytes), "model"));
    s = model::export_anchor(master, f, path);
  }
  py::dict d;
  d["anchor"] = f.name;
  d["path"] = path;
  d["mx_tensors"] = s.mx_tensors;
  d["f32_tensors"] = s.f32_tensors;
  d["bytes_in"] = s.bytes_in;
  d["bytes_out"] = s.bytes_out;
  return d;
}

// A model of no architecture mfqat knows: the named weights in MX (2-D, blocks along the last
// axis, as nn.Linear's [out, in]), everything else float32, marked as an anchor of `fmt` (so that
// convert, inspect and dequantize treat it as one); no model config, so the engine cannot run it.
py::dict export_weights(const py::dict& params, const std::vector<std::string>& quantized, const py::handle& fmt, const Path& file,
                        const std::map<std::string, std::string>& metadata) {
  const std::string path = file.string();
  const mx::Format f = format_arg(fmt, 0);
  const std::set<std::string> q(quantized.begin(), quantized.end());
  ckpt::SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.set_metadata(model::kAnchorKey, f.name);
  w.set_metadata(ckpt::kAnchorBlockSizeKey, std::to_string(f.block_size));
  std::int64_t n_mx = 0, n_f32 = 0;
  for (const auto& [k, v] : params) {
    const std::string name = py::str(k).cast<std::string>();
    const F32View x = f32_view(v, "parameter '" + name + "'");
    if (!q.count(name)) {
      w.add_f32(name, x.shape, {x.data, static_cast<std::size_t>(x.rows * x.cols)});
      ++n_f32;
      continue;
    }
    if (x.shape.size() != 2) throw std::invalid_argument("parameter '" + name + "' has shape " + shape_text(x.shape) + "; a quantized weight is 2-D [out, in]");
    mx::PackedMatrix m;
    {
      py::gil_scoped_release nogil;
      m = mx::quantize(f, x.data, x.rows, x.cols);
    }
    w.add_mx(name, m);
    ++n_mx;
  }
  for (const auto& name : quantized) {
    if (!params.contains(name)) throw std::invalid_argument("parameter '" + name + "' (to quantize) is not among the parameters");
  }
  {
    py::gil_scoped_release nogil;
    w.write(path);
  }
  py::dict d;
  d["anchor"] = f.name;
  d["path"] = path;
  d["mx_tensors"] = n_mx;
  d["f32_tensors"] = n_f32;
  return d;
}

// The engine, and how many times it derived a format (a switch back to a format it holds derives
// nothing and reads nothing).
struct PyEngine {
  std::unique_ptr<runtime::Engine> e;
  std::atomic<int> derived{0};
};

std::vector<int> token_ids(const py::handle& ids, std::int64_t vocab) {
  std::vector<int> out;
  for (const auto& t : ids) {
    if (!py::hasattr(t, "__index__") || py::isinstance<py::bool_>(t)) {
      throw py::type_error("ids: expected integers, got " + py::str(py::type::handle_of(t).attr("__name__")).cast<std::string>());
    }
    const long long v = t.attr("__index__")().cast<long long>();
    if (v < 0 || v >= vocab) throw std::invalid_argument("token " + std::to_string(v) + " is out of the vocabulary");
    out.push_back(static_cast<int>(v));
  }
  return out;
}

std::string text_arg(const py::handle& t, const char* what) {
  if (py::isinstance<py::bytes>(t)) return t.cast<std::string>();
  if (py::isinstance<py::str>(t)) return t.cast<std::string>();  // UTF-8
  throw py::type_error(std::string(what) + ": expected str or bytes, got " + py::str(py::type::handle_of(t).attr("__name__")).cast<std::string>());
}

py::str utf8_replace(const std::string& s) {
  return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace"));
}

}  // namespace

void bind_models(py::module_& m) {
  m.def("model_config", [](const std::string& text, const std::string& layout, std::int64_t ctx) { return config_info(config_from(text, layout, ctx)); },
        py::arg("text"), py::arg("layout") = "mfqat", py::arg("ctx") = 0,
        "The config (JSON text) validated as mfqat validates it, with derived sizes and every parameter (JSON text)");
  m.def("read_model", &read_model, py::arg("path"), py::arg("format") = py::none(), py::arg("ctx") = 0,
        "(config info JSON, {mfqat name: float32 array}, tokenizer.json text or None, anchor format or None) of a checkpoint: "
        "fp32 master, anchor (format=: a format derived by Slice-and-Scale), or Hugging Face directory");
  m.def("export_anchor", &export_anchor, py::arg("config"), py::arg("layout"), py::arg("params"), py::arg("format"), py::arg("path"),
        py::arg("tokenizer_json") = py::none(), py::arg("metadata") = std::map<std::string, std::string>{});
  m.def("export_weights", &export_weights, py::arg("params"), py::arg("quantized"), py::arg("format"), py::arg("path"),
        py::arg("metadata") = std::map<std::string, std::string>{});
  m.def("num_threads", &mfqat::num_threads, "Threads of the mx core and the runtime (MFQAT_NUM_THREADS, default: all cores)");
  m.def("set_num_threads", &mfqat::set_num_threads, py::arg("n"));

  py::class_<PyEngine, std::shared_ptr<PyEngine>>(m, "Engine",
                                                  "The elastic engine: maps an anchor (or an fp32 master, or a Hugging Face directory) once "
                                                  "and derives each format it is asked for once, by Slice-and-Scale")
      .def(py::init([](const Path& path, std::int64_t ctx, const std::string& kernels, int fx_digits, bool fixed_point, bool vbmi,
                       bool int8_activations, const std::string& prefill_acts, std::int64_t ubatch) {
             cli::KernelFlags k;
             if (prefill_acts != "int8" && prefill_acts != "fp32") throw std::invalid_argument("--prefill-acts: '" + prefill_acts + "' is not int8 or fp32");
             k.prefill_acts = prefill_acts;
             k.ubatch = ubatch;
             k.kernels = kernels;
             k.fx_digits = fx_digits;
             k.no_fixed_point = !fixed_point;
             k.no_vbmi = !vbmi;
             k.int8_act = int8_activations;
             if (fx_digits != 2 && fx_digits != 3) throw std::invalid_argument("--fx-digits: " + std::to_string(fx_digits) + " not in {2, 3}");
             if (ctx < 0) throw std::invalid_argument("--ctx: " + std::to_string(ctx) + " is not a positive number");
             auto pe = std::make_shared<PyEngine>();
             {
               py::gil_scoped_release nogil;
               pe->e = runtime::Engine::open(path.string(), ctx);
             }
             pe->e->set_kernels(cli::kernel_options(k));
             PyEngine* raw = pe.get();
             pe->e->set_derive_observer([raw](const std::string&) { ++raw->derived; });
             return pe;
           }),
           py::arg("path"), py::arg("ctx") = 0, py::arg("kernels") = "auto", py::arg("fx_digits") = 3, py::arg("fixed_point") = true,
           py::arg("vbmi") = true, py::arg("int8_activations") = false, py::arg("prefill_acts") = "int8", py::arg("ubatch") = 512)
      .def_property_readonly("formats", [](const PyEngine& p) { return p.e->formats(); }, "Formats it can serve: the anchor's family at or below it")
      .def_property_readonly("anchor", [](const PyEngine& p) { return p.e->anchor_name(); })
      .def_property_readonly("config", [](const PyEngine& p) {
        model::ModelConfig c;
        c.lm = p.e->config();
        return py::module_::import("json").attr("loads")(c.to_json());
      }, "The model config, as a dict (what the anchor's mfqat.model_config says, with ctx applied)")
      .def_property_readonly("vocab", [](const PyEngine& p) { return p.e->config().vocab; })
      .def_property_readonly("max_seq", [](const PyEngine& p) { return p.e->config().max_seq; })
      .def_property_readonly("kernels", [](const PyEngine& p) { return p.e->kernels().describe(); })
      .def_property_readonly("derivations", [](const PyEngine& p) { return p.derived.load(); }, "Formats derived so far (each once)")
      .def("canonical_format", [](const PyEngine& p, const std::string& f) { return p.e->canonical_format(f); }, py::arg("format"))
      .def("cache", [](const PyEngine& p) {
        py::list out;
        for (const auto& c : p.e->cache()) {
          py::dict d;
          d["format"] = c.format;
          d["bytes"] = c.bytes;
          d["derive_seconds"] = c.derive_seconds;
          out.append(d);
        }
        return out;
      })
      .def("evict", [](PyEngine& p, const std::string& f) { p.e->evict(f); }, py::arg("format"))
      .def("set_cache_budget", [](PyEngine& p, std::uint64_t b) { p.e->set_cache_budget(b); }, py::arg("bytes"))
      .def("encode", [](const PyEngine& p, const py::handle& text) {
        const std::string t = text_arg(text, "text");
        if (const hf::Tokenizer* tok = p.e->tokenizer()) {
          const auto ids = tok->encode(t);
          return std::vector<int>(ids.begin(), ids.end());
        }
        return std::vector<int>(t.begin(), t.end());  // mfqat's byte LM: bytes are tokens
      }, py::arg("text"), "The ids the model reads for `text` (its tokenizer, or bytes for mfqat's byte LM)")
      .def("generate", [](PyEngine& p, const py::handle& prompt, const std::string& format, std::int64_t max_tokens, double temperature, int top_k,
                          double top_p, std::uint64_t seed) {
        if (max_tokens < 0) throw std::invalid_argument("--tokens: " + std::to_string(max_tokens) + " is not a non-negative number");
        if (!(temperature >= 0)) throw std::invalid_argument("--temperature: " + std::to_string(temperature) + " is not a non-negative number");
        if (top_k < 0) throw std::invalid_argument("--top-k: " + std::to_string(top_k) + " is not a non-negative number");
        if (!(top_p >= 0 && top_p <= 1)) throw std::invalid_argument("--top-p: " + std::to_string(top_p) + " not in range [0 - 1]");
        const std::string pr = text_arg(prompt, "prompt");
        runtime::SamplingOptions s;
        s.temperature = temperature;
        s.top_k = top_k;
        s.top_p = top_p;
        s.seed = seed;
        runtime::Generation g;
        std::string fmt_name;
        {
          py::gil_scoped_release nogil;
          const auto w = p.e->weights(format);
          fmt_name = w->format;
          g = runtime::generate(*p.e, w, pr, max_tokens, s);
        }
        py::dict d;  // the fields of `mfqat generate --json`, with the text also as bytes
        d["format"] = fmt_name;
        d["text"] = utf8_replace(g.text);
        d["text_bytes"] = py::bytes(g.text);
        d["prompt_tokens"] = g.prompt_tokens;
        d["new_tokens"] = g.new_tokens;
        d["prefill_tokens_per_s"] = g.prefill_seconds > 0 ? static_cast<double>(g.prompt_tokens) / g.prefill_seconds : 0.0;
        d["decode_tokens_per_s"] = g.decode_seconds > 0 ? static_cast<double>(g.new_tokens) / g.decode_seconds : 0.0;
        d["kernels"] = p.e->kernels().describe();
        d["prompt_ids"] = g.prompt_ids;
        d["token_ids"] = g.token_ids;
        return d;
      }, py::arg("prompt"), py::arg("format") = "anchor", py::arg("max_tokens") = 200, py::arg("temperature") = 0.0, py::arg("top_k") = 0,
         py::arg("top_p") = 1.0, py::arg("seed") = 0)
      .def("logits", [](PyEngine& p, const py::handle& ids, const std::string& format) {
        const std::vector<int> toks = token_ids(ids, p.e->config().vocab);
        std::vector<float> out;
        {
          py::gil_scoped_release nogil;
          runtime::Session s(*p.e, p.e->weights(format));
          out = s.feed_all(toks);
        }
        return owned_f32(std::move(out), {static_cast<std::int64_t>(toks.size()), p.e->config().vocab});
      }, py::arg("ids"), py::arg("format") = "anchor", "float32 [len(ids), vocab]: the logits at every position (one prefill)")
      .def("__repr__", [](const PyEngine& p) { return "mfqat.Engine(anchor=" + p.e->anchor_name() + ", formats=" + std::to_string(p.e->formats().size()) + ")"; });
}

}  // namespace mfqat::python

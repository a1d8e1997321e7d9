// Reading and writing the trainer's files: the resumable training state (weights, AdamW moments,
// step, RNG, fine-tune set) and the fp32 safetensors checkpoints, and loading a checkpoint's (or
// an anchor's derived) weights into a model.
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "mfqat/ckpt/file.h"
#include "mfqat/ckpt/safetensors.h"
#include "mfqat/mx/quantize.h"
#include "mfqat/train/trainer.h"
#include "train_state.h"

namespace mfqat::train {

namespace detail {

void save_state(QuantModelImpl& model, const torch::optim::AdamW& adam, const LoopState& st, const std::mt19937_64& rng,
                const std::string& path) {
  torch::serialize::OutputArchive a;
  for (const auto& p : model.named_parameters()) a.write("param/" + p.key(), p.value().detach());
  torch::serialize::OutputArchive opt;
  adam.save(opt);
  a.write("optimizer", opt);
  a.write("step", c10::IValue(st.step));
  a.write("fixed", torch::tensor(st.fixed.empty() ? std::vector<std::int64_t>{-1} : st.fixed, torch::kInt64));
  std::ostringstream r;
  r << rng;
  a.write("rng", c10::IValue(r.str()));
  a.write("config", c10::IValue(model.model_config().to_json()));
  std::ostringstream bytes;
  a.save_to(bytes);
  const std::string b = bytes.str();
  ckpt::write_file_atomic(path, b.data(), b.size());
}

void load_state(QuantModelImpl& model, torch::optim::AdamW& adam, LoopState* st, std::mt19937_64* rng, const std::string& path) {
  if (!std::ifstream(path)) throw std::runtime_error(path + ": no training state to resume from");
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const c10::Error&) {
    throw std::runtime_error(path + ": not a readable training state");
  }
  c10::IValue cfg;
  a.read("config", cfg);
  if (cfg.toStringRef() != model.model_config().to_json()) throw std::runtime_error(path + ": training state is for another model config");
  torch::NoGradGuard ng;
  for (auto& p : model.named_parameters()) {
    torch::Tensor t;
    a.read("param/" + p.key(), t);
    p.value().copy_(t);
  }
  torch::serialize::InputArchive opt;
  a.read("optimizer", opt);
  adam.load(opt);
  c10::IValue step, r;
  a.read("step", step);
  st->step = step.toInt();
  torch::Tensor fixed;
  a.read("fixed", fixed);
  st->fixed.clear();
  if (!(fixed.numel() == 1 && fixed.item<std::int64_t>() == -1)) {
    for (std::int64_t i = 0; i < fixed.numel(); ++i) st->fixed.push_back(fixed[i].item<std::int64_t>());
  }
  a.read("rng", r);
  std::istringstream in(r.toStringRef());
  in >> *rng;
}

}  // namespace detail

void save_checkpoint(QuantModelImpl& model, const std::string& path, const std::map<std::string, std::string>& extra,
                     const std::optional<std::string>& tokenizer_json) {
  ckpt::SafetensorsWriter w;
  if (tokenizer_json) {
    w.add(model::kTokenizerTensor, ckpt::DType::U8, {static_cast<std::int64_t>(tokenizer_json->size())},
          {reinterpret_cast<const std::uint8_t*>(tokenizer_json->data()), tokenizer_json->size()});
  }
  for (const auto& p : model.named_parameters()) {
    const torch::Tensor t = p.value().detach().contiguous();
    w.add_f32(p.key(), t.sizes().vec(), {t.data_ptr<float>(), static_cast<std::size_t>(t.numel())});
  }
  w.set_metadata(ckpt::kModelConfigKey, model.model_config().to_json());
  for (const auto& [k, v] : extra) w.set_metadata(k, v);
  w.write(path);
}

ModelConfig checkpoint_config(const std::string& path) {
  if (model::is_hf_dir(path)) return model::Checkpoint::open(path).config();
  return model::read_config(ckpt::SafetensorsFile::open(path));
}

void load_weights(QuantModelImpl& m, const model::Checkpoint& ck, const std::optional<mx::Format>& target,
                  const std::map<std::string, mx::Format>* per) {
  torch::NoGradGuard ng;
  auto named = m.named_parameters();
  for (auto& p : named) {
    const model::Param* spec = ck.find_param(p.key());
    if (!spec) throw std::runtime_error(ck.path() + ": tensor '" + p.key() + "' is missing (the checkpoint is for another model)");
    if (spec->shape != p.value().sizes().vec()) {
      std::string want = "[";
      for (auto d : p.value().sizes()) want += std::to_string(d) + ",";
      want.back() = ']';
      throw std::runtime_error(ck.path() + ": tensor '" + p.key() + "' has another shape than the model's " + want);
    }
    const auto planned = per ? per->find(p.key()) : std::map<std::string, mx::Format>::const_iterator{};
    const std::vector<float> v = per && planned != per->end() ? mx::dequantize(ck.packed(*spec, planned->second))
                                                              : ck.values(*spec, spec->quantized ? target : std::nullopt);
    std::memcpy(p.value().data_ptr<float>(), v.data(), v.size() * sizeof(float));
  }
  if (named.size() != ck.params().size()) throw std::runtime_error(ck.path() + ": has parameters the model does not have");
}

void load_checkpoint(QuantModelImpl& m, const std::string& path) { load_weights(m, model::Checkpoint::open(path)); }

}  // namespace mfqat::train

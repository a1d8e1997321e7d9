// What is trained on and how it is scored: the LM's byte windows and loss, Fashion-MNIST's
// images, the two Tasks the training loop samples from, and the held-out evaluations.
#include <fstream>
#include <stdexcept>
#include <type_traits>

#include "mfqat/data/idx.h"
#include "mfqat/train/trainer.h"

namespace mfqat::train {

namespace {

// [B, T+1] windows starting at the given offsets (of bytes, or of a tokenizer's ids).
template <class Tok>
torch::Tensor windows(const std::vector<Tok>& text, const std::vector<std::int64_t>& starts, std::int64_t len) {
  torch::Tensor out = torch::empty({static_cast<std::int64_t>(starts.size()), len}, torch::kInt64);
  auto a = out.accessor<std::int64_t, 2>();
  for (std::size_t b = 0; b < starts.size(); ++b) {
    for (std::int64_t i = 0; i < len; ++i) a[b][i] = text[starts[b] + i];
  }
  return out;
}

// Mean next-token cross-entropy of logits [B, T, V] (the model's output on win[:, :T]) against win[:, 1:].
torch::Tensor lm_loss(const torch::Tensor& logits, const torch::Tensor& win) {
  const std::int64_t T = win.size(1) - 1;
  return torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}), win.slice(1, 1, T + 1).reshape({-1}));
}
torch::Tensor lm_loss(QuantModelImpl& m, const torch::Tensor& win) { return lm_loss(m.forward(win.slice(1, 0, win.size(1) - 1)), win); }

}  // namespace

namespace {

template <class Tok>
Metrics evaluate_windows(QuantModelImpl& model, const std::vector<Tok>& text, std::int64_t seq, std::int64_t batches, std::int64_t batch) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  const std::int64_t len = std::min<std::int64_t>(seq + 1, static_cast<std::int64_t>(text.size()));
  if (len < 2) throw std::runtime_error("text too short to evaluate");
  const std::int64_t span = static_cast<std::int64_t>(text.size()) - len;
  std::vector<std::int64_t> all;
  if (batches > 0) {
    const std::int64_t total = batches * batch;
    for (std::int64_t k = 0; k < total; ++k) all.push_back(total > 1 ? span * k / (total - 1) : 0);  // evenly spread
  } else {
    for (std::int64_t s0 = 0; s0 <= span; s0 += len - 1) all.push_back(s0);  // every byte after the first scored once
  }
  double sum = 0;
  std::int64_t words = 0, correct = 0;
  const std::int64_t T = len - 1;
  for (std::size_t i = 0; i < all.size(); i += static_cast<std::size_t>(batch)) {
    const std::vector<std::int64_t> starts(all.begin() + static_cast<std::ptrdiff_t>(i),
                                           all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), i + static_cast<std::size_t>(batch))));
    const torch::Tensor win = windows(text, starts, len);
    const torch::Tensor logits = model.forward(win.slice(1, 0, T));
    sum += lm_loss(logits, win).template item<double>() * static_cast<double>(starts.size());
    if constexpr (std::is_same_v<Tok, std::uint8_t>) {
      const torch::Tensor hits = logits.argmax(-1).eq(win.slice(1, 1, T + 1)).contiguous();
      const auto h = hits.accessor<bool, 2>();
      for (std::size_t b = 0; b < starts.size(); ++b) {
        std::vector<bool> hit(static_cast<std::size_t>(T));
        for (std::int64_t t = 0; t < T; ++t) hit[static_cast<std::size_t>(t)] = h[static_cast<std::int64_t>(b)][t];
        count_next_words(text, starts[b], hit, words, correct);
      }
    }
  }
  if (was_training) model.train();
  Metrics m;
  m.loss = sum / static_cast<double>(all.size());
  m.units = static_cast<std::int64_t>(all.size()) * (len - 1);
  if (words > 0) {
    m.word_accuracy = static_cast<double>(correct) / static_cast<double>(words);
    m.words = words;
  }
  return m;
}

}  // namespace

namespace {
bool is_letter(std::uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

void count_next_words(const std::vector<std::uint8_t>& text, std::int64_t start, const std::vector<bool>& hit, std::int64_t& words,
                 std::int64_t& correct) {
  const auto T = static_cast<std::int64_t>(hit.size());
  for (std::int64_t p = start + 1; p <= start + T; ++p) {  // p: a word's first byte; p - 1 is in the window
    if (!is_letter(text[p]) || is_letter(text[p - 1])) continue;
    std::int64_t q = p;  // the byte that ends the word
    while (q <= start + T && is_letter(text[q])) ++q;
    if (q > start + T) break;  // the word's end is past the window
    bool ok = true;
    for (std::int64_t i = p; i <= q && ok; ++i) ok = hit[i - start - 1];
    ++words;
    correct += ok ? 1 : 0;
    p = q;
  }
}

Metrics evaluate_lm(QuantModelImpl& model, const std::vector<std::uint8_t>& text, std::int64_t seq, std::int64_t batches, std::int64_t batch) {
  return evaluate_windows(model, text, seq, batches, batch);
}

Metrics evaluate_lm(QuantModelImpl& model, const std::vector<std::int32_t>& ids, std::int64_t seq, std::int64_t batches, std::int64_t batch) {
  return evaluate_windows(model, ids, seq, batches, batch);
}

Metrics evaluate_classifier(QuantModelImpl& model, const torch::Tensor& images, const torch::Tensor& labels) {
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double loss = 0;
  std::int64_t correct = 0;
  const std::int64_t n = images.size(0);
  for (std::int64_t i = 0; i < n; i += 1000) {
    const std::int64_t e = std::min(n, i + 1000);
    const torch::Tensor logits = model.forward(images.slice(0, i, e));
    const torch::Tensor y = labels.slice(0, i, e);
    loss += torch::nn::functional::cross_entropy(logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
    correct += logits.argmax(1).eq(y).sum().item<std::int64_t>();
  }
  if (was_training) model.train();
  Metrics m;
  m.loss = loss / static_cast<double>(n);
  m.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  m.units = n;
  return m;
}

namespace {

constexpr std::int64_t kFmnistValid = 5000;  // the last training images

// One IDX pair ("train" or "t10k"), checked: images [n, 784] uint8, labels [n] int64.
std::pair<torch::Tensor, torch::Tensor> read_fmnist(const std::string& data_dir, bool test) {
  const std::string base = data_dir + "/fashion-mnist/" + (test ? "t10k" : "train");
  for (const char* part : {"-images-idx3-ubyte.gz", "-labels-idx1-ubyte.gz"}) {
    if (!std::ifstream(base + part)) {
      throw std::runtime_error(base + part + ": missing; run `mfqat data prepare --data-dir " + data_dir + "` first");
    }
  }
  const data::IdxArray img = data::read_idx(base + "-images-idx3-ubyte.gz"), lab = data::read_idx(base + "-labels-idx1-ubyte.gz");
  if (img.dims.size() != 3 || lab.dims.size() != 1 || img.dims[0] != lab.dims[0] || (!test && img.dims[0] <= kFmnistValid)) {
    throw std::runtime_error(base + ": images and labels do not match");
  }
  const std::int64_t n = img.dims[0], px = img.dims[1] * img.dims[2];
  const torch::Tensor x = torch::from_blob(const_cast<std::uint8_t*>(img.values.data()), {n, px}, torch::kUInt8).clone();
  const torch::Tensor y = torch::from_blob(const_cast<std::uint8_t*>(lab.values.data()), {n}, torch::kUInt8).to(torch::kInt64);
  if (y.max().item<std::int64_t>() > 9) throw std::runtime_error(base + ": label out of range 0..9");
  return {x, y};
}

// Rows [b, e) as normalised floats with Fashion-MNIST's pixel mean and standard deviation
// (over the training set, /255).
std::pair<torch::Tensor, torch::Tensor> fmnist_rows(const std::pair<torch::Tensor, torch::Tensor>& xy, std::int64_t b, std::int64_t e) {
  return {xy.first.slice(0, b, e).to(torch::kFloat32).div_(255.0f).sub_(0.2860f).div_(0.3530f), xy.second.slice(0, b, e)};
}

class LmTask : public Task {
 public:
  LmTask(std::vector<std::int32_t> train, std::vector<std::int32_t> valid, std::int64_t seq, std::int64_t eval_batches)
      : train_(std::move(train)), valid_(std::move(valid)), seq_(seq), eval_batches_(eval_batches) {
    if (static_cast<std::int64_t>(train_.size()) <= seq_ + 1) throw std::runtime_error("training text is shorter than one window");
  }
  std::int64_t items() const override { return static_cast<std::int64_t>(train_.size()) - seq_; }
  std::int64_t units_per_item() const override { return seq_; }
  torch::Tensor loss(QuantModelImpl& m, const std::vector<std::int64_t>& items) override {
    return lm_loss(m, windows(train_, items, seq_ + 1));
  }
  Metrics validate(QuantModelImpl& m) override { return evaluate_lm(m, valid_, seq_, eval_batches_); }
  bool has_validation() const override { return !valid_.empty(); }

 private:
  std::vector<std::int32_t> train_, valid_;  // bytes, or a tokenizer's ids
  std::int64_t seq_, eval_batches_;
};

class FmnistTask : public Task {
 public:
  explicit FmnistTask(const std::string& dir) {
    const auto xy = read_fmnist(dir, false);  // one read for both splits
    const std::int64_t n = xy.first.size(0);
    std::tie(x_, y_) = fmnist_rows(xy, 0, n - kFmnistValid);
    std::tie(vx_, vy_) = fmnist_rows(xy, n - kFmnistValid, n);
  }
  std::int64_t items() const override { return x_.size(0); }
  std::int64_t units_per_item() const override { return 1; }
  torch::Tensor loss(QuantModelImpl& m, const std::vector<std::int64_t>& items) override {
    const torch::Tensor idx = torch::tensor(items, torch::kInt64);
    return torch::nn::functional::cross_entropy(m.forward(x_.index_select(0, idx)), y_.index_select(0, idx));
  }
  Metrics validate(QuantModelImpl& m) override { return evaluate_classifier(m, vx_, vy_); }
  bool has_validation() const override { return true; }

 private:
  torch::Tensor x_, y_, vx_, vy_;
};

}  // namespace

std::unique_ptr<Task> lm_task(std::vector<std::int32_t> train, std::vector<std::int32_t> valid, std::int64_t seq, std::int64_t eval_batches) {
  return std::make_unique<LmTask>(std::move(train), std::move(valid), seq, eval_batches);
}

std::unique_ptr<Task> lm_task(std::vector<std::uint8_t> train, std::vector<std::uint8_t> valid, std::int64_t seq,
                              std::int64_t eval_batches) {
  return lm_task(std::vector<std::int32_t>(train.begin(), train.end()), std::vector<std::int32_t>(valid.begin(), valid.end()), seq, eval_batches);
}

std::unique_ptr<Task> fmnist_task(const std::string& data_dir) { return std::make_unique<FmnistTask>(data_dir); }

std::pair<torch::Tensor, torch::Tensor> fmnist_split(const std::string& data_dir, const std::string& split) {
  const bool test = split == "test";
  if (!test && split != "train" && split != "valid") throw std::invalid_argument("unknown split '" + split + "' (train, valid, test)");
  const auto xy = read_fmnist(data_dir, test);
  const std::int64_t n = xy.first.size(0);
  return fmnist_rows(xy, split == "valid" ? n - kFmnistValid : 0, split == "train" ? n - kFmnistValid : n);
}

// The first-order score's statistics (api.h): one backward per calibration window.
SquaredGradients squared_gradients(const std::string& model, const std::string& reference, const std::vector<std::string>& linears,
                                   const std::vector<std::int32_t>& text, std::int64_t seq, std::int64_t max_windows, int threads) {
  const model::Checkpoint ck = model::Checkpoint::open(model);
  if (ck.config().kind != model::Kind::Lm) throw std::invalid_argument(model + ": not a language model");
  if (threads > 0) at::set_num_threads(threads);
  const auto m = make_model(ck.config());
  const int block = ck.anchor_format() ? ck.anchor_format()->block_size : mx::kDefaultBlockSize;
  const mx::Format ref = mx::find_format(reference, block);
  std::map<std::string, mx::Format> per;
  for (const auto& n : linears) per.emplace(n, ref);
  load_weights(*m, ck, std::nullopt, &per);
  m->set_format(std::nullopt);
  m->eval();  // no dropout; gradients still flow
  const std::int64_t len = std::min<std::int64_t>(seq + 1, static_cast<std::int64_t>(text.size()));
  if (len < 2) throw std::invalid_argument("calibration text too short");
  const std::int64_t span = static_cast<std::int64_t>(text.size()) - len, all = span / (len - 1) + 1;
  const bool spread = max_windows > 0 && max_windows < all;
  const std::int64_t n = spread ? max_windows : all;
  std::map<std::string, torch::Tensor> params, acc;
  for (auto& p : m->named_parameters()) {
    if (per.count(p.key())) {
      params[p.key()] = p.value();
      acc[p.key()] = torch::zeros_like(p.value());
    }
  }
  for (const auto& name : linears) {
    if (!params.count(name)) throw std::invalid_argument(model + ": no parameter '" + name + "'");
  }
  SquaredGradients out;
  out.windows = n;
  out.seq = len - 1;
  double loss_sum = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t s0 = !spread ? i * (len - 1) : n == 1 ? 0 : i * span / (n - 1);
    m->zero_grad();
    const torch::Tensor win = windows(text, std::vector<std::int64_t>{s0}, len);
    const torch::Tensor loss = lm_loss(*m, win);
    loss.backward();
    loss_sum += loss.item<double>();
    torch::NoGradGuard ng;
    for (auto& [name, p] : params) acc[name].add_(p.grad().square());
  }
  for (auto& [name, a] : acc) {
    a.div_(static_cast<double>(n));
    const torch::Tensor c = a.contiguous();
    out.mean_sq[name].assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  }
  out.loss = loss_sum / static_cast<double>(n);
  return out;
}

}  // namespace mfqat::train

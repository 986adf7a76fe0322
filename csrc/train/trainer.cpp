#include "trainer.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "checkpoint.h"
#include "data.h"
#include "fit/fit.h"
#include "models.h"
#include "pruning.h"
#include "rng.h"
#include "settings.h"
#include "transforms.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rational_train {

// ---------------------------------------------------------------------------------------------
// Settings <-> JSON. The keys, types and ranges are the table of settings.h; one list of
// (key, member) here so the config file, the summary and the checkpoint all use the same names.
#define RT_FIELDS(X)                                                                                    \
  X(model) X(dataset) X(data_dir) X(synthetic) X(synthetic_train_size) X(synthetic_test_size) X(activation) \
  X(act_weight_decay) X(optimizer) X(lr) X(momentum) X(nesterov) X(weight_decay) X(lr_schedule)           \
  X(lr_step) X(lr_gamma) X(clip_grad_norm) X(batch_size) X(test_batch_size) X(drop_last) X(epochs) X(seed)  \
  X(device) X(threads) X(workers) X(dist_timeout) X(train_subset) X(test_subset) X(image_size) X(rotation) X(crop_padding) X(hflip)      \
  X(mean) X(std) X(batch_norm) X(output) X(resume) X(progress) X(prune_rounds) X(prune_fraction)

void to_json(json& j, const TrainConfig& c) {
  j = json::object();
#define X(f) j[#f] = c.f;
  RT_FIELDS(X)
#undef X
  j["act_lr"] = c.act_lr ? json(*c.act_lr) : json(nullptr);
  j["activation_options"] = c.act;
}

namespace {
bool is_documentation_key(const std::string& k) {
  return k == "source" || k == "comment" || (!k.empty() && k[0] == '_');
}
}  // namespace

void from_json(const json& j, TrainConfig& c) {
  if (!j.is_object()) throw std::invalid_argument("config: expected a JSON object, got " + std::string(j.type_name()));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (is_documentation_key(k)) continue;
    if (k == "activation_options") {
      from_json(it.value(), c.act);
      continue;
    }
    const Setting* s = setting_by_key(k);
    if (!s) throw std::invalid_argument("config: unknown key '" + k + "' (the keys are listed in docs/training.md)");
    const json v = check_config_value(*s, it.value());
    if (k == "act_lr") {
      c.act_lr = v.is_null() ? std::nullopt : std::optional<double>(v.get<double>());
      continue;
    }
#define X(f)            \
  if (k == #f) {        \
    v.get_to(c.f);      \
    continue;           \
  }
    RT_FIELDS(X)
#undef X
    throw std::logic_error("settings table key '" + k + "' has no TrainConfig member");
  }
}

namespace {
std::string named(const std::string& key) {
  const Setting* s = setting_by_key(key);
  return s ? describe(*s) : key;
}
template <typename T>
void check_in(const std::string& key, const T& v, const std::vector<T>& allowed) {
  for (auto& a : allowed)
    if (a == v) return;
  std::string list;
  for (auto& a : allowed) list += (list.empty() ? "" : ", ") + fmt::format("{}", a);
  throw std::invalid_argument(fmt::format("{}: '{}' is not one of {}", named(key), v, list));
}
void check(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}
}  // namespace

TrainConfig resolve(TrainConfig c) {
  // Types, finiteness and single-value ranges: every value goes through the settings table, also
  // a TrainConfig filled in C++ (tests, a future sub-command).
  {
    const json j = c;
    for (auto& s : settings()) check_config_value(s, j.at(json_pointer(s)));
  }
  check_in<std::string>("dataset", c.dataset, {"mnist", "fashion-mnist", "cifar10", "imagefolder"});
  check_in<std::string>("model", c.model, model_names());
  check_in<std::string>("activation", c.activation, activation_names());
  check_in<std::string>("optimizer", c.optimizer, {"adam", "adamw", "sgd"});
  check_in<std::string>("lr_schedule", c.lr_schedule, {"none", "step", "cosine"});
  check_in<std::string>("device", c.device, {"auto", "cpu", "cuda"});
  check_in<std::string>("activation_options.version", c.act.version, {"A", "B", "C", "N"});
  check_in<std::string>("activation_options.basis", c.act.basis,
                        {"", "power", "chebyshev_t", "chebyshev_u", "hermite", "hermite_e", "laguerre", "legendre"});
  check(c.act.init.empty() || c.act.init == "random" || torch_rational::is_named_function(c.act.init),
        fmt::format("{}: unknown function '{}'", named("activation_options.init"), c.act.init));
  check(c.act.den_degree >= 1, fmt::format("{}: the denominator degree must be >= 1, got {}",
                                           named("activation_options.degrees"), c.act.den_degree));
  check(c.act.groups == -1 || c.act.groups >= 1,
        fmt::format("{}: must be -1 (one per channel) or >= 1, got {}", named("activation_options.groups"),
                    c.act.groups));
  check(!c.nesterov || c.optimizer != "sgd" || c.momentum > 0,
        fmt::format("{} needs {} > 0", named("nesterov"), named("momentum")));
  check(!c.output.empty(), named("output") + ": must not be empty");
  if (c.data_dir.empty()) c.data_dir = default_data_dir(c.dataset);
  const int64_t ch = dataset_channels(c.dataset);
  std::vector<double> mean = {0.1307}, std = {0.3081};
  if (c.dataset == "cifar10") {
    mean = {0.4914, 0.4822, 0.4465};
    std = {0.2470, 0.2435, 0.2616};
  } else if (c.dataset == "imagefolder") {  // ImageNet's (torchvision)
    mean = {0.485, 0.456, 0.406};
    std = {0.229, 0.224, 0.225};
  } else if (c.dataset == "fashion-mnist") {
    mean = {0.2860};
    std = {0.3530};
  }
  const std::string counts = ch == 1 ? "1 value" : fmt::format("1 or {} values (one per channel)", ch);
  for (auto [key, values, dataset_values] : {std::tuple{"mean", &c.mean, &mean}, std::tuple{"std", &c.std, &std}}) {
    if (values->empty()) *values = *dataset_values;
    check(values->size() == 1 || int64_t(values->size()) == ch,
          fmt::format("{}: {} needs {}, got {}", named(key), c.dataset, counts, values->size()));
  }
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  if (c.device == "auto") c.device = torch::cuda::is_available() ? "cuda" : "cpu";
  if (c.device == "cuda" && !torch::cuda::is_available())
    throw std::invalid_argument(named("device") + ": cuda, but no CUDA device is available to this torch build");
  if (!c.act_lr) c.act_lr = c.lr;
  return c;
}

std::vector<std::string> resume_conflicts(const json& saved, const json& now) {
  std::vector<std::string> out;
  // A setting added after a checkpoint was written is not in it: that run used the default.
  const json defaults = TrainConfig{};
  for (auto& s : settings()) {
    const auto ptr = json_pointer(s);
    // --epochs defines the run under the cosine schedule (a function of the epochs) and when pruning
    // (the rounds' boundaries).
    const bool pruning = now.value("prune_rounds", int64_t(0)) > 0;
    const bool cosine_epochs = s.key == "epochs" && (now.value("lr_schedule", "") == "cosine" || pruning);
    if (!s.defines_run && !cosine_epochs) continue;
    if (!saved.contains(ptr)) {
      if (defaults.at(ptr) != now.at(ptr))
        out.push_back(fmt::format("{}: not recorded in the checkpoint (so the default {}), now {}", s.flag,
                                  format_value(s, defaults.at(ptr)), format_value(s, now.at(ptr))));
      continue;
    }
    if (saved.at(ptr) == now.at(ptr)) continue;
    out.push_back(fmt::format("{}: checkpoint {}, now {}{}", s.flag, format_value(s, saved.at(ptr)),
                              format_value(s, now.at(ptr)),
                              !cosine_epochs ? ""
                              : pruning      ? " (each pruning round trains --epochs epochs)"
                                             : " (the cosine schedule is a function of the epochs)"));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
const char* const kMetricsHeader = "epoch,train_loss,train_accuracy,test_loss,test_accuracy,lr,seconds,images_per_second";

std::string metrics_csv(const std::vector<EpochMetrics>& rows) {
  std::string s = std::string(kMetricsHeader) + "\n";
  for (auto& m : rows)
    s += fmt::format("{},{},{},{},{},{},{},{}\n", m.epoch, m.train_loss, m.train_accuracy, m.test_loss,
                     m.test_accuracy, m.lr, m.seconds, m.images_per_second);
  return s;
}

const char* const kPruningHeader = "round,pruned_fraction,test_accuracy,test_loss,alive_filters,total_filters";

std::string pruning_csv(const std::vector<PruningRow>& rows) {
  std::string s = std::string(kPruningHeader) + "\n";
  for (auto& r : rows)
    s += fmt::format("{},{},{},{},{},{}\n", r.round, r.pruned_fraction, r.test_accuracy, r.test_loss, r.alive_filters,
                     r.total_filters);
  return s;
}

namespace {

// What a stopped run leaves behind, for its error message.
std::string kept_checkpoint(int64_t epoch) {
  return epoch > 1 ? fmt::format("the checkpoint of epoch {} is kept", epoch - 1)
                   : std::string("no checkpoint written");
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Per-epoch progress on stderr: redrawn in place on a terminal, one line per ~10% otherwise (CI logs).
class Progress {
 public:
  Progress(bool enabled, std::string title, int64_t total)
      : enabled_(enabled), tty_(isatty(2)), title_(std::move(title)), total_(std::max<int64_t>(total, 1)) {}
  void update(int64_t done, double loss, double acc, double ips) {
    if (!enabled_) return;
    int64_t decile = done * 10 / total_;
    if (!tty_ && decile == last_decile_ && done != total_) return;
    if (!tty_ && done == total_ && last_decile_ == 10) return;
    // On a terminal, redraw at most every 0.1 s (and at the end), not on every step.
    if (tty_ && done != total_ && since(last_draw_) < 0.1) return;
    last_draw_ = Clock::now();
    last_decile_ = decile;
    int width = 30, filled = int(width * done / total_);
    std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
    std::string line = fmt::format("{} [{}] {:3d}% {}/{} loss {:.4f} acc {:.4f} {:.0f} img/s", title_, bar,
                                   int(100 * done / total_), done, total_, loss, acc, ips);
    if (tty_)
      std::cerr << "\r" << line << (done == total_ ? "\n" : "") << std::flush;
    else
      std::cerr << line << "\n" << std::flush;
  }

 private:
  bool enabled_, tty_;
  std::string title_;
  int64_t total_;
  int64_t last_decile_ = -1;
  Clock::time_point last_draw_{};
};

double lr_factor(const TrainConfig& c, int64_t epoch) {
  if (c.lr_schedule == "step") return std::pow(c.lr_gamma, double((epoch - 1) / c.lr_step));
  if (c.lr_schedule == "cosine") return 0.5 * (1.0 + std::cos(M_PI * double(epoch - 1) / double(c.epochs)));
  return 1.0;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainConfig& c, std::vector<torch::Tensor> net,
                                                        std::vector<torch::Tensor> act) {
  using namespace torch::optim;
  std::vector<OptimizerParamGroup> groups;
  // Group 0: network weights; group 1 (when present): activation parameters, own lr, own decay.
  if (c.optimizer == "sgd") {
    groups.emplace_back(net, std::make_unique<SGDOptions>(
                                 SGDOptions(c.lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.weight_decay)));
    if (!act.empty())
      groups.emplace_back(act, std::make_unique<SGDOptions>(
                                   SGDOptions(*c.act_lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(c.act_weight_decay)));
    return std::make_unique<SGD>(groups, SGDOptions(c.lr));
  }
  if (c.optimizer == "adamw") {
    groups.emplace_back(net, std::make_unique<AdamWOptions>(AdamWOptions(c.lr).weight_decay(c.weight_decay)));
    if (!act.empty())
      groups.emplace_back(act, std::make_unique<AdamWOptions>(AdamWOptions(*c.act_lr).weight_decay(c.act_weight_decay)));
    return std::make_unique<AdamW>(groups, AdamWOptions(c.lr));
  }
  groups.emplace_back(net, std::make_unique<AdamOptions>(AdamOptions(c.lr).weight_decay(c.weight_decay)));
  if (!act.empty())
    groups.emplace_back(act, std::make_unique<AdamOptions>(AdamOptions(*c.act_lr).weight_decay(c.act_weight_decay)));
  return std::make_unique<Adam>(groups, AdamOptions(c.lr));
}

json activation_parameters(std::vector<std::pair<std::string, Activation>>& slots) {
  json out = json::object();
  for (auto& [name, slot] : slots) {
    if (!slot->learnable()) continue;
    json params = json::object();
    for (auto& p : slot->named_parameters()) {
      std::string key = p.key().rfind("fn.", 0) == 0 ? p.key().substr(3) : p.key();
      auto flat = p.value().detach().to(torch::kCPU, torch::kFloat64).contiguous().reshape({-1});
      params[key] = std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
    }
    out[name] = params;
  }
  return out;
}

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

struct EvalResult {
  double loss = 0, accuracy = 0;
};

EvalResult evaluate(Net& model, const Dataset& test, const TrainConfig& c, const TransformOptions& topt,
                    const torch::Device& device, Distributed& dist) {
  torch::NoGradGuard no_grad;
  model.eval();
  // Each rank evaluates its contiguous share of the test set; the sums are added over the ranks.
  const int64_t n = test.size(), world = dist.world_size();
  std::vector<int64_t> order;
  for (int64_t i = n * dist.rank() / world; i < n * (dist.rank() + 1) / world; ++i) order.push_back(i);
  BatchLoader loader(test, std::move(order), c.test_batch_size, topt, false, c.seed, 0, int(c.workers));
  double loss_sum = 0, correct = 0;
  while (auto b = loader.next()) {
    auto x = b->x.to(device), y = b->y.to(device);
    auto out = model.forward(x);
    loss_sum += torch::nn::functional::cross_entropy(
                    out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += double(out.argmax(1).eq(y).sum().item<int64_t>());
  }
  auto sums = dist.sum({loss_sum, correct});
  double total = double(std::max<int64_t>(n, 1));
  return {sums[0] / total, sums[1] / total};
}

}  // namespace

std::vector<int64_t> rank_shard(const std::vector<int64_t>& order, int64_t batch_size, int rank, int world) {
  if (world == 1) return order;
  std::vector<int64_t> out;
  const int64_t total = int64_t(order.size());
  for (int64_t start = 0; start < total; start += batch_size) {
    const int64_t n = std::min(batch_size, total - start);
    if (n < world) break;
    out.insert(out.end(), order.begin() + start + n * rank / world, order.begin() + start + n * (rank + 1) / world);
  }
  return out;
}

uint32_t parameters_crc32(torch::nn::Module& model) {
  uLong crc = crc32_z(0L, Z_NULL, 0);
  auto add = [&](const torch::Tensor& t) {
    auto c = t.detach().cpu().contiguous();
    crc = crc32_z(crc, static_cast<const Bytef*>(c.data_ptr()), size_t(c.numel()) * c.element_size());
  };
  for (auto& p : model.parameters()) add(p);
  for (auto& b : model.buffers()) add(b);
  return uint32_t(crc);
}

std::string first_non_finite(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters())
    if (p.value().is_floating_point() && !torch::isfinite(p.value()).all().item<bool>())
      return p.key() + (torch::isnan(p.value()).any().item<bool>() ? " (nan)" : " (inf)");
  for (auto& b : model.named_buffers())
    if (b.value().is_floating_point() && !torch::isfinite(b.value()).all().item<bool>())
      return b.key() + (torch::isnan(b.value()).any().item<bool>() ? " (nan)" : " (inf)");
  return "";
}

namespace {

// Serialises into memory (torch's stream writer then cannot fail half-way on a full disk, nor
// throw from its destructor), then writes the bytes with checked POSIX calls (checkpoint.h).
void save_checkpoint(const std::string& path, Net& model, torch::optim::Optimizer& opt, const json& state,
                     const FilterPruner* pruner) {
  std::string payload;
  try {
    torch::serialize::OutputArchive ar, model_ar, opt_ar, prune_ar;
    model.save(model_ar);
    opt.save(opt_ar);
    ar.write("model", model_ar);
    ar.write("optimizer", opt_ar);
    if (pruner) {
      pruner->save(prune_ar);
      ar.write("pruning", prune_ar);
    }
    ar.write("state", c10::IValue(state.dump()));
    ar.save_to([&payload](const void* data, size_t n) -> size_t {
      payload.append(static_cast<const char*>(data), n);
      return n;
    });
  } catch (const c10::Error& e) {
    throw std::runtime_error(path + ": cannot serialise the checkpoint: " + e.what_without_backtrace());
  }
  try {
    write_checkpoint(path, payload);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("cannot write the checkpoint of epoch {} (the previous {} is kept): {}",
                                         state["epoch"].get<int64_t>(), path, e.what()));
  }
}

// Which samples a run trains and tests on: counts and CRC-32 of the images and labels (after the
// subsets). A resumed run may read its data from another --data-dir, but not other data.
json data_fingerprint(const Dataset& train, const Dataset& test) {
  auto crc = [](uLong crc, const torch::Tensor& t) {
    if (!t.defined() || t.numel() == 0) return crc;
    auto c = t.contiguous();
    return crc32_z(crc, static_cast<const Bytef*>(c.data_ptr()), size_t(c.numel()) * c.element_size());
  };
  auto part = [&](const Dataset& d) {
    uLong sum = crc(crc(crc32_z(0L, Z_NULL, 0), d.images), d.labels);
    // Image folders: the file names (relative to the split's folder, so --data-dir may move).
    for (auto& f : d.files) {
      const std::string name = fs::path(f).parent_path().filename().string() + "/" + fs::path(f).filename().string();
      sum = crc32_z(sum, reinterpret_cast<const Bytef*>(name.data()), name.size());
    }
    return json{{"samples", d.size()}, {"crc32", uint32_t(sum)}};
  };
  return json{{"train", part(train)}, {"test", part(test)}};
}

// Reads and verifies the checkpoint, refuses it when it was trained with other settings or other
// data, then loads model and optimizer. Returns the training state.
json load_checkpoint(const std::string& path, Net& model, torch::optim::Optimizer& opt, const torch::Device& device,
                     const TrainConfig& c, const json& data, FilterPruner* pruner) {
  auto refuse = [&](const std::string& why) {
    return std::runtime_error(path + ": cannot resume from this checkpoint: " + why +
                              "\n(start over with another --output, or remove the checkpoint)");
  };
  std::string payload;
  try {
    payload = read_checkpoint(path);  // magic, version, size, CRC-32
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string(e.what()) +
                             "\n--resume does not train from it (start over with another --output, or remove it)");
  }
  torch::serialize::InputArchive ar;
  json state;
  try {
    ar.load_from(payload.data(), payload.size(), device);
    c10::IValue state_value;
    ar.read("state", state_value);
    state = json::parse(state_value.toStringRef());
  } catch (const c10::Error& e) {
    throw refuse(std::string("its archive cannot be read (") + e.what_without_backtrace() + ")");
  } catch (const json::exception& e) {
    throw refuse(std::string("its state is not valid JSON (") + e.what() + ")");
  }
  if (!state.is_object() || !state.contains("config") || !state.contains("epoch"))
    throw refuse("it records no settings");
  auto conflicts = resume_conflicts(state["config"], json(c));
  for (const char* split : {"train", "test"}) {
    const json saved = state.contains("data") ? state["data"].value(split, json()) : json();
    if (saved != data[split])
      conflicts.push_back(fmt::format("{} data: checkpoint {} samples (CRC-32 {:08x}), now {} samples (CRC-32 {:08x})",
                                      split, saved.value("samples", int64_t(-1)), saved.value("crc32", uint32_t(0)),
                                      data[split]["samples"].get<int64_t>(), data[split]["crc32"].get<uint32_t>()));
  }
  if (!conflicts.empty()) {
    std::string msg =
        path + ": cannot resume: this command's settings or data differ from those the checkpoint was trained with:";
    for (auto& line : conflicts) msg += "\n  " + line;
    msg += "\nResume with the checkpoint's settings (summary.json \"config\"), or start over with another --output.";
    throw std::runtime_error(msg);
  }
  try {
    torch::serialize::InputArchive model_ar, opt_ar;
    ar.read("model", model_ar);
    ar.read("optimizer", opt_ar);
    model.load(model_ar);
    opt.load(opt_ar);
  } catch (const c10::Error& e) {
    throw refuse(std::string("model or optimizer state does not fit (") + e.what_without_backtrace() + ")");
  }
  if (pruner) {
    // The masks of the round in progress (the settings check above makes sure it pruned too).
    try {
      torch::serialize::InputArchive prune_ar;
      ar.read("pruning", prune_ar);
      pruner->load(prune_ar, state.value("prune_masks", std::vector<std::string>{}));
    } catch (const c10::Error& e) {
      throw refuse(std::string("its pruning masks cannot be read (") + e.what_without_backtrace() + ")");
    } catch (const std::runtime_error& e) {
      throw refuse(e.what());
    }
  }
  auto bad = first_non_finite(model);
  if (!bad.empty()) throw refuse("parameter " + bad + " is not finite");
  return state;
}

}  // namespace

json run_training(const TrainConfig& config, std::ostream& log) {
  Distributed one_process;
  return run_training(config, log, one_process);
}

json run_training(const TrainConfig& config, std::ostream& log, Distributed& dist) {
  const TrainConfig c = resolve(config);
  const int world = dist.world_size();
  if (c.batch_size % world != 0)
    throw std::invalid_argument(fmt::format(
        "{}: {} is the global batch, split over the {} processes of this run: it must be a multiple of {} "
        "(WORLD_SIZE)",
        describe(*setting_by_key("batch_size")), c.batch_size, world, world));
  const auto t_start = Clock::now();
  torch::Device device(c.device == "cuda" ? torch::kCUDA : torch::kCPU);
  at::set_num_threads(int(c.threads));

  // Data.
  Dataset train, test;
  const int64_t channels = dataset_channels(c.dataset);
  if (c.synthetic) {
    int64_t hw = c.dataset == "cifar10" ? 32 : c.dataset == "imagefolder" ? c.image_size : 28;
    train = make_synthetic(c.synthetic_train_size, channels, hw, hw, c.seed, 1);
    test = make_synthetic(c.synthetic_test_size, channels, hw, hw, c.seed, 2);
  } else {
    load_dataset(c.dataset, c.data_dir, train, test);
  }
  train = take_first(train, c.train_subset);
  test = take_first(test, c.test_subset);
  TransformOptions topt;
  topt.size = c.dataset == "imagefolder" ? c.image_size : 32;
  topt.rotation_degrees = c.rotation;
  topt.crop_padding = c.crop_padding;
  topt.horizontal_flip = c.hflip;
  topt.mean = c.mean;
  topt.std = c.std;

  // Model: initialisation depends on the seed only.
  torch::manual_seed(c.seed);
  ModelOptions mopt;
  mopt.in_channels = channels;
  if (!train.classes.empty()) mopt.num_classes = int64_t(train.classes.size());
  mopt.batch_norm = c.batch_norm;
  std::shared_ptr<Net> model;
  try {
    model = make_model(c.model, mopt, [&](int64_t ch) { return make_activation(c.activation, c.act, ch); });
  } catch (const c10::Error& e) {
    // The activation modules check their options too (torch_rational's messages).
    throw std::invalid_argument(fmt::format("--activation {} with these --act-* options: {}", c.activation,
                                            e.what_without_backtrace()));
  }
  model->to(device);
  {
    // Every rank starts from rank 0's parameters and buffers (as DDP does).
    std::vector<torch::Tensor> state_tensors = model->parameters();
    for (auto& b : model->buffers()) state_tensors.push_back(b);
    dist.broadcast_from_main(state_tensors);
  }
  // Pruning: the masks, and the initial state every round rewinds to (a function of the seed, so a
  // resumed run rebuilds the same one).
  std::unique_ptr<FilterPruner> pruner;
  std::vector<torch::Tensor> init_tensors, live_tensors;
  if (c.prune_rounds > 0) {
    pruner = std::make_unique<FilterPruner>(*model);
    for (auto& p : model->parameters()) live_tensors.push_back(p);
    for (auto& b : model->buffers()) live_tensors.push_back(b);
    for (auto& t : live_tensors) init_tensors.push_back(t.detach().clone());
  }
  const int64_t total_epochs = c.epochs * (c.prune_rounds + 1);
  auto slots = model->activation_slots();
  // The range of the curves in summary.json and of the activations' input histograms.
  constexpr double kCurveLo = -4.0, kCurveHi = 4.0;
  constexpr int64_t kHistogramBins = 80;
  auto grid = torch::linspace(kCurveLo, kCurveHi, 201, torch::kFloat64);

  std::vector<torch::Tensor> act_params, net_params;
  {
    std::set<const void*> act_ids;
    for (auto& s : slots)
      for (auto& p : s.second->parameters()) {
        act_params.push_back(p);
        act_ids.insert(p.unsafeGetTensorImpl());
      }
    for (auto& p : model->parameters())
      if (!act_ids.count(p.unsafeGetTensorImpl())) net_params.push_back(p);
  }
  auto opt = make_optimizer(c, net_params, act_params);

  if (dist.is_main()) fs::create_directories(c.output);
  const std::string ckpt = (fs::path(c.output) / "checkpoint.pt").string();

  json state = {{"epoch", 0}, {"best_test_accuracy", 0.0}, {"best_epoch", 0}, {"metrics", json::array()},
                {"seconds", 0.0}, {"config", c}};
  json init_curves = json::object();
  for (auto& [name, slot] : slots)
    if (slot->learnable()) init_curves[name] = to_vector(slot->curve(grid));
  state["init_curves"] = init_curves;
  const json data = data_fingerprint(train, test);
  state["data"] = data;
  if (pruner) {
    state["prune_masks"] = pruner->names();
    state["pruning"] = json::array();
  }

  // Every rank reads the checkpoint itself, so --output must be on a file system all of them see.
  const bool resuming = c.resume && fs::exists(ckpt);
  for (auto [r, seen] = std::pair{0, dist.all_gather(resuming)}; r < world; ++r)
    if (seen[size_t(r)] != int64_t(resuming))
      throw std::runtime_error(fmt::format(
          "rank {} {} {} but rank {} {}: with several processes --output must be a directory every process sees "
          "(a shared file system)",
          dist.rank(), resuming ? "finds" : "does not find", ckpt, r, seen[size_t(r)] ? "does" : "does not"));
  if (resuming) {
    state = load_checkpoint(ckpt, *model, *opt, device, c, data, pruner.get());
    state["config"] = c;  // harmless differences (threads, more epochs) are this run's from now on
    log << fmt::format("resuming {} after epoch {}\n", ckpt, state["epoch"].get<int64_t>());
  } else if (c.resume) {
    log << fmt::format("--resume: no {} yet, starting from scratch\n", ckpt);
  }
  // After the checkpoint is loaded: the gradient averager holds the parameters it reduces.
  dist.average_gradients_of(model->parameters());
  std::vector<EpochMetrics> metrics = state["metrics"].get<std::vector<EpochMetrics>>();
  std::vector<PruningRow> pruning_rows = state.value("pruning", json::array()).get<std::vector<PruningRow>>();
  const int64_t first_epoch = state["epoch"].get<int64_t>() + 1;
  double seconds_total = state["seconds"].get<double>();

  log << fmt::format("{} on {} ({} train / {} test{}), activation {}, {} on {} ({} threads{}), output {}\n", c.model,
                     c.dataset, train.size(), test.size(), c.synthetic ? ", synthetic" : "", c.activation,
                     c.optimizer, c.device, c.threads,
                     world > 1 ? fmt::format(" x {} processes, {} samples per process and batch", world,
                                             c.batch_size / world)
                               : "",
                     c.output);

  json input_histograms = json::object();  // slot -> what it saw in the last evaluation (all ranks)
  auto summary_of = [&]() {
    json s;
    s["model"] = c.model;
    s["dataset"] = c.dataset;
    s["activation"] = c.activation;
    s["activation_options"] = c.act;
    s["seed"] = c.seed;
    s["epochs"] = metrics.size();
    s["test_accuracy"] = metrics.empty() ? 0.0 : metrics.back().test_accuracy;
    s["best_test_accuracy"] = state["best_test_accuracy"];
    s["best_epoch"] = state["best_epoch"];
    s["final_train_loss"] = metrics.empty() ? 0.0 : metrics.back().train_loss;
    s["seconds"] = seconds_total;
    s["device"] = c.device;
    s["threads"] = c.threads;
    s["world_size"] = world;
    s["config"] = c;
    s["synthetic"] = c.synthetic;
    s["train_size"] = train.size();
    s["test_size"] = test.size();
    s["activation_parameters"] = activation_parameters(slots);
    json curves = json::array();
    auto xs = to_vector(grid);
    for (auto& [name, slot] : slots) {
      if (!slot->learnable()) continue;
      curves.push_back({{"slot", name},
                        {"type", slot->type()},
                        {"x", xs},
                        {"y", to_vector(slot->curve(grid))},
                        {"y_init", state["init_curves"].value(name, std::vector<double>{})},
                        {"input_histogram", input_histograms.value(name, json())}});
    }
    s["activation_curves"] = curves;
    if (pruner) s["pruning"] = pruning_rows;
    return s;
  };

  auto write_outputs = [&]() {
    write_file_atomic((fs::path(c.output) / "metrics.csv").string(), metrics_csv(metrics));
    if (pruner) write_file_atomic((fs::path(c.output) / "pruning.csv").string(), pruning_csv(pruning_rows));
    write_file_atomic((fs::path(c.output) / "summary.json").string(), summary_of().dump(2) + "\n");
  };

  // Epochs are counted over all rounds: round r (0 = unpruned) trains epochs r*E+1 .. (r+1)*E.
  for (int64_t epoch = first_epoch; epoch <= total_epochs; ++epoch) {
    const int64_t round = (epoch - 1) / c.epochs, round_epoch = (epoch - 1) % c.epochs + 1;
    const auto t_epoch = Clock::now();
    // Everything random in this epoch (RPAU noise seeds, rrelu slopes) from (seed, epoch) alone,
    // so a resumed run draws what the uninterrupted one did.
    torch::manual_seed(mix_seed(c.seed, 0xE90C + uint64_t(epoch)) >> 1);
    const double factor = lr_factor(c, round_epoch);  // each round restarts the schedule
    auto& groups = opt->param_groups();
    groups[0].options().set_lr(c.lr * factor);
    if (groups.size() > 1) groups[1].options().set_lr(*c.act_lr * factor);

    model->train();
    // This rank's share of every global batch (all of it on one process).
    std::vector<int64_t> order = epoch_permutation(train.size(), c.seed, epoch);
    if (c.drop_last) order.resize(size_t(train.size() / c.batch_size * c.batch_size));
    const int64_t global_samples = int64_t(order.size());
    BatchLoader loader(train, rank_shard(order, c.batch_size, dist.rank(), world), c.batch_size / world, topt, true,
                       c.seed, epoch, int(c.workers));
    Progress bar(c.progress && dist.is_main(),
                 pruner ? fmt::format("round {}/{} epoch {}/{}", round, c.prune_rounds, round_epoch, c.epochs)
                        : fmt::format("epoch {}/{}", epoch, c.epochs),
                 loader.num_batches());
    double loss_sum = 0;
    int64_t correct = 0, seen = 0, step = 0;
    const auto t_train = Clock::now();
    while (auto b = loader.next()) {
      auto x = b->x.to(device), y = b->y.to(device);
      auto out = model->forward(x);
      auto loss = torch::nn::functional::cross_entropy(out, y);
      opt->zero_grad();
      // The ranks' mean gradients are averaged; a last batch split unevenly weighs each rank's
      // mean by its share, so the result is the mean over the global batch.
      const int64_t global_batch = std::min(c.batch_size, global_samples - step * c.batch_size);
      const int64_t local_batch = y.size(0);
      dist.backward(local_batch * world == global_batch ? loss
                                                         : loss * (double(local_batch * world) / double(global_batch)));
      double l = loss.item<double>();
      if (!std::isfinite(l))
        throw std::runtime_error(fmt::format("training diverged: loss {} at epoch {} step {} ({})", l, epoch,
                                             step + 1, kept_checkpoint(epoch)));
      if (c.clip_grad_norm > 0) {
        double norm = torch::nn::utils::clip_grad_norm_(model->parameters(), c.clip_grad_norm);
        if (!std::isfinite(norm))
          throw std::runtime_error(fmt::format("training diverged: gradient norm {} at epoch {} step {} ({})", norm,
                                               epoch, step + 1, kept_checkpoint(epoch)));
      }
      opt->step();
      if (pruner) pruner->apply();  // pruned filters stay exactly zero
      const int64_t bs = y.size(0);
      loss_sum += l * double(bs);
      correct += out.argmax(1).eq(y).sum().item<int64_t>();
      seen += bs;
      ++step;
      bar.update(step, loss_sum / double(seen), double(correct) / double(seen), double(seen) / since(t_train));
    }
    const double train_seconds = since(t_train);
    if (world > 1) {
      const auto sums = dist.sum({loss_sum, double(correct), double(seen)});
      loss_sum = sums[0];
      correct = int64_t(sums[1]);
      seen = int64_t(sums[2]);
      // BatchNorm statistics are per rank (as in DDP); rank 0's are everyone's from here on. Then
      // every rank must hold the same bits, or the run is not one run.
      std::vector<torch::Tensor> buffers = model->buffers();
      dist.broadcast_from_main(buffers);
      const auto crcs = dist.all_gather(int64_t(parameters_crc32(*model)));
      for (int r = 1; r < world; ++r)
        if (crcs[size_t(r)] != crcs[0])
          throw std::runtime_error(fmt::format(
              "after epoch {} the parameters of rank {} (CRC-32 {:08x}) differ from rank 0's ({:08x}): the processes "
              "diverged ({})",
              epoch, r, uint32_t(crcs[size_t(r)]), uint32_t(crcs[0]), kept_checkpoint(epoch)));
      log << fmt::format("epoch {}: parameters identical on all {} processes (CRC-32 {:08x})\n", epoch, world,
                         uint32_t(crcs[0]));
    }
    // A NaN or inf in any parameter or statistic stops the run before it reaches a checkpoint.
    if (auto bad = first_non_finite(*model); !bad.empty())
      throw std::runtime_error(fmt::format("training diverged: {} is not finite after epoch {} ({})", bad, epoch,
                                           kept_checkpoint(epoch)));
    // Each learnable activation's inputs on the test set, summed over the ranks: report.py shades
    // them under the learned curve (activations.png).
    for (auto& [name, slot] : slots)
      if (slot->learnable()) slot->start_recording(kCurveLo, kCurveHi, kHistogramBins);
    EvalResult ev = evaluate(*model, test, c, topt, device, dist);
    for (auto& [name, slot] : slots) {
      if (!slot->learnable()) continue;
      slot->stop_recording();
      json h = slot->input_histogram();
      h["counts"] = dist.sum(h["counts"].get<std::vector<double>>());
      input_histograms[name] = h;
    }
    if (!std::isfinite(ev.loss))
      throw std::runtime_error(
          fmt::format("training diverged: test loss {} after epoch {} ({})", ev.loss, epoch, kept_checkpoint(epoch)));

    EpochMetrics m;
    m.epoch = epoch;
    m.train_loss = loss_sum / double(std::max<int64_t>(seen, 1));
    m.train_accuracy = double(correct) / double(std::max<int64_t>(seen, 1));
    m.test_loss = ev.loss;
    m.test_accuracy = ev.accuracy;
    m.lr = c.lr * factor;
    m.seconds = since(t_epoch);
    m.images_per_second = double(seen) / std::max(train_seconds, 1e-9);
    metrics.push_back(m);
    seconds_total += m.seconds;
    if (m.test_accuracy > state["best_test_accuracy"].get<double>() || state["best_epoch"].get<int64_t>() == 0) {
      state["best_test_accuracy"] = m.test_accuracy;
      state["best_epoch"] = epoch;
    }
    state["epoch"] = epoch;
    state["metrics"] = metrics;
    state["seconds"] = seconds_total;
    state["config"] = c;
    log << fmt::format("epoch {}/{}: train loss {:.4f} acc {:.4f} | test loss {:.4f} acc {:.4f} | {:.1f} s, {:.0f} img/s\n",
                       epoch, total_epochs, m.train_loss, m.train_accuracy, m.test_loss, m.test_accuracy, m.seconds,
                       m.images_per_second)
        << std::flush;

    if (pruner && round_epoch == c.epochs) {
      // End of a round: its row; then (unless it was the last) prune, rewind and start a fresh optimizer.
      PruningRow r;
      r.round = round;
      r.pruned_fraction = pruner->pruned_fraction();
      r.test_accuracy = ev.accuracy;
      r.test_loss = ev.loss;
      r.alive_filters = pruner->alive_filters();
      r.total_filters = pruner->total_filters();
      pruning_rows.push_back(r);
      state["pruning"] = pruning_rows;
      log << fmt::format("round {}/{}: {:.2f}% of the conv filters pruned ({} of {} alive), test acc {:.4f}\n", round,
                         c.prune_rounds, 100 * r.pruned_fraction, r.alive_filters, r.total_filters, r.test_accuracy);
      if (round < c.prune_rounds) {
        pruner->prune(c.prune_fraction);
        {
          torch::NoGradGuard no_grad;
          for (size_t i = 0; i < live_tensors.size(); ++i) live_tensors[i].copy_(init_tensors[i]);
        }
        pruner->apply();
        opt = make_optimizer(c, net_params, act_params);
        log << fmt::format("pruned: {:.2f}% of the conv filters ({} of {} alive), weights rewound to their init\n",
                           100 * pruner->pruned_fraction(), pruner->alive_filters(), pruner->total_filters())
            << std::flush;
      }
    }

    // Only rank 0 writes. The checkpoint first: metrics.csv and summary.json are rewritten from it on --resume.
    if (!dist.is_main()) continue;
    save_checkpoint(ckpt, *model, *opt, state, pruner.get());
    try {
      write_outputs();
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("{}\n(the checkpoint of epoch {} is saved: --resume rewrites this file)",
                                           e.what(), epoch));
    }
  }
  if (first_epoch > total_epochs && dist.is_main()) {
    // Nothing left to train (resume of a finished run): rewrite the outputs from the checkpoint.
    write_outputs();
  }
  (void)t_start;
  return summary_of();
}

}  // namespace rational_train

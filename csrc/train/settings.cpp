#include "settings.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "torch_rational.h"  // kMaxDegree, kMaxEraFractions

using nlohmann::json;

namespace rational_train {

namespace {
// Learning rates, weight decays and the step factor reach torch as float scalars: 1e6 keeps them
// far from float overflow (torch's "cannot be converted to type float without overflow").
constexpr double kMaxRate = 1e6;
using K = SettingKind;

Setting S(std::string flag, std::string cli, std::string key, K kind, std::optional<double> lo,
          std::optional<double> hi, bool lo_open, bool defines_run, std::string help) {
  return Setting{std::move(flag), std::move(cli), std::move(key), kind, lo, hi, lo_open, defines_run, std::move(help)};
}
}  // namespace

const std::vector<Setting>& settings() {
  // Limits: rates up to kMaxRate; degrees and ERA fractions as the kernels take them (kMaxDegree = 32), PWLU pieces up
  // to 2^20 (kPwluMaxPieces); sizes and counts bounded to catch typos (1e30) before they run.
  static const std::vector<Setting> table = {
      S("--model", "--model,-m", "model", K::String, {}, {}, false, true, "model: lenet, vgg8, mobilenetv2 (CIFAR variant), mobilenetv2_imagenet"),
      S("--dataset", "--dataset,-d", "dataset", K::String, {}, {}, false, true,
        "dataset: mnist, fashion-mnist, cifar10, imagefolder (DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg)"),
      S("--data-dir", "--data-dir", "data_dir", K::String, {}, {}, false, false,
        "data directory (empty: /usr/share/datasets/fashion-mnist, data/mnist, data/cifar10, data/imagenet)"),
      S("--image-size", "--image-size", "image_size", K::Int, 8, 4096, false, true,
        "imagefolder: side of the random-resized (training) and centre (evaluation) crops"),
      S("--synthetic", "--synthetic,!--no-synthetic", "synthetic", K::Bool, {}, {}, false, true,
        "use a small generated data set shaped like --dataset (no files)"),
      S("--synthetic-train-size", "--synthetic-train-size", "synthetic_train_size", K::Int, 1, 10000000, false, true,
        "generated training samples"),
      S("--synthetic-test-size", "--synthetic-test-size", "synthetic_test_size", K::Int, 1, 10000000, false, true,
        "generated test samples"),
      S("--train-subset", "--train-subset", "train_subset", K::Int, 0, {}, false, true,
        "use the first N training samples (0: all)"),
      S("--test-subset", "--test-subset", "test_subset", K::Int, 0, {}, false, true,
        "use the first N test samples (0: all)"),
      S("--activation", "--activation,-a", "activation", K::String, {}, {}, false, true,
        "activation (see the list above)"),
      S("--act-degrees", "--act-degrees", "activation_options.degrees", K::Degrees, 0, torch_rational::kMaxDegree, false, true,
        "rational degrees m,n (numerator 0..32, denominator 1..32)"),
      S("--act-version", "--act-version", "activation_options.version", K::String, {}, {}, false, true,
        "rational version A, B, C or N"),
      S("--act-basis", "--act-basis", "activation_options.basis", K::String, {}, {}, false, true,
        "rational basis: power, chebyshev_t, chebyshev_u, hermite, hermite_e, laguerre, legendre "
        "(empty: the family's)"),
      S("--act-init", "--act-init", "activation_options.init", K::String, {}, {}, false, true,
        "function the activation starts as (empty: leaky_relu for rationals, swish for era, relu for pwlu)"),
      S("--act-groups", "--act-groups", "activation_options.groups", K::Int, -1, {}, false, true,
        "activation groups per slot: 1 (one per slot), -1 (one per channel) or a divisor of the channels"),
      S("--act-noise", "--act-noise", "activation_options.noise", K::Double, 0, {}, false, true,
        "rpau: relative coefficient noise"),
      S("--act-fractions", "--act-fractions", "activation_options.fractions", K::Int, 1, torch_rational::kMaxEraFractions, false, true,
        "era: number of partial fractions"),
      S("--act-pieces", "--act-pieces", "activation_options.pieces", K::Int, 1, 1 << 20, false, true,
        "pwlu: number of pieces"),
      S("--act-realign-steps", "--act-realign-steps", "activation_options.realign_steps", K::Int, 0, {}, false, true,
        "pwlu: realign steps"),
      S("--act-lr", "--act-lr", "act_lr", K::OptionalDouble, 0, kMaxRate, true, true,
        "learning rate of the activation parameters (null / not given: --lr)"),
      S("--act-weight-decay", "--act-weight-decay", "act_weight_decay", K::Double, 0, kMaxRate, false, true,
        "weight decay of the activation parameters"),
      S("--optimizer", "--optimizer", "optimizer", K::String, {}, {}, false, true, "adam, adamw or sgd"),
      S("--lr", "--lr", "lr", K::Double, 0, kMaxRate, true, true, "learning rate"),
      S("--momentum", "--momentum", "momentum", K::Double, 0, 1, false, true, "SGD momentum, in [0, 1]"),
      S("--nesterov", "--nesterov,!--no-nesterov", "nesterov", K::Bool, {}, {}, false, true,
        "SGD Nesterov momentum (needs --momentum > 0)"),
      S("--weight-decay", "--weight-decay", "weight_decay", K::Double, 0, kMaxRate, false, true,
        "weight decay of the network weights"),
      S("--lr-schedule", "--lr-schedule", "lr_schedule", K::String, {}, {}, false, true,
        "none, step or cosine (per epoch)"),
      S("--lr-step", "--lr-step", "lr_step", K::Int, 1, {}, false, true, "step schedule: epochs per step"),
      S("--lr-gamma", "--lr-gamma", "lr_gamma", K::Double, 0, kMaxRate, true, true,
        "step schedule: factor per step (> 0)"),
      S("--clip-grad-norm", "--clip-grad-norm", "clip_grad_norm", K::Double, 0, {}, false, true,
        "max gradient L2 norm (0: off)"),
      S("--batch-size", "--batch-size,-b", "batch_size", K::Int, 1, 1000000, false, true, "training batch size"),
      S("--test-batch-size", "--test-batch-size", "test_batch_size", K::Int, 1, 1000000, false, false,
        "evaluation batch size"),
      S("--drop-last", "--drop-last,!--no-drop-last", "drop_last", K::Bool, {}, {}, false, true,
        "drop the last incomplete training batch"),
      S("--epochs", "--epochs,-e", "epochs", K::Int, 1, 1000000, false, false,
        "epochs (a resumed run may raise it, except under --lr-schedule cosine)"),
      S("--seed", "--seed", "seed", K::UInt, {}, {}, false, true, "random seed (init, data order, augmentation)"),
      S("--rotation", "--rotation", "rotation", K::Double, 0, 180, false, true,
        "random rotation range in degrees (0: off)"),
      S("--crop-padding", "--crop-padding", "crop_padding", K::Int, 0, 64, false, true,
        "random crop with this zero padding (0: off)"),
      S("--hflip", "--hflip,!--no-hflip", "hflip", K::Bool, {}, {}, false, true, "random horizontal flips"),
      S("--mean", "--mean", "mean", K::DoubleList, {}, {}, false, true,
        "normalisation mean, 1 value or one per channel (empty: the dataset's)"),
      S("--std", "--std", "std", K::DoubleList, 0, {}, true, true,
        "normalisation std, 1 value or one per channel, > 0 (empty: the dataset's)"),
      S("--batch-norm", "--batch-norm,!--no-batch-norm", "batch_norm", K::Bool, {}, {}, false, true,
        "VGG-8: BatchNorm after every conv"),
      S("--device", "--device", "device", K::String, {}, {}, false, false, "auto, cpu or cuda"),
      S("--threads", "--threads", "threads", K::Int, 0, 65536, false, false, "CPU threads (0: all cores)"),
      S("--workers", "--workers", "workers", K::Int, 0, 256, false, false,
        "data loader threads (0: in the training thread)"),
      S("--dist-timeout", "--dist-timeout", "dist_timeout", K::Double, 0, 86400, true, false,
        "several processes (torchrun): seconds a process waits for the others before it fails"),
      S("--output", "--output,-o", "output", K::String, {}, {}, false, false, "run directory"),
      S("--resume", "--resume,!--no-resume", "resume", K::Bool, {}, {}, false, false,
        "continue from DIR/checkpoint.pt (if present) with the same settings"),
      S("--progress", "--progress,!--no-progress", "progress", K::Bool, {}, {}, false, false, "progress bar on stderr"),
      S("--prune-rounds", "--prune-rounds", "prune_rounds", K::Int, 0, 1000, false, true,
        "pruning experiment: rounds of prune + rewind + retrain after the first training (0: off)"),
      Setting{"--prune-fraction", "--prune-fraction", "prune_fraction", K::Double, 0, 1, true, true,
              "pruning experiment: fraction of each conv's remaining filters pruned per round, in (0, 1)",
              /*hi_open=*/true},
  };
  return table;
}

const Setting* setting_by_key(const std::string& key) {
  for (auto& s : settings())
    if (s.key == key) return &s;
  return nullptr;
}

const Setting* setting_by_flag(const std::string& flag) {
  for (auto& s : settings())
    if (s.flag == flag) return &s;
  return nullptr;
}

json::json_pointer json_pointer(const Setting& s) {
  std::string p = "/" + s.key;
  for (auto& ch : p)
    if (ch == '.') ch = '/';
  return json::json_pointer(p);
}

std::string describe(const Setting& s) { return s.flag + " (config key " + s.key + ")"; }

std::string type_label(const Setting& s) {
  switch (s.kind) {
    case K::String: return "TEXT";
    case K::Bool: return "";
    case K::Int: return "INT";
    case K::UInt: return "UINT";
    case K::Double: return "FLOAT";
    case K::OptionalDouble: return "FLOAT";
    case K::DoubleList: return "FLOATS";
    case K::Degrees: return "M,N";
  }
  return "";
}

std::string format_value(const Setting& s, const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return v.get<bool>() ? "on" : "off";
  if (v.is_string()) return v.get<std::string>().empty() ? "''" : v.get<std::string>();
  if (v.is_array()) {
    std::string out;
    for (auto& x : v) out += (out.empty() ? "" : ",") + format_value(s, x);
    return out.empty() ? "''" : out;
  }
  if (v.is_number_float()) return fmt::format("{}", v.get<double>());
  return v.dump();
}

void check_range(const Setting& s, const json& v, const std::string& name) {
  if (v.is_array()) {
    for (auto& x : v) check_range(s, x, name);
    return;
  }
  if (!v.is_number()) return;
  const double x = v.get<double>();
  const bool lo_ok = !s.lo || (s.lo_open ? x > *s.lo : x >= *s.lo);
  const bool hi_ok = !s.hi || (s.hi_open ? x < *s.hi : x <= *s.hi);
  if (lo_ok && hi_ok) return;
  std::string range;
  if (s.lo && s.hi)
    range = fmt::format("in {}{}, {}{}", s.lo_open ? "(" : "[", *s.lo, *s.hi, s.hi_open ? ")" : "]");
  else if (s.lo)
    range = fmt::format("{} {}", s.lo_open ? ">" : ">=", *s.lo);
  else
    range = fmt::format("{} {}", s.hi_open ? "<" : "<=", *s.hi);
  throw std::invalid_argument(fmt::format("{}: must be {}, got {}", name, range, format_value(s, v)));
}

namespace {

// Strict number parsing: the whole text, no overflow, a finite value.
std::optional<int64_t> parse_int(const std::string& t) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size() || t.empty()) return std::nullopt;
  return v;
}
std::optional<uint64_t> parse_uint(const std::string& t) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size() || t.empty()) return std::nullopt;
  return v;
}
std::optional<double> parse_double(const std::string& t) {
  double v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size() || t.empty() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::vector<std::string> split_commas(const std::string& t) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    auto c = t.find(',', start);
    out.push_back(t.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

// JSON integer (or integral float) within int64 -> int64; nullopt otherwise.
std::optional<int64_t> json_int(const json& v) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return int64_t(v.get<uint64_t>());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    // 2^63 itself is out of range; every double below it converts exactly.
    if (std::isfinite(d) && std::trunc(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
      return int64_t(d);
  }
  return std::nullopt;
}

std::string kind_text(K kind) {
  switch (kind) {
    case K::String: return "a string";
    case K::Bool: return "true or false";
    case K::Int: return "an integer";
    case K::UInt: return "an integer in [0, 18446744073709551615]";
    case K::Double: return "a finite number";
    case K::OptionalDouble: return "a finite number or null";
    case K::DoubleList: return "a list of finite numbers";
    case K::Degrees: return "[m, n] (two integers)";
  }
  return "";
}

}  // namespace

json parse_flag_value(const Setting& s, const std::string& text) {
  auto bad = [&](const std::string& expected) {
    return std::invalid_argument(fmt::format("{}: expected {}, got '{}'", s.flag, expected, text));
  };
  json v;
  switch (s.kind) {
    case K::String:
      v = text;
      break;
    case K::Bool:
      if (text == "true" || text == "on" || text == "1") v = true;
      else if (text == "false" || text == "off" || text == "0") v = false;
      else throw bad("true or false");
      break;
    case K::Int: {
      auto i = parse_int(text);
      if (!i) throw bad("an integer");
      v = *i;
      break;
    }
    case K::UInt: {
      auto u = parse_uint(text);
      if (!u) throw bad(kind_text(s.kind));
      v = *u;
      break;
    }
    case K::Double:
    case K::OptionalDouble: {
      auto d = parse_double(text);
      if (!d) throw bad("a finite number");
      v = *d;
      break;
    }
    case K::DoubleList: {
      v = json::array();
      if (text.empty()) break;  // "": the dataset's values
      for (auto& part : split_commas(text)) {
        auto d = parse_double(part);
        if (!d) throw bad("comma-separated finite numbers");
        v.push_back(*d);
      }
      break;
    }
    case K::Degrees: {
      auto parts = split_commas(text);
      std::optional<int64_t> m, n;
      if (parts.size() == 2) {
        m = parse_int(parts[0]);
        n = parse_int(parts[1]);
      }
      if (!m || !n) throw bad("m,n (two integers, e.g. 5,4)");
      v = json::array({*m, *n});
      break;
    }
  }
  check_range(s, v, s.flag);
  return v;
}

json check_config_value(const Setting& s, const json& v) {
  const std::string name = "config key " + s.key + " (" + s.flag + ")";
  auto bad = [&]() {
    return std::invalid_argument(fmt::format("{}: expected {}, got {}", name, kind_text(s.kind), v.dump()));
  };
  json out;
  switch (s.kind) {
    case K::String:
      if (!v.is_string()) throw bad();
      out = v;
      break;
    case K::Bool:
      if (!v.is_boolean()) throw bad();
      out = v;
      break;
    case K::Int: {
      auto i = json_int(v);
      if (!i) throw bad();
      out = *i;
      break;
    }
    case K::UInt:
      if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
      } else if (auto i = json_int(v); i && *i >= 0) {
        out = uint64_t(*i);
      } else if (v.is_number_float() && v.get<double>() >= 0 && v.get<double>() < 18446744073709551616.0 &&
                 std::trunc(v.get<double>()) == v.get<double>()) {
        out = uint64_t(v.get<double>());
      } else {
        throw bad();
      }
      break;
    case K::OptionalDouble:
      if (v.is_null()) return v;
      [[fallthrough]];
    case K::Double:
      if (!v.is_number() || !std::isfinite(v.get<double>())) throw bad();
      out = v.get<double>();
      break;
    case K::DoubleList:
      if (!v.is_array()) throw bad();
      out = json::array();
      for (auto& x : v) {
        if (!x.is_number() || !std::isfinite(x.get<double>())) throw bad();
        out.push_back(x.get<double>());
      }
      break;
    case K::Degrees: {
      if (!v.is_array() || v.size() != 2) throw bad();
      auto m = json_int(v[0]), n = json_int(v[1]);
      if (!m || !n) throw bad();
      out = json::array({*m, *n});
      break;
    }
  }
  check_range(s, out, name);
  return out;
}

}  // namespace rational_train

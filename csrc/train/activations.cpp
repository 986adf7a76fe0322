#include "activations.h"

#include <torch/torch.h>
#include "torch_rational.h"  // csrc/ is on torch_rational's include path

#include <fmt/format.h>

#include <sstream>

#include "settings.h"
#include <functional>
#include <stdexcept>
#include <utility>

namespace rational_train {

void to_json(nlohmann::json& j, const ActivationOptions& o) {
  j = nlohmann::json{{"degrees", {o.num_degree, o.den_degree}},
                     {"version", o.version},
                     {"basis", o.basis},
                     {"init", o.init},
                     {"groups", o.groups},
                     {"noise", o.noise},
                     {"fractions", o.fractions},
                     {"pieces", o.pieces},
                     {"realign_steps", o.realign_steps}};
}

void from_json(const nlohmann::json& j, ActivationOptions& o) {
  if (!j.is_object())
    throw std::invalid_argument("config key activation_options: expected a JSON object, got " + j.dump());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& k = it.key();
    const Setting* s = setting_by_key("activation_options." + k);
    if (!s)
      throw std::invalid_argument("config: unknown key 'activation_options." + k +
                                  "' (the keys are listed in docs/training.md)");
    const auto v = check_config_value(*s, it.value());  // type, integer-ness, range
    if (k == "degrees") {
      o.num_degree = v[0].get<int64_t>();
      o.den_degree = v[1].get<int64_t>();
    } else if (k == "version") o.version = v.get<std::string>();
    else if (k == "basis") o.basis = v.get<std::string>();
    else if (k == "init") o.init = v.get<std::string>();
    else if (k == "groups") o.groups = v.get<int64_t>();
    else if (k == "noise") o.noise = v.get<double>();
    else if (k == "fractions") o.fractions = v.get<int64_t>();
    else if (k == "pieces") o.pieces = v.get<int64_t>();
    else if (k == "realign_steps") o.realign_steps = v.get<int64_t>();
    else throw std::logic_error("settings table key activation_options." + k + " has no ActivationOptions member");
  }
}

namespace {

int64_t resolve_groups(int64_t groups, int64_t channels, const std::string& name) {
  if (groups == -1) return channels;
  if (groups < 1 || channels % groups != 0)
    throw std::invalid_argument("--act-groups: " + std::to_string(groups) + " groups do not divide the " +
                                std::to_string(channels) + " channels of a " + name + " slot (use 1, -1 or a divisor)");
  return groups;
}

// (G, ...) parameter -> broadcastable against x (channel dim 1): G == 1 is a scalar per slot,
// otherwise each group covers C / G consecutive channels.
torch::Tensor per_channel(const torch::Tensor& p, const torch::Tensor& x) {
  const int64_t g = p.size(0);
  std::vector<int64_t> shape(std::max<int64_t>(x.dim(), 2), 1);
  if (g == 1) return p.reshape({-1}).reshape(shape);
  TORCH_CHECK(x.dim() >= 2 && x.size(1) % g == 0, "activation with ", g, " groups: input channel dimension 1 (size ",
              x.dim() >= 2 ? x.size(1) : 0, ") must be divisible by the groups");
  shape[1] = x.size(1);
  return p.repeat_interleave(x.size(1) / g).reshape(shape);
}

// max(w1 x + b1, w2 x + b2) per element: Maxout with k = 2 linear pieces of the input itself, so the
// channel count is unchanged. Init (1, 0), (0, 0): exactly ReLU.
struct MaxoutImpl : torch::nn::Module {
  explicit MaxoutImpl(int64_t g) {
    w1 = register_parameter("w1", torch::ones({g}));
    b1 = register_parameter("b1", torch::zeros({g}));
    w2 = register_parameter("w2", torch::zeros({g}));
    b2 = register_parameter("b2", torch::zeros({g}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::max(per_channel(w1, x) * x + per_channel(b1, x), per_channel(w2, x) * x + per_channel(b2, x));
  }
  torch::Tensor w1, b1, w2, b2;
};
TORCH_MODULE(Maxout);

// a x + (1 - a) relu(x): learned mix of identity and ReLU; a = 0 at init (ReLU).
struct MixtureImpl : torch::nn::Module {
  explicit MixtureImpl(int64_t g) { a = register_parameter("a", torch::zeros({g})); }
  torch::Tensor forward(const torch::Tensor& x) {
    auto ac = per_channel(a, x);
    return ac * x + (1 - ac) * torch::relu(x);
  }
  torch::Tensor a;
};
TORCH_MODULE(Mixture);

// Adaptive piecewise linear (Agostinelli et al. 2015): relu(x) + sum_s a_s relu(-x + b_s), S = 2.
// a = 0 at init (ReLU), hinges at b = (0, 1) so both have inputs on their active side.
struct APLImpl : torch::nn::Module {
  explicit APLImpl(int64_t g, int64_t s = 2) {
    a = register_parameter("a", torch::zeros({g, s}));
    b = register_parameter("b", torch::arange(s, torch::kFloat32).repeat({g, 1}).contiguous());
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = torch::relu(x);
    for (int64_t s = 0; s < a.size(1); ++s)
      y = y + per_channel(a.select(1, s), x) * torch::relu(-x + per_channel(b.select(1, s), x));
    return y;
  }
  torch::Tensor a, b;
};
TORCH_MODULE(APL);

// S-shaped ReLU (Jin et al. 2016): identity between t_l and t_r, slopes a_l / a_r outside.
// Init t_l = 0, a_l = 0.01, t_r = 1, a_r = 1: leaky ReLU.
struct SReLUImpl : torch::nn::Module {
  explicit SReLUImpl(int64_t g) {
    t_l = register_parameter("t_l", torch::zeros({g}));
    a_l = register_parameter("a_l", torch::full({g}, 0.01));
    t_r = register_parameter("t_r", torch::ones({g}));
    a_r = register_parameter("a_r", torch::ones({g}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto tl = per_channel(t_l, x), al = per_channel(a_l, x), tr = per_channel(t_r, x), ar = per_channel(a_r, x);
    return torch::where(x >= tr, tr + ar * (x - tr), torch::where(x <= tl, tl + al * (x - tl), x));
  }
  torch::Tensor t_l, a_l, t_r, a_r;
};
TORCH_MODULE(SReLU);

// Fixed activations without a torch::nn module of their own.
struct FunctionImpl : torch::nn::Module {
  explicit FunctionImpl(std::function<torch::Tensor(const torch::Tensor&)> f) : f(std::move(f)) {}
  torch::Tensor forward(const torch::Tensor& x) { return f(x); }
  std::function<torch::Tensor(const torch::Tensor&)> f;
};
TORCH_MODULE(Function);

torch_rational::nn::RationalOptions rational_options(const ActivationOptions& o, int64_t g, const std::string& basis) {
  return torch_rational::nn::RationalOptions(o.num_degree, o.den_degree)
      .version(o.version)
      .basis(o.basis.empty() ? basis : o.basis)
      .init(o.init.empty() ? "leaky_relu" : o.init)
      .num_groups(g)
      .channel_dim(1);
}

}  // namespace

ActivationImpl::ActivationImpl(std::string type, torch::nn::AnyModule fn) : type_(std::move(type)), fn_(std::move(fn)) {
  register_module("fn", fn_.ptr());
}

torch::Tensor ActivationImpl::forward(const torch::Tensor& x) {
  if (recording_) {
    // histc counts [lo, hi] with hi in the last bin; the bins here are [lo, hi), so drop x == hi.
    const torch::Tensor v = x.detach().to(torch::kCPU, torch::kFloat64).flatten();
    const torch::Tensor inside = v.masked_select((v >= hist_lo_) & (v < hist_hi_));
    hist_counts_ += torch::histc(inside, hist_counts_.numel(), hist_lo_, hist_hi_);
  }
  return fn_.forward(x);
}

void ActivationImpl::start_recording(double lo, double hi, int64_t bins) {
  if (!(lo < hi) || bins < 1)
    throw std::invalid_argument(fmt::format("input histogram: need lo < hi and bins >= 1, got [{}, {}), {} bins", lo, hi, bins));
  hist_lo_ = lo;
  hist_hi_ = hi;
  hist_counts_ = torch::zeros({bins}, torch::kFloat64);
  recording_ = true;
}

nlohmann::json ActivationImpl::input_histogram() const {
  if (!hist_counts_.defined()) return nullptr;
  const int64_t bins = hist_counts_.numel();
  std::vector<double> edges(static_cast<size_t>(bins + 1)), counts(static_cast<size_t>(bins));
  for (int64_t i = 0; i <= bins; ++i) edges[size_t(i)] = hist_lo_ + (hist_hi_ - hist_lo_) * double(i) / double(bins);
  const double* c = hist_counts_.data_ptr<double>();
  for (int64_t i = 0; i < bins; ++i) counts[size_t(i)] = c[i];
  return {{"edges", edges}, {"counts", counts}};
}

torch::Tensor ActivationImpl::curve(const torch::Tensor& grid) {
  torch::NoGradGuard no_grad;
  bool was_training = is_training();
  eval();
  auto device = parameters().empty() ? grid.device() : parameters().front().device();
  auto x = grid.to(device, torch::kFloat32).reshape({-1, 1}).expand({grid.numel(), channels_}).contiguous();
  auto y = forward(x).select(1, 0).to(torch::kCPU, torch::kFloat64).contiguous();
  train(was_training);
  return y;
}

namespace {

// The one list of activations: name -> how to build one for a layer of c channels. A new activation
// (or family) is one entry here.
using ActivationFactory = std::function<torch::nn::AnyModule(const ActivationOptions&, int64_t c, const std::string&)>;

const std::vector<std::pair<std::string, ActivationFactory>>& activation_table() {
  using torch::nn::AnyModule;
  namespace tnn = torch::nn;
  namespace trn = torch_rational::nn;
  using O = const ActivationOptions&;
  using S = const std::string&;
  static const std::vector<std::pair<std::string, ActivationFactory>> table = {
      {"relu", [](O, int64_t, S) { return AnyModule(tnn::ReLU()); }},
      {"relu6", [](O, int64_t, S) { return AnyModule(tnn::ReLU6()); }},
      {"leaky_relu", [](O, int64_t, S) { return AnyModule(tnn::LeakyReLU(tnn::LeakyReLUOptions().negative_slope(0.01))); }},
      {"rrelu", [](O, int64_t, S) { return AnyModule(tnn::RReLU()); }},
      {"elu", [](O, int64_t, S) { return AnyModule(tnn::ELU()); }},
      {"celu", [](O, int64_t, S) { return AnyModule(tnn::CELU()); }},
      {"swish", [](O, int64_t, S) { return AnyModule(tnn::SiLU()); }},
      {"silu", [](O, int64_t, S) { return AnyModule(tnn::SiLU()); }},
      {"gelu", [](O, int64_t, S) { return AnyModule(tnn::GELU()); }},
      {"prelu",
       [](O o, int64_t c, S n) {
         return AnyModule(tnn::PReLU(tnn::PReLUOptions().num_parameters(resolve_groups(o.groups, c, n) == 1 ? 1 : c)));
       }},
      {"maxout", [](O o, int64_t c, S n) { return AnyModule(Maxout(resolve_groups(o.groups, c, n))); }},
      {"mixture", [](O o, int64_t c, S n) { return AnyModule(Mixture(resolve_groups(o.groups, c, n))); }},
      {"apl", [](O o, int64_t c, S n) { return AnyModule(APL(resolve_groups(o.groups, c, n))); }},
      {"srelu", [](O o, int64_t c, S n) { return AnyModule(SReLU(resolve_groups(o.groups, c, n))); }},
      {"pau", [](O o, int64_t c, S n) { return AnyModule(trn::PAU(rational_options(o, resolve_groups(o.groups, c, n), "power"))); }},
      {"rpau",
       [](O o, int64_t c, S n) {
         return AnyModule(trn::RPAU(rational_options(o, resolve_groups(o.groups, c, n), "power").noise(o.noise)));
       }},
      {"opau",
       [](O o, int64_t c, S n) { return AnyModule(trn::OPAU(rational_options(o, resolve_groups(o.groups, c, n), "chebyshev_t"))); }},
      {"hp1", [](O o, int64_t c, S n) { return AnyModule(trn::HP1(rational_options(o, resolve_groups(o.groups, c, n), "hermite"))); }},
      {"hp2", [](O o, int64_t c, S n) { return AnyModule(trn::HP2(rational_options(o, resolve_groups(o.groups, c, n), "hermite_e"))); }},
      {"rational",
       [](O o, int64_t c, S n) { return AnyModule(trn::Rational(rational_options(o, resolve_groups(o.groups, c, n), "power"))); }},
      {"era",
       [](O o, int64_t c, S n) {
         return AnyModule(trn::ERA(trn::ERAOptions(o.fractions)
                                       .init(o.init.empty() ? "swish" : o.init)
                                       .num_groups(resolve_groups(o.groups, c, n))
                                       .channel_dim(1)));
       }},
      {"pwlu",
       [](O o, int64_t c, S n) {
         return AnyModule(trn::PWLU(trn::PWLUOptions(o.pieces)
                                        .init(o.init.empty() ? "relu" : o.init)
                                        .num_groups(resolve_groups(o.groups, c, n))
                                        .channel_dim(1)
                                        .realign_steps(o.realign_steps)));
       }},
  };
  return table;
}

}  // namespace

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& entry : activation_table()) v.push_back(entry.first);
    return v;
  }();
  return names;
}

Activation make_activation(const std::string& name, const ActivationOptions& o, int64_t c) {
  torch::nn::AnyModule m;
  for (const auto& [known, factory] : activation_table())
    if (known == name) m = factory(o, c, name);
  if (m.is_empty()) {
    std::ostringstream msg;
    msg << "unknown activation '" << name << "'; known activations:";
    for (auto& n : activation_names()) msg << " " << n;
    throw std::invalid_argument(msg.str());
  }
  Activation a(name == "silu" ? "swish" : name, std::move(m));
  a->set_channels(c);
  return a;
}

}  // namespace rational_train

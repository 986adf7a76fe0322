// rational_train: trains LeNet / VGG-8 / MobileNetV2 with any activation of the factory on MNIST,
// Fashion-MNIST or CIFAR-10 (or a generated set) and writes a run directory (see docs).
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <streambuf>

#include "activations.h"
#include "models.h"
#include "trainer.h"

using nlohmann::json;
using namespace rational_train;

namespace {

// Writes to two stream buffers (stdout and DIR/log.txt).
class TeeBuf : public std::streambuf {
 public:
  TeeBuf(std::streambuf* a, std::streambuf* b) : a_(a), b_(b) {}

 protected:
  int overflow(int ch) override {
    if (ch == EOF) return !EOF;
    if (a_->sputc(char(ch)) == EOF) return EOF;
    if (b_ && b_->sputc(char(ch)) == EOF) return EOF;
    return ch;
  }
  int sync() override {
    int r = a_->pubsync();
    if (b_) b_->pubsync();
    return r;
  }

 private:
  std::streambuf *a_, *b_;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

json read_json_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open config file");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON (" + e.what() + ")");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "rational_train: train LeNet / VGG-8 / MobileNetV2 with a chosen activation (rational or baseline) on "
      "MNIST, Fashion-MNIST or CIFAR-10 and write DIR/{summary.json,metrics.csv,checkpoint.pt,log.txt}.\n"
      "Settings: defaults < --config FILE.json < command-line flags."};
  app.set_version_flag("--version", "rational_train 0.1.0");
  TrainConfig cli;
  std::string config_path, degrees;
  // (option, JSON pointer of the setting) for every flag: a flag given on the command line
  // overrides the config file, an absent one leaves it alone.
  std::vector<std::pair<CLI::Option*, std::string>> bound;
  auto opt = [&](const std::string& names, auto& var, const std::string& key, const std::string& help) {
    bound.emplace_back(app.add_option(names, var, help), key);
    return bound.back().first;
  };
  auto flag = [&](const std::string& names, bool& var, const std::string& key, const std::string& help) {
    bound.emplace_back(app.add_flag(names, var, help), key);
    return bound.back().first;
  };

  app.add_option("--config", config_path, "JSON config file (e.g. configs/lenet_fashion_mnist.json); flags override it")
      ->check(CLI::ExistingFile);
  opt("--model,-m", cli.model, "/model", "model: " + join(model_names()));
  opt("--dataset,-d", cli.dataset, "/dataset", "dataset: mnist, fashion-mnist, cifar10");
  opt("--data-dir", cli.data_dir, "/data_dir",
      "data directory (default: /usr/share/datasets/fashion-mnist, data/mnist, data/cifar10)");
  flag("--synthetic", cli.synthetic, "/synthetic", "use a small generated data set shaped like --dataset (no files)");
  opt("--synthetic-train-size", cli.synthetic_train_size, "/synthetic_train_size", "generated training samples");
  opt("--synthetic-test-size", cli.synthetic_test_size, "/synthetic_test_size", "generated test samples");
  opt("--activation,-a", cli.activation, "/activation", "activation: " + join(activation_names()));
  opt("--act-degrees", degrees, "/activation_options/degrees", "rational degrees m,n (default 5,4)");
  opt("--act-version", cli.act.version, "/activation_options/version", "rational version A, B, C or N");
  opt("--act-basis", cli.act.basis, "/activation_options/basis",
      "rational basis (power, chebyshev_t, chebyshev_u, hermite, hermite_e, laguerre, legendre; default: the family's)");
  opt("--act-init", cli.act.init, "/activation_options/init",
      "function the activation starts as (rationals: leaky_relu; era: swish; pwlu: relu)");
  opt("--act-groups", cli.act.groups, "/activation_options/groups",
      "activation groups per slot: 1 (one per slot), -1 (one per channel) or a divisor of the channels");
  opt("--act-noise", cli.act.noise, "/activation_options/noise", "rpau: relative coefficient noise");
  opt("--act-fractions", cli.act.fractions, "/activation_options/fractions", "era: number of partial fractions");
  opt("--act-pieces", cli.act.pieces, "/activation_options/pieces", "pwlu: number of pieces");
  opt("--act-realign-steps", cli.act.realign_steps, "/activation_options/realign_steps", "pwlu: realign steps");
  opt("--act-lr", cli.act_lr, "/act_lr", "learning rate of activation parameters (default: --lr)");
  opt("--act-weight-decay", cli.act_weight_decay, "/act_weight_decay", "weight decay of activation parameters");
  opt("--optimizer", cli.optimizer, "/optimizer", "adam, adamw or sgd");
  opt("--lr", cli.lr, "/lr", "learning rate");
  opt("--momentum", cli.momentum, "/momentum", "SGD momentum");
  flag("--nesterov,!--no-nesterov", cli.nesterov, "/nesterov", "SGD Nesterov momentum");
  opt("--weight-decay", cli.weight_decay, "/weight_decay", "weight decay of the network weights");
  opt("--lr-schedule", cli.lr_schedule, "/lr_schedule", "none, step or cosine (per epoch)");
  opt("--lr-step", cli.lr_step, "/lr_step", "step schedule: epochs per step");
  opt("--lr-gamma", cli.lr_gamma, "/lr_gamma", "step schedule: factor per step");
  opt("--clip-grad-norm", cli.clip_grad_norm, "/clip_grad_norm", "max gradient L2 norm (<= 0: off)");
  opt("--batch-size,-b", cli.batch_size, "/batch_size", "training batch size");
  opt("--test-batch-size", cli.test_batch_size, "/test_batch_size", "evaluation batch size");
  flag("--drop-last,!--no-drop-last", cli.drop_last, "/drop_last", "drop the last incomplete training batch");
  opt("--epochs,-e", cli.epochs, "/epochs", "epochs");
  opt("--seed", cli.seed, "/seed", "random seed (init, data order, augmentation)");
  opt("--device", cli.device, "/device", "auto, cpu or cuda");
  opt("--threads", cli.threads, "/threads", "CPU threads (0: all cores)");
  opt("--workers", cli.workers, "/workers", "data loader threads (0: in the training thread)");
  opt("--train-subset", cli.train_subset, "/train_subset", "use the first N training samples (0: all)");
  opt("--test-subset", cli.test_subset, "/test_subset", "use the first N test samples (0: all)");
  opt("--rotation", cli.rotation, "/rotation", "random rotation range in degrees (0: off)");
  opt("--crop-padding", cli.crop_padding, "/crop_padding", "random crop with this zero padding (0: off)");
  flag("--hflip,!--no-hflip", cli.hflip, "/hflip", "random horizontal flips");
  opt("--mean", cli.mean, "/mean", "normalisation mean per channel (default: the dataset's)")->delimiter(',');
  opt("--std", cli.std, "/std", "normalisation std per channel (default: the dataset's)")->delimiter(',');
  flag("--batch-norm,!--no-batch-norm", cli.batch_norm, "/batch_norm", "VGG-8: BatchNorm after every conv");
  opt("--output,-o", cli.output, "/output", "run directory");
  flag("--resume,!--no-resume", cli.resume, "/resume", "continue from DIR/checkpoint.pt (if present)");
  flag("--progress,!--no-progress", cli.progress, "/progress", "progress bar on stderr");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    TrainConfig c;
    if (!config_path.empty()) from_json(read_json_file(config_path), c);
    if (!degrees.empty()) {
      int m = -1, n = -1;
      char comma = 0;
      std::istringstream is(degrees);
      if (!(is >> m >> comma >> n) || comma != ',' || m < 0 || n < 0 || !is.eof())
        throw std::invalid_argument("--act-degrees: expected m,n (e.g. 5,4), got '" + degrees + "'");
      cli.act.num_degree = m;
      cli.act.den_degree = n;
    }
    json merged = c, given = cli;
    for (auto& [o, key] : bound)
      if (o->count() > 0) merged[json::json_pointer(key)] = given[json::json_pointer(key)];
    merged.get_to(c);

    std::filesystem::create_directories(c.output);
    std::ofstream logfile((std::filesystem::path(c.output) / "log.txt"), std::ios::app);
    TeeBuf tee(std::cout.rdbuf(), logfile ? logfile.rdbuf() : nullptr);
    std::ostream log(&tee);
    json summary = run_training(c, log);
    log << fmt::format("test accuracy {:.4f} (best {:.4f} at epoch {}), {} epochs in {:.1f} s\n",
                       summary["test_accuracy"].get<double>(), summary["best_test_accuracy"].get<double>(),
                       summary["best_epoch"].get<int64_t>(), summary["epochs"].get<int64_t>(),
                       summary["seconds"].get<double>());
    log << "summary: " << (std::filesystem::path(c.output) / "summary.json").string() << "\n" << std::flush;
    return 0;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
}

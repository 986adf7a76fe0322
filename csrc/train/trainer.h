// Training run of rational_train: the resolved settings, the epoch loop with its run directory
// (metrics.csv, summary.json, checkpoint.pt), and small helpers the tests use.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "activations.h"
#include "distributed.h"
#include "io.h"

namespace rational_train {

struct TrainConfig {
  std::string model = "lenet";
  std::string dataset = "fashion-mnist";  // mnist, fashion-mnist, cifar10, imagefolder
  std::string data_dir = "";              // empty: default_data_dir(dataset)
  bool synthetic = false;                 // generated data shaped like `dataset` (no files)
  int64_t synthetic_train_size = 1024, synthetic_test_size = 256;
  std::string activation = "pau";
  ActivationOptions act;
  std::optional<double> act_lr;   // unset (JSON null): same as lr
  double act_weight_decay = 0.0;  // the papers: no decay on activation parameters
  std::string optimizer = "adam";  // adam, adamw, sgd
  double lr = 2e-3;
  double momentum = 0.9;  // sgd
  bool nesterov = false;
  double weight_decay = 0.0;
  std::string lr_schedule = "none";  // none, step, cosine
  int64_t lr_step = 30;
  double lr_gamma = 0.1;
  double clip_grad_norm = 5.0;  // <= 0: off
  int64_t batch_size = 32, test_batch_size = 1000;  // 32 + Adam 2e-3: LeNet/PAU > 85% on Fashion-MNIST after 1 epoch
  bool drop_last = false;
  int64_t epochs = 1;
  uint64_t seed = 0;
  std::string device = "auto";  // auto, cpu, cuda
  int64_t threads = 0;          // 0: all cores
  int64_t workers = 2;          // data loader threads (0: inline)
  double dist_timeout = 300;    // seconds a process waits for the others (several processes only)
  int64_t train_subset = 0, test_subset = 0;  // 0: all
  int64_t image_size = 224;  // imagefolder: the side of the crops the model sees
  double rotation = 0.0;  // degrees; the PAU paper configs use 30 (its code: RandomRotation(30))
  int64_t crop_padding = 0;
  bool hflip = false;
  std::vector<double> mean, std;  // empty: the dataset's own statistics
  bool batch_norm = true;         // VGG-8: BatchNorm after every conv (the PAU code has none; see docs)
  std::string output = "runs/run";
  bool resume = false;
  bool progress = true;
  // Pruning experiment (pruning.h): after the first --epochs, R rounds of pruning a fraction F of
  // every conv's remaining filters, rewinding to the initial weights and retraining --epochs.
  int64_t prune_rounds = 0;
  double prune_fraction = 0.2;
};

// Keys and value types are those of settings.h (the config file format, also used in
// summary.json "config" and in the checkpoint).
void to_json(nlohmann::json& j, const TrainConfig& c);
// Reads only the keys present (so a config file overrides defaults), each checked for type,
// integer-ness, finiteness and range (settings.h); "source", "comment" and keys starting with "_"
// are documentation; any other key throws std::invalid_argument naming it.
void from_json(const nlohmann::json& j, TrainConfig& c);
// Checks the settings that depend on each other (choices, counts, --nesterov, ...) and fills
// data_dir, mean/std, threads, device and act_lr from the dataset / machine. Throws
// std::invalid_argument naming the flag and config key.
TrainConfig resolve(TrainConfig c);

// The settings of a resumed run that differ from those its checkpoint was trained with, one
// line per setting ("--act-degrees: checkpoint 5,4, now 3,2"); empty when it may resume.
// Both configs resolved (JSON as to_json writes it).
std::vector<std::string> resume_conflicts(const nlohmann::json& checkpoint_config, const nlohmann::json& current);

struct EpochMetrics {
  int64_t epoch = 0;
  double train_loss = 0, train_accuracy = 0, test_loss = 0, test_accuracy = 0, lr = 0, seconds = 0,
         images_per_second = 0;
};
// JSON with the member names as keys (summary.json's "epochs" and "pruning" lists).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(EpochMetrics, epoch, train_loss, train_accuracy, test_loss, test_accuracy, lr,
                                   seconds, images_per_second)

extern const char* const kMetricsHeader;
std::string metrics_csv(const std::vector<EpochMetrics>& rows);

// One training round of the pruning experiment (round 0: the unpruned network).
struct PruningRow {
  int64_t round = 0;
  double pruned_fraction = 0, test_accuracy = 0, test_loss = 0;
  int64_t alive_filters = 0, total_filters = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(PruningRow, round, pruned_fraction, test_accuracy, test_loss, alive_filters,
                                   total_filters)
extern const char* const kPruningHeader;
std::string pruning_csv(const std::vector<PruningRow>& rows);

// The first parameter or buffer (BatchNorm statistics) of `model` holding a NaN or inf, as
// "name (nan)" / "name (inf)"; empty when all are finite.
std::string first_non_finite(torch::nn::Module& model);

// Runs (or resumes) a training run; writes the run directory and returns the summary. On several
// processes (`dist`, distributed.h) --batch-size is the global batch: each rank trains on its
// batch_size / world_size share of every batch, the gradients are averaged over the ranks, and
// only rank 0 writes the run directory.
nlohmann::json run_training(const TrainConfig& config, std::ostream& log);
nlohmann::json run_training(const TrainConfig& config, std::ostream& log, Distributed& dist);

// The samples of `order` rank `rank` of `world` trains on, batch by batch: global batch g (the
// next batch_size samples of `order`) is split into world contiguous shares, rank r's is
// [r*n/world, (r+1)*n/world) of its n samples. A last global batch of fewer than `world` samples
// is dropped (some rank would have none). Rank 0 of 1: `order` itself.
std::vector<int64_t> rank_shard(const std::vector<int64_t>& order, int64_t batch_size, int rank, int world);

// CRC-32 of the bytes of every parameter and buffer: equal on every rank of a healthy run.
uint32_t parameters_crc32(torch::nn::Module& model);

}  // namespace rational_train

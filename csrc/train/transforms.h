// Image transforms on batches (LibTorch has none) and a prefetching, deterministic batch loader.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data.h"

namespace rational_train {

struct TransformOptions {
  int64_t size = 32;            // output height = width (bilinear resize when the data differs)
  double rotation_degrees = 0;  // uniform in [-r, r] per sample (0: off)
  int64_t crop_padding = 0;     // zero-pad by p, then a random crop back to size (0: off)
  bool horizontal_flip = false; // with probability 1/2 per sample
  std::vector<double> mean{0.0};
  std::vector<double> std{1.0};
};

// Per-sample random choices, drawn from (seed, epoch, sample index).
struct SampleAugment {
  double angle_degrees = 0;
  int64_t crop_y = 0, crop_x = 0;
  bool flip = false;
};
SampleAugment draw_augment(const TransformOptions& o, uint64_t seed, int64_t epoch, int64_t index);

// Individual transforms on float (B, C, H, W) batches.
torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t size);
torch::Tensor rotate(const torch::Tensor& x, const std::vector<double>& angles_degrees);
torch::Tensor pad_crop(const torch::Tensor& x, int64_t padding, const std::vector<int64_t>& ys,
                       const std::vector<int64_t>& xs);
torch::Tensor hflip(const torch::Tensor& x, const std::vector<bool>& flips);
torch::Tensor normalize(const torch::Tensor& x, const std::vector<double>& mean, const std::vector<double>& std);

// uint8 images (B, C, H, W) of the samples `indices` -> float normalised batch; augment only
// when `augment` (training).
torch::Tensor transform_batch(const torch::Tensor& images_u8, const std::vector<int64_t>& indices,
                              const TransformOptions& o, bool augment, uint64_t seed, int64_t epoch);

// Image folders (files decoded per batch), as torchvision's ImageNet recipe:
// training: RandomResizedCrop(size, scale (0.08, 1), ratio (3/4, 4/3)) + horizontal flip (when
// o.horizontal_flip); evaluation: Resize(size * 8 / 7, shorter side) + CenterCrop(size). Bilinear,
// without antialiasing. The crop is drawn from (seed, epoch, sample index).
struct CropBox {
  int64_t y = 0, x = 0, height = 0, width = 0;
};
CropBox draw_resized_crop(int64_t height, int64_t width, uint64_t seed, int64_t epoch, int64_t index);
// One float (3, size, size) image in [0, 1] from a decoded uint8 (3, H, W) one.
torch::Tensor train_crop(const torch::Tensor& image_u8, const CropBox& box, bool flip, int64_t size);
torch::Tensor eval_crop(const torch::Tensor& image_u8, int64_t size);
// The normalised batch of `indices` of an image-folder dataset.
torch::Tensor image_file_batch(const Dataset& data, const std::vector<int64_t>& indices, const TransformOptions& o,
                               bool augment, uint64_t seed, int64_t epoch);

// Epoch order: a Fisher-Yates shuffle keyed by (seed, epoch).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

struct Batch {
  torch::Tensor x, y;
};

// Batches of `order` in sequence, built by up to `workers` threads ahead of the consumer. Every
// batch is a pure function of its indices and (seed, epoch), so the result does not depend on the
// number of workers or on timing. workers = 0 builds batches inline.
class BatchLoader {
 public:
  BatchLoader(const Dataset& data, std::vector<int64_t> order, int64_t batch_size, TransformOptions options,
              bool augment, uint64_t seed, int64_t epoch, int workers, bool drop_last = false);
  ~BatchLoader();
  std::optional<Batch> next();
  int64_t num_batches() const { return num_batches_; }

 private:
  Batch make(int64_t b) const;
  void worker_loop();
  const Dataset& data_;
  std::vector<int64_t> order_;
  int64_t batch_size_;
  TransformOptions options_;
  bool augment_;
  uint64_t seed_;
  int64_t epoch_;
  int workers_;
  int64_t num_batches_;
  // Guarded by mutex_: next batch to build, next to hand out, finished batches, first error.
  std::mutex mutex_;
  std::condition_variable cv_;
  int64_t next_build_ = 0, next_take_ = 0;
  bool stop_ = false;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace rational_train

#include "transforms.h"

#include <ATen/Parallel.h>
#include <torch/nn/functional/vision.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "rng.h"

namespace F = torch::nn::functional;

namespace rational_train {

SampleAugment draw_augment(const TransformOptions& o, uint64_t seed, int64_t epoch, int64_t index) {
  SplitMix64 r(mix_seed(seed, 0xA06 + uint64_t(epoch), uint64_t(index)));
  SampleAugment a;
  // Always draw every value so each choice uses the same stream position whatever is enabled.
  double u_angle = r.uniform(), u_y = r.uniform(), u_x = r.uniform(), u_flip = r.uniform();
  if (o.rotation_degrees > 0) a.angle_degrees = (2.0 * u_angle - 1.0) * o.rotation_degrees;
  if (o.crop_padding > 0) {
    a.crop_y = std::min<int64_t>(int64_t(u_y * (2 * o.crop_padding + 1)), 2 * o.crop_padding);
    a.crop_x = std::min<int64_t>(int64_t(u_x * (2 * o.crop_padding + 1)), 2 * o.crop_padding);
  }
  a.flip = o.horizontal_flip && u_flip < 0.5;
  return a;
}

torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t size) {
  if (x.size(2) == size && x.size(3) == size) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{size, size})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

torch::Tensor rotate(const torch::Tensor& x, const std::vector<double>& angles_degrees) {
  const int64_t b = x.size(0);
  TORCH_CHECK(int64_t(angles_degrees.size()) == b, "rotate: angles_degrees needs one angle per sample");
  // Rotation about the image centre in normalised coordinates; zero fill outside, like
  // torchvision's RandomRotation. The grid maps output to input, hence the inverse rotation.
  auto theta = torch::zeros({b, 2, 3}, torch::kFloat64);
  auto acc = theta.accessor<double, 3>();
  for (int64_t i = 0; i < b; ++i) {
    double a = angles_degrees[i] * M_PI / 180.0;
    acc[i][0][0] = std::cos(a);
    acc[i][0][1] = -std::sin(a);
    acc[i][1][0] = std::sin(a);
    acc[i][1][1] = std::cos(a);
  }
  auto grid = F::affine_grid(theta.to(x.dtype()), x.sizes(), /*align_corners=*/false);
  return F::grid_sample(x, grid,
                        F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
}

torch::Tensor pad_crop(const torch::Tensor& x, int64_t padding, const std::vector<int64_t>& ys,
                       const std::vector<int64_t>& xs) {
  const int64_t h = x.size(2), w = x.size(3);
  auto padded = F::pad(x, F::PadFuncOptions({padding, padding, padding, padding}));
  auto out = torch::empty_like(x);
  for (int64_t i = 0; i < x.size(0); ++i)
    out[i].copy_(padded[i].narrow(1, ys[i], h).narrow(2, xs[i], w));
  return out;
}

torch::Tensor hflip(const torch::Tensor& x, const std::vector<bool>& flips) {
  auto out = x.clone();
  for (int64_t i = 0; i < x.size(0); ++i)
    if (flips[i]) out[i].copy_(x[i].flip({-1}));
  return out;
}

torch::Tensor normalize(const torch::Tensor& x, const std::vector<double>& mean, const std::vector<double>& std) {
  const int64_t c = x.size(1);
  TORCH_CHECK(mean.size() == 1 || int64_t(mean.size()) == c, "normalize: mean needs 1 or ", c, " values, got ",
              mean.size());
  TORCH_CHECK(std.size() == mean.size(), "normalize: std needs as many values as mean");
  auto m = torch::tensor(mean, torch::kFloat64).to(x.dtype()).view({1, -1, 1, 1});
  auto s = torch::tensor(std, torch::kFloat64).to(x.dtype()).view({1, -1, 1, 1});
  return (x - m) / s;
}

torch::Tensor transform_batch(const torch::Tensor& images_u8, const std::vector<int64_t>& indices,
                              const TransformOptions& o, bool augment, uint64_t seed, int64_t epoch) {
  auto idx = torch::tensor(indices, torch::kInt64);
  auto x = images_u8.index_select(0, idx).to(torch::kFloat32).div_(255.0);
  x = resize_bilinear(x, o.size);
  if (augment) {
    const int64_t b = x.size(0);
    std::vector<double> angles(b);
    std::vector<int64_t> ys(b), xs(b);
    std::vector<bool> flips(b);
    for (int64_t i = 0; i < b; ++i) {
      auto a = draw_augment(o, seed, epoch, indices[i]);
      angles[i] = a.angle_degrees;
      ys[i] = a.crop_y;
      xs[i] = a.crop_x;
      flips[i] = a.flip;
    }
    if (o.rotation_degrees > 0) x = rotate(x, angles);
    if (o.crop_padding > 0) x = pad_crop(x, o.crop_padding, ys, xs);
    if (o.horizontal_flip) x = hflip(x, flips);
  }
  return normalize(x, o.mean, o.std).contiguous();
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(n);
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  SplitMix64 r(mix_seed(seed, 0x5EED + uint64_t(epoch)));
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = int64_t(r.next() % uint64_t(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

BatchLoader::BatchLoader(const Dataset& data, std::vector<int64_t> order, int64_t batch_size,
                         TransformOptions options, bool augment, uint64_t seed, int64_t epoch, int workers,
                         bool drop_last)
    : data_(data),
      order_(std::move(order)),
      batch_size_(batch_size),
      options_(std::move(options)),
      augment_(augment),
      seed_(seed),
      epoch_(epoch),
      workers_(std::max(0, workers)) {
  TORCH_CHECK(batch_size_ > 0, "batch_size must be positive, got ", batch_size_);
  int64_t n = int64_t(order_.size());
  num_batches_ = drop_last ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
  if (num_batches_ == 0 && n > 0) num_batches_ = 1;  // never an empty epoch for a tiny subset
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

Batch BatchLoader::make(int64_t b) const {
  int64_t start = b * batch_size_;
  int64_t end = std::min<int64_t>(start + batch_size_, int64_t(order_.size()));
  std::vector<int64_t> idx(order_.begin() + start, order_.begin() + end);
  Batch batch;
  batch.x = transform_batch(data_.images, idx, options_, augment_, seed_, epoch_);
  batch.y = data_.labels.index_select(0, torch::tensor(idx, torch::kInt64));
  return batch;
}

void BatchLoader::worker_loop() {
  // Loader threads run their ops single-threaded: a second OpenMP team per loader thread would
  // oversubscribe the cores the training step uses. ATen reads the calling thread's OpenMP
  // thread count after its per-thread lazy initialisation, so this affects this thread only
  // (at::set_num_threads would change the training threads too).
  at::internal::lazy_init_num_threads();
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
  // Persistent threads (not one per batch), at most 2 batches per worker ahead of the consumer.
  const int64_t ahead = 2 * int64_t(workers_);
  while (true) {
    int64_t b;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || next_build_ >= num_batches_ || next_build_ < next_take_ + ahead; });
      if (stop_ || next_build_ >= num_batches_) return;
      b = next_build_++;
    }
    try {
      Batch batch = make(b);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(b, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

std::optional<Batch> BatchLoader::next() {
  if (next_take_ >= num_batches_) return std::nullopt;
  if (workers_ == 0) return make(next_take_++);
  if (threads_.empty())
    for (int i = 0; i < workers_; ++i) threads_.emplace_back([this] { worker_loop(); });
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || ready_.count(next_take_) > 0; });
  if (error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_[next_take_]);
  ready_.erase(next_take_);
  ++next_take_;
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace rational_train

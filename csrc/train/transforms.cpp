#include "transforms.h"

#include <ATen/Parallel.h>
#include <torch/nn/functional/vision.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "image_io.h"
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

CropBox draw_resized_crop(int64_t height, int64_t width, uint64_t seed, int64_t epoch, int64_t index) {
  // torchvision RandomResizedCrop.get_params: 10 tries of an area fraction in [0.08, 1] and a
  // log-uniform aspect ratio in [3/4, 4/3]; failing those, the centre crop of the clamped ratio.
  SplitMix64 r(mix_seed(seed, 0x5E5 + uint64_t(epoch), uint64_t(index)));
  const double area = double(height) * double(width);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (0.08 + 0.92 * r.uniform());
    const double ratio = std::exp(std::log(3.0 / 4.0) + (std::log(4.0 / 3.0) - std::log(3.0 / 4.0)) * r.uniform());
    const int64_t w = int64_t(std::lround(std::sqrt(target * ratio)));
    const int64_t h = int64_t(std::lround(std::sqrt(target / ratio)));
    const double uy = r.uniform(), ux = r.uniform();
    if (w > 0 && h > 0 && w <= width && h <= height)
      return {std::min(int64_t(uy * double(height - h + 1)), height - h),
              std::min(int64_t(ux * double(width - w + 1)), width - w), h, w};
  }
  const double in_ratio = double(width) / double(height);
  int64_t w = width, h = height;
  if (in_ratio < 3.0 / 4.0) h = int64_t(std::lround(double(w) / (3.0 / 4.0)));
  else if (in_ratio > 4.0 / 3.0) w = int64_t(std::lround(double(h) * (4.0 / 3.0)));
  return {(height - h) / 2, (width - w) / 2, h, w};
}

namespace {
torch::Tensor resize_to(const torch::Tensor& x, int64_t height, int64_t width) {
  if (x.size(2) == height && x.size(3) == width) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}
}  // namespace

torch::Tensor train_crop(const torch::Tensor& image_u8, const CropBox& box, bool flip, int64_t size) {
  auto x = image_u8.narrow(1, box.y, box.height).narrow(2, box.x, box.width).unsqueeze(0).to(torch::kFloat32).div_(255.0);
  x = resize_to(x, size, size);
  if (flip) x = x.flip({3});
  return x.squeeze(0);
}

torch::Tensor eval_crop(const torch::Tensor& image_u8, int64_t size) {
  const int64_t h = image_u8.size(1), w = image_u8.size(2), shorter = size * 8 / 7;
  // torchvision Resize(int): the shorter side becomes `shorter`, the longer one keeps the ratio (truncated).
  const int64_t nh = h <= w ? shorter : int64_t(double(shorter) * double(h) / double(w));
  const int64_t nw = h <= w ? int64_t(double(shorter) * double(w) / double(h)) : shorter;
  auto x = resize_to(image_u8.unsqueeze(0).to(torch::kFloat32).div_(255.0), nh, nw);
  // torchvision CenterCrop: offsets rounded from the exact centre.
  const int64_t top = int64_t(std::lround(double(nh - size) / 2.0)), left = int64_t(std::lround(double(nw - size) / 2.0));
  return x.narrow(2, top, size).narrow(3, left, size).squeeze(0);
}

torch::Tensor image_file_batch(const Dataset& data, const std::vector<int64_t>& indices, const TransformOptions& o,
                               bool augment, uint64_t seed, int64_t epoch) {
  std::vector<torch::Tensor> images;
  for (int64_t i : indices) {
    auto image = read_image(data.files[size_t(i)]);
    if (!augment) {
      images.push_back(eval_crop(image, o.size));
      continue;
    }
    const bool flip = o.horizontal_flip && draw_augment(o, seed, epoch, i).flip;
    images.push_back(train_crop(image, draw_resized_crop(image.size(1), image.size(2), seed, epoch, i), flip, o.size));
  }
  return normalize(torch::stack(images), o.mean, o.std);
}

Batch BatchLoader::make(int64_t b) const {
  int64_t start = b * batch_size_;
  int64_t end = std::min<int64_t>(start + batch_size_, int64_t(order_.size()));
  std::vector<int64_t> idx(order_.begin() + start, order_.begin() + end);
  Batch batch;
  batch.x = data_.files.empty() ? transform_batch(data_.images, idx, options_, augment_, seed_, epoch_)
                                : image_file_batch(data_, idx, options_, augment_, seed_, epoch_);
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

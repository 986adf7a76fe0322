#include "data.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "image_io.h"
#include "rng.h"

namespace fs = std::filesystem;

namespace rational_train {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header (not raw zlib).
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(path, "zlib inflateInit2 failed");
  std::vector<uint8_t> out;
  out.resize(in.size() * 4 + 1024);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  int rc = Z_OK;
  while (true) {
    if (zs.total_out >= out.size()) out.resize(out.size() * 2);
    zs.next_out = out.data() + zs.total_out;
    zs.avail_out = static_cast<uInt>(out.size() - zs.total_out);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      inflateEnd(&zs);
      fail(path, "truncated gzip data");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
      inflateEnd(&zs);
      fail(path, "corrupt gzip data (" + msg + ")");
    }
  }
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// "<dir>/<name>.gz" if it exists, else "<dir>/<name>"; the .gz path (for the message) if neither.
std::string find_file(const std::string& dir, const std::string& name) {
  fs::path gz = fs::path(dir) / (name + ".gz");
  fs::path raw = fs::path(dir) / name;
  if (fs::exists(gz)) return gz.string();
  if (fs::exists(raw)) return raw.string();
  throw std::runtime_error(gz.string() + ": file not found (nor " + raw.string() + ")");
}

}  // namespace

std::vector<uint8_t> read_file_maybe_gz(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "file not found");
  if (fs::is_directory(path, ec)) fail(path, "is a directory, expected a file");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open for reading");
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) fail(path, "read error");
  if (data.size() >= 2 && data[0] == 0x1f && data[1] == 0x8b) return gunzip(data, path);
  return data;
}

torch::Tensor read_idx(const std::string& path, int expected_ndim) {
  auto data = read_file_maybe_gz(path);
  if (data.size() < 4) fail(path, "too short for an IDX header (" + std::to_string(data.size()) + " bytes)");
  if (data[0] != 0 || data[1] != 0 || data[2] != 0x08) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "0x%02x%02x%02x%02x", data[0], data[1], data[2], data[3]);
    fail(path, std::string("bad IDX magic number ") + buf + " (expected 0x000008NN: unsigned bytes)");
  }
  int ndim = data[3];
  if (ndim < 1 || (expected_ndim > 0 && ndim != expected_ndim))
    fail(path, "IDX file has " + std::to_string(ndim) + " dimensions, expected " + std::to_string(expected_ndim));
  size_t header = 4 + 4 * size_t(ndim);
  if (data.size() < header) fail(path, "truncated IDX header");
  std::vector<int64_t> dims;
  size_t expected = 1;
  for (int d = 0; d < ndim; ++d) {
    dims.push_back(be32(data.data() + 4 + 4 * d));
    expected *= size_t(dims.back());
  }
  size_t body = data.size() - header;
  if (body != expected)
    fail(path, "IDX data holds " + std::to_string(body) + " bytes, the header says " + std::to_string(expected) +
                   (body < expected ? " (truncated file)" : " (trailing bytes)"));
  auto t = torch::empty(dims, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), data.data() + header, expected);
  return t;
}

Dataset load_mnist_split(const std::string& dir, const std::string& split) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error(dir + ": data directory not found");
  auto images = read_idx(find_file(dir, split + "-images-idx3-ubyte"), 3);
  auto labels_path = find_file(dir, split + "-labels-idx1-ubyte");
  auto labels = read_idx(labels_path, 1);
  if (labels.size(0) != images.size(0))
    fail(labels_path, "holds " + std::to_string(labels.size(0)) + " labels for " + std::to_string(images.size(0)) +
                          " images");
  if (labels.max().item<int64_t>() > 9) fail(labels_path, "label above 9");
  return {images.unsqueeze(1).contiguous(), labels.to(torch::kInt64)};
}

Dataset read_cifar_file(const std::string& path) {
  constexpr size_t kRecord = 3073;
  auto data = read_file_maybe_gz(path);
  if (data.empty() || data.size() % kRecord != 0)
    fail(path, "size " + std::to_string(data.size()) + " is not a positive multiple of the 3073-byte CIFAR-10 record"
                   " (truncated or not a CIFAR-10 binary file)");
  int64_t n = int64_t(data.size() / kRecord);
  auto images = torch::empty({n, 3, 32, 32}, torch::kUInt8);
  auto labels = torch::empty({n}, torch::kInt64);
  auto* img = images.data_ptr<uint8_t>();
  auto* lab = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* rec = data.data() + i * kRecord;
    if (rec[0] > 9) fail(path, "record " + std::to_string(i) + " has label " + std::to_string(rec[0]) + " (above 9)");
    lab[i] = rec[0];
    std::memcpy(img + i * 3072, rec + 1, 3072);
  }
  return {images, labels};
}

Dataset load_cifar10_split(const std::string& dir, bool train) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error(dir + ": data directory not found");
  std::string base = dir;
  if (!fs::exists(fs::path(dir) / "test_batch.bin") && fs::is_directory(fs::path(dir) / "cifar-10-batches-bin"))
    base = (fs::path(dir) / "cifar-10-batches-bin").string();
  std::vector<std::string> names;
  if (train)
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  else
    names.push_back("test_batch.bin");
  std::vector<torch::Tensor> xs, ys;
  for (auto& n : names) {
    auto d = read_cifar_file((fs::path(base) / n).string());
    xs.push_back(d.images);
    ys.push_back(d.labels);
  }
  return {torch::cat(xs), torch::cat(ys)};
}

Dataset make_synthetic(int64_t n, int64_t channels, int64_t height, int64_t width, uint64_t seed, uint64_t split) {
  // Ten fixed random templates (smooth blobs) with per-sample noise and brightness.
  const int64_t hw = height * width;
  std::vector<float> templates(10 * channels * hw);
  SplitMix64 trng(mix_seed(seed, 0x5157));
  for (int c = 0; c < 10; ++c) {
    double cy = trng.uniform() * height, cx = trng.uniform() * width;
    double sy = 2.0 + trng.uniform() * height / 3.0, sx = 2.0 + trng.uniform() * width / 3.0;
    for (int64_t ch = 0; ch < channels; ++ch)
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          double v = std::exp(-((y - cy) * (y - cy) / (2 * sy * sy) + (x - cx) * (x - cx) / (2 * sx * sx)));
          templates[(c * channels + ch) * hw + y * width + x] = float(200.0 * v);
        }
  }
  auto images = torch::empty({n, channels, height, width}, torch::kUInt8);
  auto labels = torch::empty({n}, torch::kInt64);
  auto* img = images.data_ptr<uint8_t>();
  auto* lab = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    SplitMix64 r(mix_seed(seed, split, 0x1000 + uint64_t(i)));
    int c = int(r.next() % 10);
    lab[i] = c;
    double gain = 0.7 + 0.6 * r.uniform();
    for (int64_t k = 0; k < channels * hw; ++k) {
      double v = gain * templates[c * channels * hw + k] + 40.0 * r.uniform();
      img[i * channels * hw + k] = uint8_t(std::min(255.0, std::max(0.0, v)));
    }
  }
  return {images, labels};
}

Dataset take_first(const Dataset& d, int64_t n) {
  if (n <= 0 || n >= d.size()) return d;
  Dataset out = d;
  if (d.images.defined()) out.images = d.images.narrow(0, 0, n);
  out.labels = d.labels.narrow(0, 0, n);
  if (!d.files.empty()) out.files.resize(size_t(n));
  return out;
}

Dataset load_image_folder_split(const std::string& dir, const std::string& split,
                                const std::vector<std::string>& classes) {
  const fs::path root = fs::path(dir) / split;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw std::runtime_error(root.string() + ": folder not found");
  Dataset d;
  if (classes.empty()) {
    for (auto& e : fs::directory_iterator(root))
      if (e.is_directory()) d.classes.push_back(e.path().filename().string());
    std::sort(d.classes.begin(), d.classes.end());
    if (d.classes.empty()) fail(root.string(), "holds no class folders (expected " + split + "/<class>/<image>)");
  } else {
    d.classes = classes;
    for (auto& e : fs::directory_iterator(root))
      if (e.is_directory() &&
          std::find(classes.begin(), classes.end(), e.path().filename().string()) == classes.end())
        fail(e.path().string(), "class folder not among the training split's classes");
  }
  std::vector<int64_t> labels;
  for (size_t c = 0; c < d.classes.size(); ++c) {
    const fs::path folder = root / d.classes[c];
    if (!fs::is_directory(folder, ec)) continue;  // a val split may lack a class
    std::vector<std::string> files;
    for (auto& e : fs::directory_iterator(folder)) {
      if (!e.is_regular_file()) continue;
      if (!is_image_file(e.path().string()))
        fail(e.path().string(), "not a .jpg, .jpeg or .png file (the image folder reads JPEG and PNG only)");
      files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());  // directory order is the file system's: sort for a fixed order
    for (auto& f : files) {
      d.files.push_back(f);
      labels.push_back(int64_t(c));
    }
  }
  if (d.files.empty()) fail(root.string(), "holds no images");
  d.labels = torch::tensor(labels, torch::kInt64);
  return d;
}

std::string default_data_dir(const std::string& dataset) {
  if (dataset == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (dataset == "mnist") return "data/mnist";
  if (dataset == "cifar10") return "data/cifar10";
  if (dataset == "imagefolder") return "data/imagenet";
  return "data";
}

int64_t dataset_channels(const std::string& dataset) { return dataset == "cifar10" || dataset == "imagefolder" ? 3 : 1; }

std::string dataset_files_help(const std::string& name) {
  const std::string idx =
      "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
      "(each also as .gz)";
  if (name == "mnist")
    return "expected the MNIST files " + idx +
           "; official copies: http://yann.lecun.com/exdb/mnist/ (mirror used by torchvision: "
           "https://ossci-datasets.s3.amazonaws.com/mnist/)";
  if (name == "fashion-mnist")
    return "expected the Fashion-MNIST files " + idx +
           "; official copies: https://github.com/zalandoresearch/fashion-mnist "
           "(http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/), or the Debian package "
           "dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist)";
  if (name == "cifar10")
    return "expected the CIFAR-10 binary files data_batch_1.bin ... data_batch_5.bin and test_batch.bin (directly "
           "or in cifar-10-batches-bin/); official copy: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
  if (name == "imagefolder")
    return "expected train/<class>/<image> and val/<class>/<image> folders of .jpg/.jpeg/.png files (the same class "
           "folder names in both); ImageNet (ILSVRC2012): https://image-net.org/download.php, its validation images "
           "sorted into class folders (e.g. by valprep.sh of https://github.com/pytorch/examples/tree/main/imagenet)";
  return "";
}

void load_dataset(const std::string& name, const std::string& dir, Dataset& train, Dataset& test) {
  std::error_code ec;
  if (name != "mnist" && name != "fashion-mnist" && name != "cifar10" && name != "imagefolder")
    throw std::runtime_error("unknown dataset '" + name + "' (expected mnist, fashion-mnist, cifar10 or imagefolder)");
  if (!fs::is_directory(dir, ec))
    throw std::runtime_error(dir + ": data directory of " + name + " not found (--data-dir); " + dataset_files_help(name));
  try {
    if (name == "mnist" || name == "fashion-mnist") {
      train = load_mnist_split(dir, "train");
      test = load_mnist_split(dir, "t10k");
    } else if (name == "cifar10") {
      train = load_cifar10_split(dir, true);
      test = load_cifar10_split(dir, false);
    } else {
      train = load_image_folder_split(dir, "train");
      test = load_image_folder_split(dir, "val", train.classes);
    }
  } catch (const std::runtime_error& e) {
    // A missing file: the directory is incomplete, so say what a complete one holds.
    const std::string what = e.what();
    if (what.find("not found") == std::string::npos) throw;
    throw std::runtime_error(what + "\n" + dir + ": incomplete " + name + " directory: " + dataset_files_help(name));
  }
}

}  // namespace rational_train

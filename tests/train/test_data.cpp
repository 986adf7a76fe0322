// Readers (IDX, CIFAR-10) on files written here in the real formats, transforms and the loader.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "data.h"
#include "transforms.h"
#include "train_test_utils.h"

namespace fs = std::filesystem;
using namespace rational_train_test;
using namespace rational_train;

namespace {

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

void write_gz(const fs::path& p, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(p.string().c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, b.data(), unsigned(b.size())), int(b.size()));
  gzclose(f);
}

// IDX of unsigned bytes, big-endian dims, the data i * 7 + 3 (mod 256).
std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims) {
  std::vector<uint8_t> b = {0, 0, 0x08, uint8_t(dims.size())};
  size_t n = 1;
  for (auto d : dims) {
    b.push_back(uint8_t(d >> 24));
    b.push_back(uint8_t(d >> 16));
    b.push_back(uint8_t(d >> 8));
    b.push_back(uint8_t(d));
    n *= d;
  }
  for (size_t i = 0; i < n; ++i) b.push_back(uint8_t((i * 7 + 3) % 256));
  return b;
}

void expect_idx_values(const torch::Tensor& t, const std::vector<int64_t>& dims) {
  ASSERT_EQ(t.sizes().vec(), dims);
  auto flat = t.reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) ASSERT_EQ(flat[i].item<int64_t>(), (i * 7 + 3) % 256) << i;
}

}  // namespace

TEST(IdxReader, ReadsRawAndGzip) {
  auto d = temp_dir("idx");
  write_bytes(d / "raw-idx3", idx_bytes({5, 4, 3}));
  write_gz(d / "packed-idx3.gz", idx_bytes({5, 4, 3}));
  expect_idx_values(read_idx((d / "raw-idx3").string(), 3), {5, 4, 3});
  expect_idx_values(read_idx((d / "packed-idx3.gz").string(), 3), {5, 4, 3});
  fs::remove_all(d);
}

TEST(IdxReader, BadMagicNamesFile) {
  auto d = temp_dir("idxmagic");
  auto b = idx_bytes({2, 2});
  b[2] = 0x0D;  // float data, not unsigned bytes
  write_bytes(d / "bad", b);
  auto msg = error_of([&] { read_idx((d / "bad").string()); });
  EXPECT_NE(msg.find((d / "bad").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(IdxReader, TruncatedAndWrongRank) {
  auto d = temp_dir("idxtrunc");
  auto b = idx_bytes({10, 4, 4});
  b.resize(b.size() - 5);
  write_bytes(d / "short", b);
  auto msg = error_of([&] { read_idx((d / "short").string(), 3); });
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find((d / "short").string()), std::string::npos) << msg;
  // A gzip stream cut in the middle.
  write_gz(d / "full.gz", idx_bytes({50, 8, 8}));
  std::ifstream in(d / "full.gz", std::ios::binary);
  std::vector<uint8_t> gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  gz.resize(gz.size() / 2);
  write_bytes(d / "cut.gz", gz);
  msg = error_of([&] { read_idx((d / "cut.gz").string(), 3); });
  EXPECT_NE(msg.find((d / "cut.gz").string()), std::string::npos) << msg;
  // Rank 1 where rank 3 is expected.
  write_bytes(d / "labels", idx_bytes({7}));
  msg = error_of([&] { read_idx((d / "labels").string(), 3); });
  EXPECT_NE(msg.find("dimensions"), std::string::npos) << msg;
  // Header only.
  write_bytes(d / "tiny", {0, 0});
  EXPECT_FALSE(error_of([&] { read_idx((d / "tiny").string()); }).empty());
  fs::remove_all(d);
}

TEST(IdxReader, MissingFileAndDirectoryAreNamed) {
  auto d = temp_dir("idxmissing");
  auto msg = error_of([&] { read_idx((d / "nope.gz").string()); });
  EXPECT_NE(msg.find((d / "nope.gz").string()), std::string::npos) << msg;
  msg = error_of([&] { load_mnist_split((d / "absent").string(), "train"); });
  EXPECT_NE(msg.find((d / "absent").string()), std::string::npos) << msg;
  msg = error_of([&] { load_mnist_split(d.string(), "train"); });  // directory without the files
  EXPECT_NE(msg.find("train-images-idx3-ubyte"), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(IdxReader, MnistSplitFromMixedFiles) {
  auto d = temp_dir("mnist");
  write_gz(d / "t10k-images-idx3-ubyte.gz", idx_bytes({6, 28, 28}));
  auto labels = idx_bytes({6});
  for (size_t i = 8; i < labels.size(); ++i) labels[i] = uint8_t((i - 8) % 10);
  write_bytes(d / "t10k-labels-idx1-ubyte", labels);
  auto ds = load_mnist_split(d.string(), "t10k");
  EXPECT_EQ(ds.images.sizes().vec(), (std::vector<int64_t>{6, 1, 28, 28}));
  EXPECT_EQ(ds.labels.dtype(), torch::kInt64);
  EXPECT_EQ(ds.labels[5].item<int64_t>(), 5);
  // Label count disagreeing with the image count.
  write_bytes(d / "t10k-labels-idx1-ubyte", idx_bytes({5}));
  auto msg = error_of([&] { load_mnist_split(d.string(), "t10k"); });
  EXPECT_NE(msg.find("t10k-labels-idx1-ubyte"), std::string::npos) << msg;
  fs::remove_all(d);
}

namespace {
std::vector<uint8_t> cifar_records(int n) {
  std::vector<uint8_t> b;
  for (int r = 0; r < n; ++r) {
    b.push_back(uint8_t(r % 10));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) b.push_back(uint8_t((r * 31 + c * 100 + p) % 256));
  }
  return b;
}
}  // namespace

TEST(CifarReader, RecordsAndPlanes) {
  auto d = temp_dir("cifar");
  write_bytes(d / "test_batch.bin", cifar_records(3));
  auto ds = read_cifar_file((d / "test_batch.bin").string());
  ASSERT_EQ(ds.images.sizes().vec(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(ds.labels[2].item<int64_t>(), 2);
  // Record 2, channel 1 (G plane), row 3, column 5: plane offset p = 3 * 32 + 5.
  EXPECT_EQ(ds.images[2][1][3][5].item<int64_t>(), (2 * 31 + 100 + 3 * 32 + 5) % 256);
  for (int i = 1; i <= 5; ++i) write_bytes(d / ("data_batch_" + std::to_string(i) + ".bin"), cifar_records(2));
  EXPECT_EQ(load_cifar10_split(d.string(), true).size(), 10);
  EXPECT_EQ(load_cifar10_split(d.string(), false).size(), 3);
  fs::remove_all(d);
}

TEST(CifarReader, TruncatedMissingBadLabel) {
  auto d = temp_dir("cifarbad");
  auto b = cifar_records(2);
  b.resize(b.size() - 100);
  write_bytes(d / "test_batch.bin", b);
  auto msg = error_of([&] { read_cifar_file((d / "test_batch.bin").string()); });
  EXPECT_NE(msg.find("3073"), std::string::npos) << msg;
  EXPECT_NE(msg.find((d / "test_batch.bin").string()), std::string::npos) << msg;
  msg = error_of([&] { load_cifar10_split(d.string(), true); });
  EXPECT_NE(msg.find("data_batch_1.bin"), std::string::npos) << msg;
  b = cifar_records(1);
  b[0] = 12;
  write_bytes(d / "test_batch.bin", b);
  msg = error_of([&] { read_cifar_file((d / "test_batch.bin").string()); });
  EXPECT_NE(msg.find("label"), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(Transforms, ResizeShapesAndConstant) {
  auto x = torch::full({2, 1, 28, 28}, 0.25);
  auto y = resize_bilinear(x, 32);
  EXPECT_EQ(y.sizes().vec(), (std::vector<int64_t>{2, 1, 32, 32}));
  EXPECT_TRUE(torch::allclose(y, torch::full_like(y, 0.25)));
}

TEST(Transforms, FlipIsMirrorOfSelectedSamples) {
  auto x = torch::arange(2 * 3 * 4 * 5, torch::kFloat32).reshape({2, 3, 4, 5});
  auto y = hflip(x, {true, false});
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t h = 0; h < 4; ++h)
      for (int64_t w = 0; w < 5; ++w) {
        EXPECT_EQ(y[0][c][h][w].item<float>(), x[0][c][h][4 - w].item<float>());
        EXPECT_EQ(y[1][c][h][w].item<float>(), x[1][c][h][w].item<float>());
      }
}

TEST(Transforms, PadCropOffsets) {
  auto x = torch::rand({1, 1, 6, 6});
  EXPECT_TRUE(torch::equal(pad_crop(x, 2, {2}, {2}), x));  // centred crop: identity
  auto y = pad_crop(x, 2, {0}, {1});                        // content moves down 2, right 1
  for (int64_t h = 0; h < 6; ++h)
    for (int64_t w = 0; w < 6; ++w) {
      float expect = (h - 2 >= 0 && w - 1 >= 0) ? x[0][0][h - 2][w - 1].item<float>() : 0.0f;
      EXPECT_EQ(y[0][0][h][w].item<float>(), expect) << h << "," << w;
    }
}

TEST(Transforms, RotationIdentityAndQuarterTurn) {
  auto x = torch::rand({2, 1, 8, 8});
  EXPECT_TRUE(torch::allclose(rotate(x, {0.0, 0.0}), x, 1e-5, 1e-6));
  auto r = rotate(x, {90.0, -90.0});
  // A quarter turn of a square image is a pure index permutation (both senses, one each).
  auto a = torch::rot90(x[0], 1, {1, 2}), b = torch::rot90(x[0], -1, {1, 2});
  bool ccw = torch::allclose(r[0], a, 1e-4, 1e-5), cw = torch::allclose(r[0], b, 1e-4, 1e-5);
  EXPECT_TRUE(ccw || cw);
  // The opposite angle turns sample 1 the other way.
  EXPECT_TRUE(torch::allclose(r[1], torch::rot90(x[1], ccw ? -1 : 1, {1, 2}), 1e-4, 1e-5));
}

TEST(Transforms, NormalizePerChannel) {
  auto x = torch::ones({1, 2, 2, 2});
  auto y = normalize(x, {0.5, 0.0}, {0.25, 2.0});
  EXPECT_FLOAT_EQ(y[0][0][0][0].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(y[0][1][1][1].item<float>(), 0.5f);
}

TEST(Transforms, AugmentationDeterministicPerSeedEpochIndex) {
  auto ds = make_synthetic(8, 1, 28, 28, 3, 1);
  TransformOptions o;
  o.rotation_degrees = 30;
  o.crop_padding = 4;
  o.horizontal_flip = true;
  o.mean = {0.1307};
  o.std = {0.3081};
  std::vector<int64_t> idx = {0, 3, 5};
  auto a = transform_batch(ds.images, idx, o, true, 7, 1);
  auto b = transform_batch(ds.images, idx, o, true, 7, 1);
  EXPECT_EQ(a.sizes().vec(), (std::vector<int64_t>{3, 1, 32, 32}));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, transform_batch(ds.images, idx, o, true, 7, 2)));
  // A sample's augmentation does not depend on its batch neighbours.
  auto single = transform_batch(ds.images, {3}, o, true, 7, 1);
  EXPECT_TRUE(torch::equal(single[0], a[1]));
  auto ev = transform_batch(ds.images, idx, o, false, 7, 1);
  EXPECT_TRUE(torch::equal(ev, transform_batch(ds.images, idx, o, false, 8, 9)));
}

TEST(Loader, PermutationAndWorkersDoNotChangeBatches) {
  auto p = epoch_permutation(100, 1, 1);
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(p, epoch_permutation(100, 1, 1));
  EXPECT_NE(p, epoch_permutation(100, 1, 2));
  EXPECT_NE(p, epoch_permutation(100, 2, 1));

  auto ds = make_synthetic(70, 1, 28, 28, 1, 1);
  TransformOptions o;
  o.rotation_degrees = 30;
  auto collect = [&](int workers) {
    BatchLoader l(ds, epoch_permutation(70, 1, 1), 16, o, true, 1, 1, workers);
    std::vector<Batch> out;
    while (auto b = l.next()) out.push_back(*b);
    return out;
  };
  auto inline_batches = collect(0), threaded = collect(3);
  ASSERT_EQ(inline_batches.size(), 5u);
  ASSERT_EQ(threaded.size(), 5u);
  EXPECT_EQ(inline_batches.back().x.size(0), 70 - 64);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_TRUE(torch::equal(inline_batches[i].x, threaded[i].x));
    EXPECT_TRUE(torch::equal(inline_batches[i].y, threaded[i].y));
  }
}

TEST(Loader, AbandonedEarlyJoinsCleanly) {
  auto ds = make_synthetic(200, 1, 28, 28, 1, 1);
  BatchLoader l(ds, epoch_permutation(200, 1, 1), 8, TransformOptions{}, false, 1, 1, 2);
  ASSERT_TRUE(l.next().has_value());
}

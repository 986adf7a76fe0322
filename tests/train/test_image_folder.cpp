// The image-folder dataset: JPEG / PNG files written here are read back, the folder layout gives
// the classes, the evaluation and training crops follow torchvision's ImageNet transforms, a
// missing dataset directory names the files expected and their official source, and a short run
// trains on a folder.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <regex>

#include "checkpoint.h"
#include "data.h"
#include "image_io.h"
#include "models.h"
#include "train_test_utils.h"
#include "trainer.h"
#include "transforms.h"

namespace fs = std::filesystem;
using namespace rational_train_test;
using namespace rational_train;

namespace {

torch::Tensor random_image(int64_t h, int64_t w, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {3, h, w}, torch::kUInt8);
}

// A smooth image (JPEG keeps it within a few levels): a colour gradient per channel.
torch::Tensor smooth_image(int64_t h, int64_t w, int channel_shift) {
  auto y = torch::arange(h, torch::kFloat64).view({1, h, 1}), x = torch::arange(w, torch::kFloat64).view({1, 1, w});
  auto c = torch::arange(3, torch::kFloat64).view({3, 1, 1}) + channel_shift;
  return (40 + 60 * c + 2 * y + x).clamp(0, 255).to(torch::kUInt8);
}

// DIR/{train,val}/<class>/<n>.{jpg,png}, classes given unsorted.
void write_folder(const fs::path& dir, int train_per_class, int val_per_class, int64_t side) {
  const std::vector<std::string> classes = {"zebra", "ant", "moth"};
  for (auto [split, n] : {std::pair{"train", train_per_class}, std::pair{"val", val_per_class}})
    for (size_t c = 0; c < classes.size(); ++c) {
      fs::create_directories(dir / split / classes[c]);
      for (int i = 0; i < n; ++i) {
        auto img = smooth_image(side + i, side + 3, int(c) * 2);
        auto path = dir / split / classes[c] / (std::to_string(i) + (i % 2 ? ".png" : ".JPG"));
        if (i % 2) write_png(path.string(), img);
        else write_jpeg(path.string(), img, 95);
      }
    }
}

}  // namespace

TEST(ImageFolder, PngReadsBackExactlyAndJpegWithinItsLoss) {
  auto dir = temp_dir("image_io");
  const auto noisy = random_image(17, 23, 1);
  write_png((dir / "a.png").string(), noisy);
  EXPECT_TRUE(torch::equal(read_image((dir / "a.png").string()), noisy));
  const auto smooth = smooth_image(24, 40, 0);
  write_jpeg((dir / "b.jpg").string(), smooth, 100);
  auto back = read_image((dir / "b.jpg").string());
  ASSERT_EQ(back.sizes(), smooth.sizes());
  // Quality 100, 4:4:4: a smooth image comes back within a few levels.
  EXPECT_LE((back.to(torch::kInt32) - smooth.to(torch::kInt32)).abs().max().item<int>(), 3);
  // By content, not by name: a JPEG named .png still decodes; a text file does not.
  fs::copy(dir / "b.jpg", dir / "c.png");
  EXPECT_TRUE(torch::equal(read_image((dir / "c.png").string()), back));
  std::ofstream(dir / "d.jpg") << "not an image";
  EXPECT_NE(error_of([&] { read_image((dir / "d.jpg").string()); }).find("d.jpg: neither a JPEG nor a PNG"),
            std::string::npos);
}

TEST(ImageFolder, ClassesAreTheSortedFolderNamesAndOtherFilesAreRefused) {
  auto dir = temp_dir("image_folder");
  write_folder(dir, 3, 2, 20);
  Dataset train, val;
  load_dataset("imagefolder", dir.string(), train, val);
  EXPECT_EQ(train.classes, (std::vector<std::string>{"ant", "moth", "zebra"}));
  EXPECT_EQ(val.classes, train.classes);
  ASSERT_EQ(train.size(), 9);
  ASSERT_EQ(val.size(), 6);
  for (int64_t i = 0; i < train.size(); ++i)
    EXPECT_EQ(train.classes[size_t(train.labels[i].item<int64_t>())], fs::path(train.files[size_t(i)]).parent_path().filename());
  std::ofstream(dir / "val" / "ant" / "notes.txt") << "x";
  EXPECT_NE(error_of([&] { load_dataset("imagefolder", dir.string(), train, val); })
                .find("notes.txt: not a .jpg, .jpeg or .png file"),
            std::string::npos);
  fs::remove(dir / "val" / "ant" / "notes.txt");
  fs::create_directories(dir / "val" / "beetle");
  EXPECT_NE(error_of([&] { load_dataset("imagefolder", dir.string(), train, val); })
                .find("beetle: class folder not among the training split's classes"),
            std::string::npos);
}

TEST(ImageFolder, EvaluationIsResizeOfTheShorterSideThenCentreCrop) {
  // size 56: the shorter side becomes 64 = 56 * 8 / 7, already so here (64 x 80): no resampling,
  // then the centre 56 x 56 starts at row (64 - 56) / 2 = 4 and column (80 - 56) / 2 = 12.
  const auto img = random_image(64, 80, 2);
  auto expected = img.to(torch::kFloat64).slice(1, 4, 60).slice(2, 12, 68) / 255.0;
  EXPECT_TRUE(torch::allclose(eval_crop(img, 56).to(torch::kFloat64), expected, 0, 1e-7));
  // Portrait: 80 x 64 -> the width is the shorter side.
  const auto tall = img.transpose(1, 2).contiguous();
  auto expected_tall = tall.to(torch::kFloat64).slice(1, 12, 68).slice(2, 4, 60) / 255.0;
  EXPECT_TRUE(torch::allclose(eval_crop(tall, 56).to(torch::kFloat64), expected_tall, 0, 1e-7));
}

TEST(ImageFolder, TrainingCropsFollowRandomResizedCropRanges) {
  // torchvision's ranges: area fraction in [0.08, 1], aspect ratio in [3/4, 4/3] (up to the
  // rounding of the sides to whole pixels), inside the image; a function of (seed, epoch, index).
  const int64_t h = 120, w = 160;
  int differ_by_epoch = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const CropBox b = draw_resized_crop(h, w, 5, 1, i);
    ASSERT_GE(b.y, 0);
    ASSERT_GE(b.x, 0);
    ASSERT_LE(b.y + b.height, h);
    ASSERT_LE(b.x + b.width, w);
    const double area = double(b.height * b.width) / double(h * w), ratio = double(b.width) / double(b.height);
    EXPECT_GE(area, 0.08 * 0.9) << i;
    EXPECT_LE(area, 1.0) << i;
    EXPECT_GE(ratio, 0.75 * 0.95) << i;
    EXPECT_LE(ratio, 4.0 / 3.0 * 1.05) << i;
    const CropBox again = draw_resized_crop(h, w, 5, 1, i), next = draw_resized_crop(h, w, 5, 2, i);
    EXPECT_EQ(std::tie(b.y, b.x, b.height, b.width), std::tie(again.y, again.x, again.height, again.width));
    differ_by_epoch += std::tie(b.y, b.x, b.height, b.width) != std::tie(next.y, next.x, next.height, next.width);
  }
  EXPECT_GT(differ_by_epoch, 150);
  // A crop of the output size needs no resampling: exactly the pixels of the box, flipped on request.
  const auto img = random_image(h, w, 3);
  const CropBox box{10, 20, 32, 32};
  auto expected = img.to(torch::kFloat64).slice(1, 10, 42).slice(2, 20, 52) / 255.0;
  EXPECT_TRUE(torch::allclose(train_crop(img, box, false, 32).to(torch::kFloat64), expected, 0, 1e-7));
  EXPECT_TRUE(torch::allclose(train_crop(img, box, true, 32).to(torch::kFloat64), expected.flip({2}), 0, 1e-7));
}

TEST(ImageFolder, MissingOrIncompleteDatasetDirectoriesSayWhatIsExpectedAndWhereToGetIt) {
  auto dir = temp_dir("missing_data");
  struct Case {
    std::string dataset, file, url;
  };
  for (auto& c : {Case{"mnist", "train-images-idx3-ubyte", "https://ossci-datasets.s3.amazonaws.com/mnist/"},
                  Case{"fashion-mnist", "t10k-labels-idx1-ubyte", "https://github.com/zalandoresearch/fashion-mnist"},
                  Case{"cifar10", "data_batch_1.bin", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"},
                  Case{"imagefolder", "train/<class>/<image>", "https://image-net.org/download.php"}}) {
    Dataset train, test;
    const std::string missing = (dir / ("no_" + c.dataset)).string();
    std::string e = error_of([&] { load_dataset(c.dataset, missing, train, test); });
    EXPECT_NE(e.find(missing + ": data directory of " + c.dataset + " not found"), std::string::npos) << e;
    EXPECT_NE(e.find(c.file), std::string::npos) << e;
    EXPECT_NE(e.find(c.url), std::string::npos) << e;
    // Present but empty: the first missing file, then the same help.
    const fs::path empty = dir / ("empty_" + c.dataset);
    fs::create_directories(empty);
    e = error_of([&] { load_dataset(c.dataset, empty.string(), train, test); });
    EXPECT_NE(e.find(empty.string() + ": incomplete " + c.dataset + " directory"), std::string::npos) << e;
    EXPECT_NE(e.find(c.file), std::string::npos) << e;
    EXPECT_NE(e.find(c.url), std::string::npos) << e;
  }
}

TEST(ImageFolder, ShortRunTrainsOnAFolderWithOneOutputPerClass) {
  auto dir = temp_dir("image_folder_run");
  write_folder(dir / "data", 6, 2, 36);
  TrainConfig c = synthetic_config(dir / "run", 1, 1, 1, 2);
  c.synthetic = false;
  c.dataset = "imagefolder";
  c.data_dir = (dir / "data").string();
  c.image_size = 32;
  c.hflip = true;
  c.batch_size = 6;
  c.test_batch_size = 4;
  c.epochs = 2;
  std::ostringstream log;
  auto summary = run_training(c, log);
  EXPECT_EQ(summary["train_size"], 18);
  EXPECT_EQ(summary["test_size"], 6);
  EXPECT_LT(summary["final_train_loss"].get<double>(), std::log(3.0)) << log.str();
  // 3 classes: the checkpoint's classifier bias (LeNet's last parameter) has 3 entries.
  const std::string payload = read_checkpoint((dir / "run" / "checkpoint.pt").string());
  torch::serialize::InputArchive ar, model_ar;
  ar.load_from(payload.data(), payload.size());
  ar.read("model", model_ar);
  auto lenet = make_model("lenet", ModelOptions{3, 10}, [](int64_t ch) { return make_activation("pau", {}, ch); });
  lenet->load(model_ar);  // takes the checkpoint's tensors as they are
  const auto params = lenet->named_parameters();
  EXPECT_EQ(params[params.size() - 1].value().numel(), 3) << params[params.size() - 1].key();
  auto model = make_model("mobilenetv2_imagenet", ModelOptions{3, 3}, [](int64_t) { return make_activation("relu", {}, 1); });
  model->eval();
  // 32x down-sampling: a 64x64 input reaches the pooling as 2x2 and still classifies.
  EXPECT_EQ(model->forward(torch::rand({2, 3, 64, 64})).sizes(), (std::vector<int64_t>{2, 3}));
}

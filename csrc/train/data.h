// Datasets for rational_train: IDX (MNIST / Fashion-MNIST, .gz or raw), CIFAR-10 binary, and a
// small generated set. Images stay uint8 (N, C, H, W) in memory; the loader converts per batch.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rational_train {

struct Dataset {
  torch::Tensor images;  // uint8 (N, C, H, W); undefined for an image folder (files below)
  torch::Tensor labels;  // int64 (N)
  // Image folder: sample i is the image file files[i] (decoded per batch by the loader), of class
  // labels[i], the index of its folder name in `classes` (sorted).
  std::vector<std::string> files, classes;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// Reads a whole file, gunzipping when it starts with the gzip magic (so "x.gz" and "x" both work).
// Throws std::runtime_error naming the path when it is missing, unreadable or a corrupt gzip.
std::vector<uint8_t> read_file_maybe_gz(const std::string& path);

// IDX file of unsigned bytes (magic 0x00 0x00 0x08 <ndim>, big-endian dims): returns a uint8
// tensor of those dims. Checks magic, that ndim == expected_ndim (when > 0) and the data size.
torch::Tensor read_idx(const std::string& path, int expected_ndim = 0);

// MNIST-type split ("train" or "t10k") from dir: <split>-images-idx3-ubyte[.gz] and
// <split>-labels-idx1-ubyte[.gz] (the .gz file is used when present).
Dataset load_mnist_split(const std::string& dir, const std::string& split);

// CIFAR-10 binary: records of 1 label byte + 3072 bytes (R, G, B planes of 32x32).
Dataset read_cifar_file(const std::string& path);
// train: data_batch_1..5.bin; test: test_batch.bin (also looks in dir/cifar-10-batches-bin).
Dataset load_cifar10_split(const std::string& dir, bool train);

// Class-dependent templates plus noise: learnable in a few steps, needs no files. The templates
// depend on `seed` only; the samples on (seed, split), so train (split 1) and test (split 2) share classes.
Dataset make_synthetic(int64_t n, int64_t channels, int64_t height, int64_t width, uint64_t seed, uint64_t split);

// First n samples (n <= 0 or >= size: all).
Dataset take_first(const Dataset& d, int64_t n);

// ImageNet-style split: dir/<split>/<class>/<image>.{jpg,jpeg,png}, classes = the sorted folder
// names of dir/<split> (`classes` non-empty: those, e.g. the training split's, for the val split).
// Throws naming the folder or file when one is empty, has no class folders, or holds another file.
Dataset load_image_folder_split(const std::string& dir, const std::string& split,
                                const std::vector<std::string>& classes = {});

// Loads dataset "mnist", "fashion-mnist", "cifar10" or "imagefolder" (both splits: train and
// t10k, test_batch or val). A missing directory or file: std::runtime_error naming the
// directory, the files expected there and where the official copies come from.
void load_dataset(const std::string& name, const std::string& dir, Dataset& train, Dataset& test);
// The files a dataset directory must hold and where to get them (the text of that error).
std::string dataset_files_help(const std::string& name);

// Default data directory per dataset name.
std::string default_data_dir(const std::string& dataset);
// Channel count of a dataset name (image folders: RGB).
int64_t dataset_channels(const std::string& dataset);

}  // namespace rational_train

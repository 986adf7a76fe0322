#include "image_io.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <vector>

namespace rational_train {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "cannot open the image file");
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) fail(path, "read error");
  return data;
}

// (H, W, 3) interleaved -> (3, H, W).
torch::Tensor planar(std::vector<unsigned char>& hwc, int height, int width) {
  return torch::from_blob(hwc.data(), {height, width, 3}, torch::kUInt8).permute({2, 0, 1}).contiguous();
}

std::vector<unsigned char> interleaved(const torch::Tensor& rgb, const std::string& path) {
  if (rgb.dim() != 3 || rgb.size(0) != 3 || rgb.scalar_type() != torch::kUInt8)
    fail(path, "expected a uint8 (3, H, W) RGB image to write");
  auto hwc = rgb.permute({1, 2, 0}).contiguous();
  return std::vector<unsigned char>(hwc.data_ptr<uint8_t>(), hwc.data_ptr<uint8_t>() + hwc.numel());
}

using TjHandle = std::unique_ptr<void, int (*)(tjhandle)>;

torch::Tensor decode_jpeg(const std::string& path, std::vector<unsigned char>& data) {
  TjHandle tj(tjInitDecompress(), tjDestroy);
  if (!tj) fail(path, "cannot start the JPEG decoder");
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj.get(), data.data(), (unsigned long)data.size(), &width, &height, &subsamp, &colorspace) != 0)
    fail(path, std::string("invalid JPEG header (") + tjGetErrorStr2(tj.get()) + ")");
  std::vector<unsigned char> hwc(size_t(width) * size_t(height) * 3);
  if (tjDecompress2(tj.get(), data.data(), (unsigned long)data.size(), hwc.data(), width, 0, height, TJPF_RGB,
                    TJFLAG_ACCURATEDCT) != 0 &&
      tjGetErrorCode(tj.get()) == TJERR_FATAL)
    fail(path, std::string("corrupt JPEG data (") + tjGetErrorStr2(tj.get()) + ")");
  return planar(hwc, height, width);
}

torch::Tensor decode_png(const std::string& path, std::vector<unsigned char>& data) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, data.data(), data.size()))
    fail(path, std::string("invalid PNG (") + image.message + ")");
  image.format = PNG_FORMAT_RGB;  // grey, palette and alpha (composited on black) become RGB
  std::vector<unsigned char> hwc(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, hwc.data(), 0, nullptr)) {
    std::string msg = image.message;
    png_image_free(&image);
    fail(path, "corrupt PNG data (" + msg + ")");
  }
  return planar(hwc, int(image.height), int(image.width));
}

}  // namespace

bool is_image_file(const std::string& path) {
  auto dot = path.find_last_of('.');
  if (dot == std::string::npos || path.find('/', dot) != std::string::npos) return false;
  std::string ext = path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

torch::Tensor read_image(const std::string& path) {
  auto data = read_bytes(path);
  static const unsigned char kPng[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (data.size() >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return decode_jpeg(path, data);
  if (data.size() >= 8 && std::memcmp(data.data(), kPng, 8) == 0) return decode_png(path, data);
  fail(path, "neither a JPEG nor a PNG file (the image folder reads only these two formats)");
}

void write_jpeg(const std::string& path, const torch::Tensor& rgb, int quality) {
  auto hwc = interleaved(rgb, path);
  TjHandle tj(tjInitCompress(), tjDestroy);
  if (!tj) fail(path, "cannot start the JPEG encoder");
  unsigned char* out = nullptr;
  unsigned long size = 0;
  if (tjCompress2(tj.get(), hwc.data(), int(rgb.size(2)), 0, int(rgb.size(1)), TJPF_RGB, &out, &size, TJSAMP_444,
                  quality, TJFLAG_ACCURATEDCT) != 0)
    fail(path, std::string("JPEG encoding failed (") + tjGetErrorStr2(tj.get()) + ")");
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(out, tjFree);
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(out), std::streamsize(size));
  if (!f) fail(path, "cannot write the JPEG file");
}

void write_png(const std::string& path, const torch::Tensor& rgb) {
  auto hwc = interleaved(rgb, path);
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = png_uint_32(rgb.size(2));
  image.height = png_uint_32(rgb.size(1));
  image.format = PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&image, path.c_str(), 0, hwc.data(), 0, nullptr))
    fail(path, std::string("cannot write the PNG file (") + image.message + ")");
}

}  // namespace rational_train

// JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng's simplified API) files <-> uint8 RGB
// tensors (3, H, W), for the image-folder dataset. Grey, palette and alpha images become RGB.
#pragma once

#include <torch/types.h>

#include <string>

namespace rational_train {

// True for the file names the image folder reads: .jpg, .jpeg, .png in any case.
bool is_image_file(const std::string& path);
// Decodes by the file's content (JPEG or PNG magic), not its name. Throws std::runtime_error
// naming the path when it cannot be read or is neither a valid JPEG nor a valid PNG.
torch::Tensor read_image(const std::string& path);
// Writes uint8 (3, H, W) RGB; JPEG at `quality` (1..100, 4:4:4). Throws naming the path.
void write_jpeg(const std::string& path, const torch::Tensor& rgb, int quality);
void write_png(const std::string& path, const torch::Tensor& rgb);

}  // namespace rational_train

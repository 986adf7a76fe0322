#pragma once

#if defined(_WIN32)
#if defined(TORCH_RATIONAL_BUILDING)
#define TORCH_RATIONAL_API __declspec(dllexport)
#else
#define TORCH_RATIONAL_API __declspec(dllimport)
#endif
#else
#define TORCH_RATIONAL_API __attribute__((visibility("default")))
#endif

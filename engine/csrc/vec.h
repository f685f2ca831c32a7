// Vectors of 16 floats for the engine's C++ loops (attention, decoder layers), and an exp built from them.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace wb {

// 16 floats: GCC/Clang vector extensions keep them in registers (one AVX-512 register, two AVX ones) and
// every lane does the same IEEE operations, so vector width never changes a result.
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef int8_t vb __attribute__((vector_size(16)));
typedef uint16_t vh __attribute__((vector_size(32)));
typedef uint32_t vu __attribute__((vector_size(64)));
constexpr int LANES = 16;

inline vf load16(const float* p) {
  vf out;
  std::memcpy(&out, p, sizeof(out));
  return out;
}
inline vf load16(const int8_t* p) {
  vb raw;
  std::memcpy(&raw, p, sizeof(raw));
  return __builtin_convertvector(__builtin_convertvector(raw, vi), vf);
}
inline vf load16(const at::BFloat16* p) {
  vh raw;
  std::memcpy(&raw, p, sizeof(raw));
  vu wide = __builtin_convertvector(raw, vu) << 16;
  vf out;
  std::memcpy(&out, &wide, sizeof(out));
  return out;
}
inline vf splat(float x) { return vf{} + x; }

// exp for x <= 0, 16 at a time (Cody-Waite range reduction and Cephes' polynomial, ~1 ulp).
inline vf exp_neg(vf x) {
  x = x < splat(-87.f) ? splat(-87.f) : x;
  const vf y = x * 1.44269504088896341f + 0.5f;
  vf n = __builtin_convertvector(__builtin_convertvector(y, vi), vf);  // truncation...
  n = n > y ? n - 1.f : n;                                                   // ...to floor
  const vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf e = p * r * r + r + 1.f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

inline float lane_sum(vf v) {
  float s = 0.f;
  for (int l = 0; l < LANES; ++l) s += v[l];
  return s;
}

// silu(x) = x * sigmoid(x) from exp(-|x|), which exp_neg computes for either sign.
inline vf silu(vf x) {
  const vf magnitude = x < splat(0.f) ? -x : x;
  const vf e = exp_neg(-magnitude);
  const vf sigmoid = x < splat(0.f) ? e / (1.f + e) : 1.f / (1.f + e);
  return x * sigmoid;
}

// sum of x[i]^2 over n floats as 16 partial sums in a fixed order (the tail zero-padded), then their sum.
inline float sum_squares(const float* x, int64_t n) {
  vf lanes = {};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES) {
    const vf v = load16(x + i);
    lanes += v * v;
  }
  float tail[LANES] = {};
  std::copy(x + i, x + n, tail);
  const vf v = load16(tail);
  return lane_sum(lanes + v * v);
}

// Applies f to n floats from `in`, 16 at a time; a tail shorter than 16 goes through a zero-padded copy, so every
// element takes the same vector arithmetic.
template <typename F>
inline void map16(const float* in, float* out, int64_t n, F&& f) {
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES) {
    const vf y = f(load16(in + i));
    std::memcpy(out + i, &y, sizeof(y));
  }
  if (i < n) {
    float tail[LANES] = {};
    std::copy(in + i, in + n, tail);
    const vf y = f(load16(tail));
    std::memcpy(tail, &y, sizeof(y));
    std::copy(tail, tail + (n - i), out + i);
  }
}

}  // namespace wb

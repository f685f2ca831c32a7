// All decoder layers of one forward in one call, for models whose linears are the int4/int8 weight-only kernels.
//
// The Python forward of a layer is ~40 PyTorch ops and a dozen module calls; for one decode token each costs
// more in dispatch than in arithmetic, so a step of 30 layers was bound by overhead, not by the matmuls. Here
// the norms, RoPE, the KV write, the activation and the residual adds are plain loops over each token's row,
// and the matmuls and attention are called directly (our tile kernels or ATen's, our paged attention). Every
// loop computes a token's row from that row alone, in a fixed order, so the result never depends on which
// other tokens share the call (the property speculative decoding and batch invariance rest on).
// Arithmetic follows the Python path (engine/model.py): fp32 activations into our tile kernels (which quantize
// them to int8 themselves) or as bf16 into torch's, fp32 out (torch's kernels round their output to bf16 first,
// as in Python); the two agree up to rounding (tests compare them).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "vec.h"

torch::Tensor paged_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor k_scale,
                              torch::Tensor v_scale, torch::Tensor tables, torch::Tensor row_of,
                              torch::Tensor lengths, int64_t block_size, double scale);
torch::Tensor int4_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales_zeros, int64_t group);
torch::Tensor int8_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales, int64_t block);

namespace {

using bf16 = at::BFloat16;

// How a linear's weights are held (engine/quantize.py): torch's int4 or int8 kernel layout, or the tile
// kernels' (engine/csrc/qgemm.cpp).
enum Kind : int64_t { ATEN_INT4 = 0, ATEN_INT8 = 1, TILES_INT4 = 2, TILES_INT8 = 3 };

// One linear: its kind, codes and scales, int4 group (tile int8: activation block), `padded` input features
// (int4 groups that do not divide the input are padded with zeros), an optional fp32 bias (empty when none).
struct Linear {
  torch::Tensor weight, scales, bias;
  int64_t kind, group, padded;

  torch::Tensor operator()(const torch::Tensor& x) const {  // x: [T, K] fp32 -> [T, N] fp32
    auto input = padded > x.size(1) ? at::constant_pad_nd(x, {0, padded - x.size(1)}) : x;
    switch (kind) {
      case ATEN_INT4:
        return at::_weight_int4pack_mm_for_cpu(input.to(torch::kBFloat16), weight, group, scales).to(torch::kFloat32);
      case ATEN_INT8:
        return at::_weight_int8pack_mm(input.to(torch::kBFloat16), weight, scales).to(torch::kFloat32);
      case TILES_INT4: return int4_matmul(input, weight, scales, group);
      default: return int8_matmul(input, weight, scales, group);
    }
  }
};

struct Shape {
  int64_t heads, kv_heads, head_dim;
  float eps;
};

// x [T, D] fp32 -> x * rsqrt(mean(x^2) + eps) * weight, fp32.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, float eps) {
  const int64_t rows = x.size(0), dim = x.size(1);
  auto out = torch::empty({rows, dim}, x.options());
  const float* in = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t t = 0; t < rows; ++t) {
    const float* row = in + t * dim;
    const float inv = 1.f / std::sqrt(wb::sum_squares(row, dim) / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) o[t * dim + i] = row[i] * inv * w[i];
  }
  return out;
}

// HF rotate-half RoPE of one head's vector in place: x*cos + rotate_half(x)*sin.
inline void rope(float* x, const float* cos, const float* sin, int64_t dim) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cos[i] + (-b) * sin[i];
    x[i + half] = b * cos[i + half] + a * sin[i + half];
  }
}

// The KV pool of one layer: keys [blocks, KVH, D, block_size], values [slots, KVH, D], int8 scales [slots, KVH].
struct Pool {
  torch::Tensor k, v, k_scale, v_scale;
  int64_t block_size;

  template <typename T>
  void store(T* dst, const float* src, int64_t n, int64_t stride, float* scale) const {
    if constexpr (std::is_same_v<T, int8_t>) {
      float top = 0.f;
      for (int64_t i = 0; i < n; ++i) top = std::max(top, std::fabs(src[i]));
      const float s = std::max(top, 1e-8f) / 127.0f;
      *scale = s;
      for (int64_t i = 0; i < n; ++i)
        dst[i * stride] = static_cast<int8_t>(std::clamp(std::nearbyint(src[i] / s), -127.f, 127.f));
    } else {
      for (int64_t i = 0; i < n; ++i) dst[i * stride] = T(src[i]);
    }
  }

  template <typename T>
  void write_as(const float* k_rows, const float* v_rows, const int64_t* slots, int64_t tokens, int64_t heads,
                int64_t dim) const {
    T* keys = k.data_ptr<T>();
    T* values = v.data_ptr<T>();
    float* ks = std::is_same_v<T, int8_t> ? k_scale.data_ptr<float>() : nullptr;
    float* vs = std::is_same_v<T, int8_t> ? v_scale.data_ptr<float>() : nullptr;
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t slot = slots[t], block = slot / block_size, pos = slot % block_size;
      for (int64_t h = 0; h < heads; ++h) {
        const float* kr = k_rows + (t * heads + h) * dim;
        const float* vr = v_rows + (t * heads + h) * dim;
        store(keys + ((block * heads + h) * dim) * block_size + pos, kr, dim, block_size,
              ks ? ks + slot * heads + h : nullptr);
        store(values + (slot * heads + h) * dim, vr, dim, 1, vs ? vs + slot * heads + h : nullptr);
      }
    }
  }

  void write(const torch::Tensor& k_rows, const torch::Tensor& v_rows, const torch::Tensor& slots) const {
    const int64_t tokens = k_rows.size(0), heads = k_rows.size(1), dim = k_rows.size(2);
    const float* kr = k_rows.data_ptr<float>();
    const float* vr = v_rows.data_ptr<float>();
    const int64_t* s = slots.data_ptr<int64_t>();
    if (k.dtype() == torch::kFloat32) {
      write_as<float>(kr, vr, s, tokens, heads, dim);
    } else if (k.dtype() == torch::kBFloat16) {
      write_as<bf16>(kr, vr, s, tokens, heads, dim);
    } else {
      TORCH_CHECK(k.dtype() == torch::kInt8, "unsupported KV dtype");
      write_as<int8_t>(kr, vr, s, tokens, heads, dim);
    }
  }
};

// q, k, v of the tokens from the fused qkv matmul's output (+ bias), RoPE applied to q and k.
void split_qkv(const torch::Tensor& qkv, const torch::Tensor& bias, const torch::Tensor& cos,
               const torch::Tensor& sin, const Shape& s, torch::Tensor& q, torch::Tensor& k, torch::Tensor& v) {
  const int64_t tokens = qkv.size(0), width = qkv.size(1), hd = s.head_dim;
  const int64_t q_width = s.heads * hd, kv_width = s.kv_heads * hd;
  q = torch::empty({tokens, s.heads, hd}, qkv.options().dtype(torch::kFloat32));
  k = torch::empty({tokens, s.kv_heads, hd}, q.options());
  v = torch::empty({tokens, s.kv_heads, hd}, q.options());
  const float* in = qkv.data_ptr<float>();
  const float* b = bias.defined() && bias.numel() ? bias.data_ptr<float>() : nullptr;
  float* qp = q.data_ptr<float>();
  float* kp = k.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = in + t * width;
    for (int64_t c = 0; c < width; ++c) {
      const float value = row[c] + (b ? b[c] : 0.f);
      if (c < q_width) qp[t * q_width + c] = value;
      else if (c < q_width + kv_width) kp[t * kv_width + c - q_width] = value;
      else vp[t * kv_width + c - q_width - kv_width] = value;
    }
    const float* ct = cos.data_ptr<float>() + t * hd;
    const float* st = sin.data_ptr<float>() + t * hd;
    for (int64_t h = 0; h < s.heads; ++h) rope(qp + t * q_width + h * hd, ct, st, hd);
    for (int64_t h = 0; h < s.kv_heads; ++h) rope(kp + t * kv_width + h * hd, ct, st, hd);
  }
}

// x += y, both fp32 [T, D].
void add_into(torch::Tensor& x, const torch::Tensor& y) {
  float* xp = x.data_ptr<float>();
  const float* yp = y.data_ptr<float>();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) xp[i] += yp[i];
}

// silu(gate) * up from the fused gate/up matmul's output [T, 2H] fp32 -> fp32 [T, H].
torch::Tensor swiglu(const torch::Tensor& gate_up) {
  const int64_t tokens = gate_up.size(0), hidden = gate_up.size(1) / 2;
  auto out = torch::empty({tokens, hidden}, gate_up.options());
  const float* in = gate_up.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t t = 0; t < tokens; ++t) {
    const float* gate = in + t * 2 * hidden;
    float* row = o + t * hidden;
    wb::map16(gate, row, hidden, wb::silu);
    for (int64_t i = 0; i < hidden; ++i) row[i] *= gate[hidden + i];
  }
  return out;
}

Linear linear_at(const std::vector<torch::Tensor>& tensors, const std::vector<int64_t>& sizes, int64_t i) {
  return Linear{tensors[3 * i], tensors[3 * i + 1], tensors[3 * i + 2], sizes[3 * i], sizes[3 * i + 1],
                sizes[3 * i + 2]};
}

}  // namespace

// x: [T, D] fp32 (the embeddings; returned updated). cos, sin: [T, head_dim] fp32. norms: two per layer.
// linears: (weight, scales, bias-or-empty) for qkv, wo, w13, w2 of each layer; sizes: (kind, group, padded).
// shape: heads, kv_heads, head_dim; the pool: all layers' tensors ([L, ...]); slots [T] int64; tables, row_of,
// lengths: as paged_attention takes them.
torch::Tensor decoder_layers(torch::Tensor x, torch::Tensor cos, torch::Tensor sin, std::vector<torch::Tensor> norms,
                             std::vector<torch::Tensor> linears, std::vector<int64_t> sizes,
                             std::vector<int64_t> shape, double eps, torch::Tensor k_pool, torch::Tensor v_pool,
                             torch::Tensor k_scales, torch::Tensor v_scales, torch::Tensor slots,
                             torch::Tensor tables, torch::Tensor row_of, torch::Tensor lengths, int64_t block_size) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.is_contiguous(), "x must be contiguous fp32");
  const Shape s{shape[0], shape[1], shape[2], static_cast<float>(eps)};
  const int64_t layers = static_cast<int64_t>(norms.size()) / 2, tokens = x.size(0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  auto h = x.clone();
  auto cos_c = cos.contiguous(), sin_c = sin.contiguous();
  for (int64_t layer = 0; layer < layers; ++layer) {
    const Linear qkv = linear_at(linears, sizes, 4 * layer), wo = linear_at(linears, sizes, 4 * layer + 1);
    const Linear w13 = linear_at(linears, sizes, 4 * layer + 2), w2 = linear_at(linears, sizes, 4 * layer + 3);
    torch::Tensor q, k, v;
    split_qkv(qkv(rms_norm(h, norms[2 * layer], s.eps)), qkv.bias, cos_c, sin_c, s, q, k, v);
    const bool quantized = k_pool.dtype() == torch::kInt8;
    Pool pool{k_pool[layer], v_pool[layer], quantized ? k_scales[layer] : k_scales,
              quantized ? v_scales[layer] : v_scales, block_size};
    pool.write(k, v, slots);
    auto attended = paged_attention(q, pool.k, pool.v, pool.k_scale, pool.v_scale, tables, row_of, lengths,
                                    block_size, scale);
    add_into(h, wo(attended.reshape({tokens, s.heads * s.head_dim})));
    add_into(h, w2(swiglu(w13(rms_norm(h, norms[2 * layer + 1], s.eps)))));
  }
  return h;
}

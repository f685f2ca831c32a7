// Paged attention for the engine's query tokens: each query token attends over the first `lengths[t]`
// positions of its own sequence, whose keys and values sit in the blocks listed in `tables[row_of[t]]`.
// The arithmetic for one token never depends on the other tokens of the call (fixed 16-lane partial sums,
// positions in order), which is what keeps greedy decoding batch-invariant bit for bit.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

constexpr int LANES = 16;

inline float as_float(float x) { return x; }
inline float as_float(at::BFloat16 x) { return static_cast<float>(x); }
inline float as_float(int8_t x) { return static_cast<float>(x); }

template <typename T>
inline float dot(const float* q, const T* k, int dim) {
  float acc[LANES] = {0.f};
  int d = 0;
  for (; d + LANES <= dim; d += LANES) {
    for (int l = 0; l < LANES; ++l) acc[l] += q[d + l] * as_float(k[d + l]);
  }
  for (int l = 0; d < dim; ++d, ++l) acc[l] += q[d] * as_float(k[d]);
  float s = 0.f;
  for (int l = 0; l < LANES; ++l) s += acc[l];
  return s;
}

template <typename T>
void attend(const float* q, const T* k, const T* v, const float* k_scale, const float* v_scale,
            const int32_t* tables, const int32_t* row_of, const int32_t* lengths, float* out,
            int64_t tokens, int64_t heads, int64_t kv_heads, int64_t dim, int64_t max_blocks,
            int64_t block_size, float scale) {
  const int64_t group = heads / kv_heads;
  at::parallel_for(0, tokens * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    std::vector<float> acc(dim);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t t = item / heads, h = item % heads, kvh = h / group;
      const int64_t n = lengths[t];
      const int32_t* table = tables + static_cast<int64_t>(row_of[t]) * max_blocks;
      const float* qp = q + (t * heads + h) * dim;
      scores.resize(n);
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        const int64_t slot = static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size;
        const int64_t at = slot * kv_heads + kvh;
        float s = dot(qp, k + at * dim, static_cast<int>(dim)) * scale;
        if (k_scale) s *= k_scale[at];
        scores[j] = s;
        top = s > top ? s : top;
      }
      float total = 0.f;
      for (int64_t j = 0; j < n; ++j) {
        scores[j] = std::exp(scores[j] - top);
        total += scores[j];
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t slot = static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size;
        const int64_t at = slot * kv_heads + kvh;
        const float p = v_scale ? scores[j] * v_scale[at] : scores[j];
        const T* vp = v + at * dim;
        for (int64_t d = 0; d < dim; ++d) acc[d] += p * as_float(vp[d]);
      }
      float* op = out + (t * heads + h) * dim;
      const float inv = 1.f / total;
      for (int64_t d = 0; d < dim; ++d) op[d] = acc[d] * inv;
    }
  });
}

}  // namespace

// q: [T, H, D] fp32; k, v: [slots, KVH, D] fp32|bf16|int8; k_scale, v_scale: [slots, KVH] fp32 (int8) or empty;
// tables: [R, max_blocks] int32; row_of, lengths: [T] int32. Returns [T, H, D] fp32.
torch::Tensor paged_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor k_scale,
                              torch::Tensor v_scale, torch::Tensor tables, torch::Tensor row_of,
                              torch::Tensor lengths, int64_t block_size, double scale) {
  TORCH_CHECK(q.dtype() == torch::kFloat32 && q.is_contiguous(), "q must be contiguous fp32");
  TORCH_CHECK(k.is_contiguous() && v.is_contiguous(), "k and v must be contiguous");
  TORCH_CHECK(tables.dtype() == torch::kInt32 && row_of.dtype() == torch::kInt32 &&
              lengths.dtype() == torch::kInt32, "tables, row_of and lengths must be int32");
  const int64_t tokens = q.size(0), heads = q.size(1), dim = q.size(2), kv_heads = k.size(1);
  auto out = torch::empty_like(q);
  const bool quantized = k.dtype() == torch::kInt8;
  const float* ks = quantized ? k_scale.data_ptr<float>() : nullptr;
  const float* vs = quantized ? v_scale.data_ptr<float>() : nullptr;
  auto tables_c = tables.contiguous();
  const int64_t max_blocks = tables_c.size(1);
  auto run = [&](auto* kp, auto* vp) {
    attend(q.data_ptr<float>(), kp, vp, ks, vs, tables_c.data_ptr<int32_t>(), row_of.data_ptr<int32_t>(),
           lengths.data_ptr<int32_t>(), out.data_ptr<float>(), tokens, heads, kv_heads, dim, max_blocks,
           block_size, static_cast<float>(scale));
  };
  if (k.dtype() == torch::kFloat32) {
    run(k.data_ptr<float>(), v.data_ptr<float>());
  } else if (k.dtype() == torch::kBFloat16) {
    run(k.data_ptr<at::BFloat16>(), v.data_ptr<at::BFloat16>());
  } else if (quantized) {
    run(k.data_ptr<int8_t>(), v.data_ptr<int8_t>());
  } else {
    TORCH_CHECK(false, "unsupported KV dtype");
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_attention", &paged_attention, "paged attention over per-token block tables");
}

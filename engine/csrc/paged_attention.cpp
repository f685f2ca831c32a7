// Paged attention for the engine's query tokens: each query token attends over the first `lengths[t]`
// positions of its own sequence, whose keys and values sit in the blocks listed in `tables[row_of[t]]`.
//
// The arithmetic for one query never depends on the other queries of the call, nor on how they are tiled:
// a score is a dot product summed in order over the head dimension, the softmax and the weighted sum of
// values run over the query's own positions in order. So a token gets bit-identical attention whether it is
// decoded alone, in a batch, prefilled in any chunk, or verified speculatively; with row-independent matmuls
// (the int8/int4 kernels) a greedy sequence's tokens then never depend on batching, chunking or cache hits.
// Work is split by (segment, kv head, tile of queries). Keys are stored transposed per block, so a block's scores
// are block_size-wide vector FMAs; each key column is loaded once for four query rows (the GQA group's heads
// and the tile's tokens), and the group's heads share each value load.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "vec.h"

namespace {

using namespace wb;

constexpr int64_t QUERY_TILE = 32;

// Asks for the cache lines of n elements at p: the next block's keys or values, while this block is computed
// (a block's few kilobytes are too short a stream for the hardware prefetchers to catch on their own).
template <typename T>
inline void prefetch(const T* p, int64_t n) {
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t i = 0; i < n * static_cast<int64_t>(sizeof(T)); i += 64) __builtin_prefetch(bytes + i);
}
constexpr int64_t MIN_PARALLEL_WORK = 1024;  // one decode row over ~110 positions stays on this thread

struct Args {
  const float* q;
  const float* k_scale;
  const float* v_scale;
  const int32_t* tables;
  const int32_t* lengths;
  float* out;
  int64_t heads, kv_heads, dim, max_blocks;
  float scale;
};

// Query rows scored together share each key column load: four, or three for a single token of a model with
// three query heads per kv head (SmolLM2-135M), which would otherwise score a padding row a quarter of the time.
// A row's arithmetic is the same whichever count it is grouped in.
constexpr int ROWS = 4;

// Scores of R query rows against one key block (keys transposed: kt[d * BS + l]), summed over d in order.
// Rows past the tile are zero queries, so every row takes exactly the same path.
template <int BS, int R, typename T>
inline void score_block(const float* const* qrows, const T* kt, int64_t dim, vf (*out)[BS / LANES]) {
  constexpr int C = BS / LANES;
  vf lane[R][C] = {};
  for (int64_t d = 0; d < dim; ++d) {
    vf col[C];
    for (int c = 0; c < C; ++c) col[c] = load16(kt + d * BS + c * LANES);
    for (int r = 0; r < R; ++r) {
      const vf qd = splat(qrows[r][d]);
      for (int c = 0; c < C; ++c) lane[r][c] += qd * col[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[r][c] = lane[r][c];
}

// Softmax of one row of scores in place (n valid, padded to whole vectors); returns the sum of the weights.
inline float softmax_row(float* s, int64_t n) {
  const int64_t padded = (n + LANES - 1) / LANES * LANES;
  for (int64_t j = n; j < padded; ++j) s[j] = -std::numeric_limits<float>::infinity();
  vf top = splat(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < padded; j += LANES) {
    const vf v = load16(s + j);
    top = v > top ? v : top;
  }
  float m = top[0];
  for (int l = 1; l < LANES; ++l) m = std::max(m, top[l]);
  vf total = {};
  for (int64_t j = 0; j < padded; j += LANES) {
    const vf v = load16(s + j);
    vf e = exp_neg(v - m);
    e = v == splat(-std::numeric_limits<float>::infinity()) ? splat(0.f) : e;
    std::memcpy(s + j, &e, sizeof(e));
    total += e;
  }
  return lane_sum(total);
}

// out_r[0:dim] = sum_j w_r[j] * V[j] / total_r for R rows of one kv head at once (a GQA group's heads, or
// consecutive tokens), so each value vector and its slot are loaded once for all of them. A row's sum runs over
// j in order; past a row's own length its weights are exact zeros, which leave the sum's bits unchanged, so a
// row's result does not depend on the rows it shares the loop with. C = dim / 16 accumulators per row.
template <int BS, int C, int R, typename T>
inline void weighted_values(const Args& a, const T* v, const int32_t* table, int64_t kvh, const float* const* w,
                            int64_t n, const float* total, float* const* out) {
  vf acc[R][C] = {};
  for (int64_t start = 0; start < n; start += BS) {
    const int64_t slot0 = static_cast<int64_t>(table[start / BS]) * BS, count = std::min<int64_t>(BS, n - start);
    if (start + BS < n) {
      const int64_t next = static_cast<int64_t>(table[start / BS + 1]) * BS;
      for (int64_t l = 0; l < BS; ++l) prefetch(v + ((next + l) * a.kv_heads + kvh) * a.dim, a.dim);
    }
    for (int64_t l = 0; l < count; ++l) {
      const int64_t at = (slot0 + l) * a.kv_heads + kvh, j = start + l;
      const float vs = a.v_scale ? a.v_scale[at] : 1.f;
      const T* vp = v + at * a.dim;
      vf value[C];
      for (int c = 0; c < C; ++c) value[c] = load16(vp + c * LANES);
      for (int r = 0; r < R; ++r) {
        const vf p = splat(a.v_scale ? w[r][j] * vs : w[r][j]);
        for (int c = 0; c < C; ++c) acc[r][c] += p * value[c];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    if (out[r] == nullptr) continue;
    const float inv = 1.f / total[r];
    for (int c = 0; c < C; ++c) {
      const vf o = acc[r][c] * inv;
      std::memcpy(out[r] + c * LANES, &o, sizeof(o));
    }
  }
}

// One tile: queries [t0, t1) of one segment (block table `table`), every head of kv head `kvh`, R rows at a time.
template <int BS, int C, int R, typename T>
void attend_tile(const Args& a, const T* k, const T* v, const int32_t* table, int64_t t0, int64_t t1,
                 int64_t kvh, std::vector<float>& scores) {
  const int64_t group = a.heads / a.kv_heads, dim = a.dim, rows = (t1 - t0) * group;
  int64_t longest = 0;
  for (int64_t t = t0; t < t1; ++t) longest = std::max<int64_t>(longest, a.lengths[t]);
  const int64_t stride = (longest + BS - 1) / BS * BS;
  scores.assign((rows + 1) * stride, 0.f);  // + a row of zero weights for padding rows
  std::vector<float> zeros(dim, 0.f);
  for (int64_t blk = 0; blk * BS < longest; ++blk) {
    const int64_t phys = table[blk], filled = std::min<int64_t>(BS, longest - blk * BS);
    const T* kt = k + (phys * a.kv_heads + kvh) * dim * BS;
    if ((blk + 1) * BS < longest) prefetch(k + (table[blk + 1] * a.kv_heads + kvh) * dim * BS, dim * BS);
    for (int64_t r0 = 0; r0 < rows; r0 += R) {
      const float* qrows[R];
      for (int r = 0; r < R; ++r) {
        const int64_t row = r0 + r, t = t0 + row / group, h = kvh * group + row % group;
        qrows[r] = row < rows ? a.q + (t * a.heads + h) * dim : zeros.data();
      }
      vf block[R][BS / LANES];
      score_block<BS, R>(qrows, kt, dim, block);
      for (int r = 0; r < R && r0 + r < rows; ++r) {
        const int64_t row = r0 + r, t = t0 + row / group;
        const int64_t valid = std::min<int64_t>(filled, a.lengths[t] - blk * BS);
        float* dst = scores.data() + row * stride + blk * BS;
        const float* src = reinterpret_cast<const float*>(block[r]);
        for (int64_t l = 0; l < valid; ++l) {
          float x = src[l] * a.scale;
          if (a.k_scale) x *= a.k_scale[(phys * BS + l) * a.kv_heads + kvh];
          dst[l] = x;
        }
      }
    }
  }
  const float* no_weights = scores.data() + rows * stride;  // the extra zero row: weights of padding rows
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const float* w[R];
    float* out[R];
    float total[R];
    int64_t n = 0;
    for (int r = 0; r < R; ++r) {
      const int64_t row = r0 + r;
      if (row >= rows) {
        w[r] = no_weights, out[r] = nullptr, total[r] = 1.f;
        continue;
      }
      const int64_t t = t0 + row / group, h = kvh * group + row % group;
      float* scores_row = scores.data() + row * stride;
      total[r] = softmax_row(scores_row, a.lengths[t]);
      w[r] = scores_row, out[r] = a.out + (t * a.heads + h) * dim;
      n = std::max<int64_t>(n, a.lengths[t]);
    }
    weighted_values<BS, C, R>(a, v, table, kvh, w, n, total, out);
  }
}

struct Tile {
  int64_t row, t0, t1, kvh;
};

template <int BS, int C, typename T>
void attend(const Args& a, const T* k, const T* v, const int32_t* row_of, int64_t tokens) {
  std::vector<Tile> tiles;  // consecutive tokens of one segment, cut every QUERY_TILE, times kv heads
  for (int64_t t0 = 0; t0 < tokens;) {
    int64_t t1 = t0 + 1;
    while (t1 < tokens && row_of[t1] == row_of[t0] && t1 - t0 < QUERY_TILE) ++t1;
    for (int64_t kvh = 0; kvh < a.kv_heads; ++kvh) tiles.push_back({row_of[t0], t0, t1, kvh});
    t0 = t1;
  }
  // Waking the other threads costs more than a short context's attention: below MIN_PARALLEL_WORK (query
  // heads x positions) the tiles run on this thread. Either way each tile's arithmetic is the same.
  int64_t work = 0;
  for (const Tile& tile : tiles) {
    for (int64_t t = tile.t0; t < tile.t1; ++t) work += a.lengths[t] * (a.heads / a.kv_heads);
  }
  const int64_t count = static_cast<int64_t>(tiles.size());
  at::parallel_for(0, count, work < MIN_PARALLEL_WORK ? count : 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t i = begin; i < end; ++i) {
      const Tile& tile = tiles[i];
      const int32_t* table = a.tables + tile.row * a.max_blocks;
      if ((tile.t1 - tile.t0) * (a.heads / a.kv_heads) == 3) {
        attend_tile<BS, C, 3>(a, k, v, table, tile.t0, tile.t1, tile.kvh, scores);
      } else {
        attend_tile<BS, C, ROWS>(a, k, v, table, tile.t0, tile.t1, tile.kvh, scores);
      }
    }
  });
}

template <int BS, typename T>
void by_dim(const Args& a, const T* k, const T* v, const int32_t* row_of, int64_t tokens) {
  switch (a.dim) {
    case 16: return attend<BS, 1>(a, k, v, row_of, tokens);
    case 32: return attend<BS, 2>(a, k, v, row_of, tokens);
    case 64: return attend<BS, 4>(a, k, v, row_of, tokens);
    case 128: return attend<BS, 8>(a, k, v, row_of, tokens);
    default: TORCH_CHECK(false, "head_dim must be 16, 32, 64 or 128");
  }
}

template <typename T>
void dispatch(const Args& a, const T* k, const T* v, const int32_t* row_of, int64_t tokens, int64_t bs) {
  switch (bs) {
    case 16: return by_dim<16>(a, k, v, row_of, tokens);
    case 32: return by_dim<32>(a, k, v, row_of, tokens);
    case 64: return by_dim<64>(a, k, v, row_of, tokens);
    default: TORCH_CHECK(false, "block size must be 16, 32 or 64");
  }
}

}  // namespace

// q: [T, H, D] fp32; k: [blocks, KVH, D, block_size] and v: [slots, KVH, D], fp32|bf16|int8; k_scale, v_scale:
// [slots, KVH] fp32 (int8) or empty; tables: [R, max_blocks] int32; row_of, lengths: [T] int32 (a segment's
// tokens are consecutive). Returns [T, H, D] fp32.
torch::Tensor paged_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor k_scale,
                              torch::Tensor v_scale, torch::Tensor tables, torch::Tensor row_of,
                              torch::Tensor lengths, int64_t block_size, double scale) {
  TORCH_CHECK(q.dtype() == torch::kFloat32 && q.is_contiguous(), "q must be contiguous fp32");
  TORCH_CHECK(k.is_contiguous() && v.is_contiguous(), "k and v must be contiguous");
  TORCH_CHECK(tables.dtype() == torch::kInt32 && row_of.dtype() == torch::kInt32 &&
              lengths.dtype() == torch::kInt32, "tables, row_of and lengths must be int32");
  auto out = torch::empty_like(q);
  auto tables_c = tables.contiguous();
  const bool quantized = k.dtype() == torch::kInt8;
  Args a{q.data_ptr<float>(), quantized ? k_scale.data_ptr<float>() : nullptr,
         quantized ? v_scale.data_ptr<float>() : nullptr, tables_c.data_ptr<int32_t>(),
         lengths.data_ptr<int32_t>(), out.data_ptr<float>(), q.size(1), v.size(1), q.size(2),
         tables_c.size(1), static_cast<float>(scale)};
  const int32_t* rows = row_of.data_ptr<int32_t>();
  const int64_t tokens = q.size(0);
  if (k.dtype() == torch::kFloat32) {
    dispatch(a, k.data_ptr<float>(), v.data_ptr<float>(), rows, tokens, block_size);
  } else if (k.dtype() == torch::kBFloat16) {
    dispatch(a, k.data_ptr<at::BFloat16>(), v.data_ptr<at::BFloat16>(), rows, tokens, block_size);
  } else if (quantized) {
    dispatch(a, k.data_ptr<int8_t>(), v.data_ptr<int8_t>(), rows, tokens, block_size);
  } else {
    TORCH_CHECK(false, "unsupported KV dtype");
  }
  return out;
}

// engine/csrc/decoder.cpp
torch::Tensor decoder_layers(torch::Tensor x, torch::Tensor cos, torch::Tensor sin, std::vector<torch::Tensor> norms,
                             std::vector<torch::Tensor> linears, std::vector<int64_t> sizes,
                             std::vector<int64_t> shape, double eps, torch::Tensor k_pool, torch::Tensor v_pool,
                             torch::Tensor k_scales, torch::Tensor v_scales, torch::Tensor slots,
                             torch::Tensor tables, torch::Tensor row_of, torch::Tensor lengths, int64_t block_size);

// engine/csrc/qgemm.cpp
bool qgemm_available();
torch::Tensor int4_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales_zeros, int64_t group);
torch::Tensor int8_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales, int64_t block);

// The kernels release the GIL: the server's event loop keeps answering while the engine thread computes.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_attention", &paged_attention, "paged attention over per-token block tables",
        py::call_guard<py::gil_scoped_release>());
  m.def("decoder_layers", &decoder_layers, "every decoder layer of an int4/int8 model in one call",
        py::call_guard<py::gil_scoped_release>());
  m.def("qgemm_available", &qgemm_available, "whether int4_matmul/int8_matmul were built (AVX-512 VNNI)");
  m.def("int4_matmul", &int4_matmul, "x [M, K] @ int4 tiles -> [M, N] fp32",
        py::call_guard<py::gil_scoped_release>());
  m.def("int8_matmul", &int8_matmul, "x [M, K] @ int8 tiles -> [M, N] fp32",
        py::call_guard<py::gil_scoped_release>());
}

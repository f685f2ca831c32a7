// Weight-only int4/int8 matrix products for a few rows (decode steps, speculative verification) on int8
// activations, whose weight decoding is shared by all rows of the call.
//
// torch's CPU kernels decode the weights again for every row, so their cost grows linearly with the rows and
// batched decode stopped scaling at ~8 rows. Here each row's activations are quantized to int8 per block of
// features (absmax, round to nearest even: what llama.cpp's Q8 activations do), each tile of 16 output columns x 8
// input features is loaded once for all rows of the call, and every row's accumulators take it with AVX-512 VNNI
// (vpdpbusd: 64 unsigned x signed byte products per instruction, twice the bf16 dot product's, and no
// nibble-to-bf16 decoding). Integer sums are exact; the per-block float steps are the same instructions whatever
// the number of rows, their chunking or the thread split (threads own whole column tiles), so every row's result
// is bit-identical alone or in a batch.
//
// Layouts (built by pack_int4 / pack_int8 in engine/tiles.py):
//   int4 codes [N/16, K/8, 64] bytes: byte 4j+i of octet o holds column 16t+j's feature 8o+i (low nibble) and
//   8o+4+i (high nibble); per group of G features a bf16 scale and zero [N/16, K/G, 2, 16], w = (q - 8) * s + z.
//   Activations are quantized per group, so a group's sum is s * a * (sum q x_q - 8 sum x_q) + z * sum x.
//   int8 codes [N/16, K/4, 64] bytes q + 128 (vpdpbusd wants one unsigned operand): byte 4j+i of quad p holds
//   column j's feature 4p+i; one fp32 scale per column, w = q * s. Activations per block of B features
//   (engine/tiles.py's ACT_BLOCK, passed in like int4's group).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define WB_QGEMM 1
#endif

namespace {
constexpr int64_t TILE = 16;  // output columns per tile (one zmm of accumulators)
constexpr int64_t ROW_CHUNK = 8;  // rows whose accumulators stay in registers together

#ifdef WB_QGEMM

// Calls f<R>(r0) over rows in chunks of ROW_CHUNK (R is a compile-time count, so accumulators stay in registers).
template <typename F>
void by_rows(int64_t rows, F&& f) {
  int64_t r0 = 0;
  for (; r0 + ROW_CHUNK <= rows; r0 += ROW_CHUNK) f(std::integral_constant<int, ROW_CHUNK>{}, r0);
  switch (rows - r0) {
    case 7: return f(std::integral_constant<int, 7>{}, r0);
    case 6: return f(std::integral_constant<int, 6>{}, r0);
    case 5: return f(std::integral_constant<int, 5>{}, r0);
    case 4: return f(std::integral_constant<int, 4>{}, r0);
    case 3: return f(std::integral_constant<int, 3>{}, r0);
    case 2: return f(std::integral_constant<int, 2>{}, r0);
    case 1: return f(std::integral_constant<int, 1>{}, r0);
    default: return;
  }
}

// A call's activations quantized per row and block of B features: codes [M, K] (x ~ code * scale), and per
// (row, block) the scale, the sum of x itself, and -offset * (sum of the codes): the correction for weight codes
// stored `offset` above their value, which starts the block's integer sum (exact, so where it is added does not
// matter). Blocks of zeros get scale 0. Plain buffers, not tensors: a decode step makes ~120 of these calls and
// tensor ops cost microseconds each.
struct Quantized {
  std::vector<int8_t> q;
  std::vector<float> scale, sum;
  std::vector<int32_t> start;
};

Quantized quantize_rows(const float* x, int64_t M, int64_t K, int64_t B, int32_t offset) {
  const int64_t blocks = K / B;
  Quantized a{std::vector<int8_t>(M * K), std::vector<float>(M * blocks), std::vector<float>(M * blocks),
              std::vector<int32_t>(M * blocks)};
  for (int64_t r = 0; r < M; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* v = x + r * K + b * B;
      __m512 top = _mm512_setzero_ps(), total = _mm512_setzero_ps();
      for (int64_t i = 0; i < B; i += 16) {
        const __m512 value = _mm512_loadu_ps(v + i);
        top = _mm512_max_ps(top, _mm512_abs_ps(value));
        total = _mm512_add_ps(total, value);
      }
      const float amax = _mm512_reduce_max_ps(top);
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      __m512i codes = _mm512_setzero_si512();
      for (int64_t i = 0; i < B; i += 16) {
        const __m512i n = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v + i), _mm512_set1_ps(inv)));
        codes = _mm512_add_epi32(codes, n);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(a.q.data() + r * K + b * B + i), _mm512_cvtepi32_epi8(n));
      }
      const int64_t at = r * blocks + b;
      a.scale[at] = amax / 127.f;
      a.sum[at] = _mm512_reduce_add_ps(total);
      a.start[at] = -offset * _mm512_reduce_add_epi32(codes);
    }
  }
  return a;
}

// The 4 activation codes of features [f, f + 4) in every 32-bit lane.
inline __m512i bcast4(const int8_t* p) {
  int32_t bits;
  std::memcpy(&bits, p, 4);
  return _mm512_set1_epi32(bits);
}

inline __m512 load_bf16(const at::BFloat16* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// With fewer rows than this, each row keeps two integer chains to hide vpdpbusd's latency; from here on the
// rows' own chains do, and one chain per row saves the instruction that would add the two.
constexpr int ONE_CHAIN_ROWS = 4;

// Rows [r0, r0 + R) take two weight vectors: features [f, f + 4) and [f + 4, f + 8), into `even` and `odd`
// (few rows), or both into `even`.
template <int R>
inline void dot_rows(__m512i (&even)[R], __m512i (&odd)[R], __m512i w0, __m512i w1, const int8_t* xq, int64_t K,
                     int64_t r0, int64_t f) {
  for (int r = 0; r < R; ++r) {
    const int8_t* xr = xq + (r0 + r) * K + f;
    even[r] = _mm512_dpbusd_epi32(even[r], w0, bcast4(xr));
    if constexpr (R >= ONE_CHAIN_ROWS) {
      even[r] = _mm512_dpbusd_epi32(even[r], w1, bcast4(xr + 4));
    } else {
      odd[r] = _mm512_dpbusd_epi32(odd[r], w1, bcast4(xr + 4));
    }
  }
}

// A block's integer chains for rows [r0, r0 + R): the first starts at the block's correction, the second at 0.
template <int R>
inline void start_chains(__m512i (&even)[R], __m512i (&odd)[R], const Quantized& a, int64_t blocks, int64_t r0,
                         int64_t b) {
  for (int r = 0; r < R; ++r) {
    even[r] = _mm512_set1_epi32(a.start[(r0 + r) * blocks + b]);
    odd[r] = _mm512_setzero_si512();
  }
}

// The block's exact integer sum of row r.
template <int R>
inline __m512i chain_sum(const __m512i (&even)[R], const __m512i (&odd)[R], int r) {
  if constexpr (R >= ONE_CHAIN_ROWS) return even[r];
  return _mm512_add_epi32(even[r], odd[r]);
}

// Rows [r0, r0 + R) of one int4 column tile: each octet of features is loaded once for the R rows, its low
// nibbles holding the first four features and its high nibbles the next four.
template <int R>
void int4_tile(const uint8_t* codes, const at::BFloat16* sz, const Quantized& a, float* y, int64_t K, int64_t G,
               int64_t N, int64_t tile, int64_t r0) {
  const int64_t groups = K / G, octets = G / 8;
  const __m512i mask = _mm512_set1_epi8(0x0F);
  __m512 total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i lo[R], hi[R];
    start_chains<R>(lo, hi, a, groups, r0, g);
    const uint8_t* c = codes + g * octets * 64;
    for (int64_t o = 0; o < octets; ++o) {
      const __m512i v = _mm512_loadu_si512(c + o * 64);
      const __m512i w0 = _mm512_and_si512(v, mask), w1 = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
      dot_rows<R>(lo, hi, w0, w1, a.q.data(), K, r0, g * G + o * 8);
    }
    const __m512 scale = load_bf16(sz + g * 2 * TILE), zero = load_bf16(sz + g * 2 * TILE + TILE);
    for (int r = 0; r < R; ++r) {
      const int64_t at = (r0 + r) * groups + g;
      const __m512i dot = chain_sum<R>(lo, hi, r);
      total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_set1_ps(a.scale[at])), total[r]);
      total[r] = _mm512_fmadd_ps(zero, _mm512_set1_ps(a.sum[at]), total[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (r0 + r) * N + tile * TILE, total[r]);
}

// Rows [r0, r0 + R) of one int8 column tile, per activation block: sum (q + 128) x_q - 128 sum x_q.
template <int R>
void int8_tile(const uint8_t* codes, const float* scales, const Quantized& a, float* y, int64_t K, int64_t B, int64_t N,
               int64_t tile, int64_t r0) {
  const int64_t blocks = K / B, quads = B / 4;
  __m512 total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i a0[R], a1[R];
    start_chains<R>(a0, a1, a, blocks, r0, b);
    const uint8_t* c = codes + b * quads * 64;
    for (int64_t p = 0; p < quads; p += 2) {
      const __m512i w0 = _mm512_loadu_si512(c + p * 64), w1 = _mm512_loadu_si512(c + (p + 1) * 64);
      dot_rows<R>(a0, a1, w0, w1, a.q.data(), K, r0, b * B + p * 4);
    }
    for (int r = 0; r < R; ++r) {
      const int64_t at = (r0 + r) * blocks + b;
      const __m512i dot = chain_sum<R>(a0, a1, r);
      total[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(a.scale[at]), total[r]);
    }
  }
  const __m512 s = _mm512_loadu_ps(scales);
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (r0 + r) * N + tile * TILE, _mm512_mul_ps(total[r], s));
}

// Tiles per thread task: enough work that waking a thread pays off.
inline int64_t grain(int64_t tiles, int64_t K, int64_t rows) {
  const int64_t per_tile = K * TILE * (rows + 4) / 4;
  return std::max<int64_t>(1, std::min<int64_t>(tiles, (1 << 18) / std::max<int64_t>(per_tile, 1)));
}
#endif  // WB_QGEMM

}  // namespace

bool qgemm_available() {
#ifdef WB_QGEMM
  return true;
#else
  return false;
#endif
}

// x: [M, K] (any float dtype) -> [M, N] fp32. K is the padded input width (a multiple of the group).
torch::Tensor int4_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales_zeros, int64_t group) {
#ifdef WB_QGEMM
  const int64_t M = x.size(0), K = x.size(1), tiles = codes.size(0), N = tiles * TILE;
  TORCH_CHECK(codes.size(1) * 8 == K && K % group == 0 && group % 16 == 0, "int4_matmul: shapes do not match");
  auto xf = x.to(torch::kFloat32).contiguous();
  const Quantized a = quantize_rows(xf.data_ptr<float>(), M, K, group, 8);
  auto y = torch::empty({M, N}, xf.options());
  const uint8_t* c = codes.data_ptr<uint8_t>();
  const at::BFloat16* sz = scales_zeros.data_ptr<at::BFloat16>();
  float* yp = y.data_ptr<float>();
  const int64_t groups = K / group;
  at::parallel_for(0, tiles, grain(tiles, K, M), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      by_rows(M, [&](auto R, int64_t r0) {
        int4_tile<decltype(R)::value>(c + t * (K / 2) * TILE, sz + t * groups * 2 * TILE, a, yp, K, group, N, t,
                                      r0);
      });
    }
  });
  return y;
#else
  TORCH_CHECK(false, "int4_matmul needs AVX-512 VNNI");
#endif
}

torch::Tensor int8_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales, int64_t block) {
#ifdef WB_QGEMM
  const int64_t M = x.size(0), K = x.size(1), tiles = codes.size(0), N = tiles * TILE;
  TORCH_CHECK(codes.size(1) * 4 == K && K % block == 0 && block % 16 == 0, "int8_matmul: shapes do not match");
  auto xf = x.to(torch::kFloat32).contiguous();
  const Quantized a = quantize_rows(xf.data_ptr<float>(), M, K, block, 128);
  auto y = torch::empty({M, N}, xf.options());
  const uint8_t* c = codes.data_ptr<uint8_t>();
  const float* s = scales.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, tiles, grain(tiles, K, M), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      by_rows(M, [&](auto R, int64_t r0) {
        int8_tile<decltype(R)::value>(c + t * K * TILE, s + t * TILE, a, yp, K, block, N, t, r0);
      });
    }
  });
  return y;
#else
  TORCH_CHECK(false, "int8_matmul needs AVX-512 VNNI");
#endif
}

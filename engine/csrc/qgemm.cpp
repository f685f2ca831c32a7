// Weight-only int4/int8 matrix products for a few rows (decode steps, speculative verification), whose weight
// decoding is shared by all rows of the call.
//
// torch's CPU kernels decode the weights again for every row, so their cost grows linearly with the rows and
// batched decode stopped scaling at ~8 rows. Here each tile of 16 output columns x 2 input features is decoded
// once into bf16 pairs and every row's accumulator takes it with one AVX-512 BF16 dot-product instruction. A
// row's arithmetic is the same sequence of instructions whatever the number of rows, their chunking or the
// thread split (threads own whole column tiles), so every row's result is bit-identical alone or in a batch.
//
// Layouts (built by pack_int4 / pack_int8 from the codes): int4 codes [N/16, K/2, 16] bytes, byte j holding
// features 2p (low nibble) and 2p+1 (high nibble) of column 16t+j; per group of G features a bf16 scale and zero
// [N/16, K/G, 2, 16] with w = (q - 8) * scale + zero. int8 codes [N/16, K/2, 32] (column j's features 2p, 2p+1 at
// bytes 2j, 2j+1), one fp32 scale per column: w = q * scale.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define WB_QGEMM 1
#endif

namespace {

constexpr int64_t TILE = 16;      // output columns per tile (one zmm of fp32 accumulators)
constexpr int64_t ROW_CHUNK = 8;  // rows whose accumulators stay in registers together

#ifdef WB_QGEMM

// bf16 bit patterns of q - 8 for q in 0..15 (exact), indexed by the low bits of a 16-bit lane.
inline __m512i int4_lut() {
  alignas(64) static const uint16_t table[32] = {
      0xC100, 0xC0E0, 0xC0C0, 0xC0A0, 0xC080, 0xC040, 0xC000, 0xBF80,  // -8 .. -1
      0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0,  // 0 .. 7
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm512_load_si512(table);
}

// 16 bytes of int4 codes -> 32 bf16 lanes: (column j, feature 2p) and (column j, feature 2p+1) in lane pair j.
inline __m512bh decode_int4(const uint8_t* codes, __m512i lut) {
  const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
  const __m512i low = _mm512_and_si512(bytes, _mm512_set1_epi32(0x0F));
  const __m512i high = _mm512_slli_epi32(_mm512_srli_epi32(bytes, 4), 16);
  return (__m512bh)_mm512_permutexvar_epi16(_mm512_or_si512(low, high), lut);
}

// 32 int8 codes -> 32 bf16 lanes (exact: |q| <= 127), same order.
inline __m512bh decode_int8(const int8_t* codes) {
  const __m512i words = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes)));
  const __m512 low = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(words)));
  const __m512 high = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(words, 1)));
  return _mm512_cvtne2ps_pbh(high, low);
}

inline __m512 load_bf16(const at::BFloat16* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

inline __m512bh pair(const at::BFloat16* x, int64_t p) {
  int32_t bits;
  std::memcpy(&bits, x + 2 * p, sizeof(bits));
  return (__m512bh)_mm512_set1_epi32(bits);
}

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

// Rows [r0, r0 + R) of one int4 column tile. x: bf16 [M, K]; group_sums: fp32 [M, K/G] (sum of x per group).
// Each pair of features is decoded once for the R rows; two accumulator chains per row (even and odd pairs) hide
// the dot product's latency when there are few rows. The chains, their sum and the group's scale and zero are the
// same instructions whatever R is, so a row's result never depends on the other rows.
template <int R>
void int4_tile(const uint8_t* codes, const at::BFloat16* sz, const at::BFloat16* x, const float* group_sums,
               float* y, int64_t K, int64_t G, int64_t N, int64_t tile, int64_t r0) {
  const __m512i lut = int4_lut();
  const int64_t groups = K / G, pairs = G / 2;
  __m512 total[R];
  for (int r = 0; r < R; ++r) total[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 even[R], odd[R];
    for (int r = 0; r < R; ++r) even[r] = odd[r] = _mm512_setzero_ps();
    const uint8_t* c = codes + g * pairs * TILE;
    const int64_t first = g * pairs;
    for (int64_t p = 0; p < pairs; p += 2) {
      const __m512bh w0 = decode_int4(c + p * TILE, lut), w1 = decode_int4(c + (p + 1) * TILE, lut);
      for (int r = 0; r < R; ++r) {
        even[r] = _mm512_dpbf16_ps(even[r], pair(x + (r0 + r) * K, first + p), w0);
        odd[r] = _mm512_dpbf16_ps(odd[r], pair(x + (r0 + r) * K, first + p + 1), w1);
      }
    }
    const __m512 scale = load_bf16(sz + g * 2 * TILE), zero = load_bf16(sz + g * 2 * TILE + TILE);
    for (int r = 0; r < R; ++r) {
      total[r] = _mm512_fmadd_ps(_mm512_add_ps(even[r], odd[r]), scale, total[r]);
      total[r] = _mm512_fmadd_ps(_mm512_set1_ps(group_sums[(r0 + r) * groups + g]), zero, total[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (r0 + r) * N + tile * TILE, total[r]);
}

template <int R>
void int8_tile(const int8_t* codes, const float* scales, const at::BFloat16* x, float* y, int64_t K, int64_t N,
               int64_t tile, int64_t r0) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < K / 2; ++p) {
    const __m512bh w = decode_int8(codes + p * 2 * TILE);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_dpbf16_ps(acc[r], pair(x + (r0 + r) * K, p), w);
  }
  const __m512 s = _mm512_loadu_ps(scales);
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + (r0 + r) * N + tile * TILE, _mm512_mul_ps(acc[r], s));
}

// Tiles per thread task: enough work that waking a thread pays off.
inline int64_t grain(int64_t tiles, int64_t K, int64_t rows) {
  const int64_t per_tile = K * TILE * (rows + 4);
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

// x: [M, K] (any float dtype; taken as bf16) -> [M, N] fp32.
torch::Tensor int4_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales_zeros, int64_t group) {
#ifdef WB_QGEMM
  const int64_t M = x.size(0), K = x.size(1), N = codes.size(0) * TILE, tiles = codes.size(0);
  TORCH_CHECK(codes.size(1) * 2 == K && K % group == 0 && group % 4 == 0,
              "int4_matmul: shapes do not match");
  auto xb = x.to(torch::kBFloat16).contiguous();
  auto sums = xb.to(torch::kFloat32).view({M, K / group, group}).sum(-1).contiguous();  // [M, K/G]
  auto y = torch::empty({M, N}, x.options().dtype(torch::kFloat32));
  const uint8_t* c = codes.data_ptr<uint8_t>();
  const at::BFloat16* sz = scales_zeros.data_ptr<at::BFloat16>();
  const at::BFloat16* xp = xb.data_ptr<at::BFloat16>();
  const float* sp = sums.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t groups = K / group;
  at::parallel_for(0, tiles, grain(tiles, K, M), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      by_rows(M, [&](auto R, int64_t r0) {
        int4_tile<decltype(R)::value>(c + t * (K / 2) * TILE, sz + t * groups * 2 * TILE, xp, sp, yp, K, group, N,
                                      t, r0);
      });
    }
  });
  return y;
#else
  TORCH_CHECK(false, "int4_matmul needs AVX-512 BF16");
#endif
}

torch::Tensor int8_matmul(torch::Tensor x, torch::Tensor codes, torch::Tensor scales) {
#ifdef WB_QGEMM
  const int64_t M = x.size(0), K = x.size(1), tiles = codes.size(0), N = tiles * TILE;
  TORCH_CHECK(codes.size(1) * 2 == K, "int8_matmul: shapes do not match");
  auto xb = x.to(torch::kBFloat16).contiguous();
  auto y = torch::empty({M, N}, x.options().dtype(torch::kFloat32));
  const int8_t* c = codes.data_ptr<int8_t>();
  const float* s = scales.data_ptr<float>();
  const at::BFloat16* xp = xb.data_ptr<at::BFloat16>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, tiles, grain(tiles, K, M), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      by_rows(M, [&](auto R, int64_t r0) {
        int8_tile<decltype(R)::value>(c + t * K * TILE, s + t * TILE, xp, yp, K, N, t, r0);
      });
    }
  });
  return y;
#else
  TORCH_CHECK(false, "int8_matmul needs AVX-512 BF16");
#endif
}

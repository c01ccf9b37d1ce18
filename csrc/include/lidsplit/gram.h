// Per-element logic of the gradient gram, shared by the CPU (csrc/cpu/gradient.cpp) and CUDA
// (csrc/cuda/gradient.cu) kernels: the packed pair layout, the accumulation of pair products in
// float64, and the cosine from a gram matrix.
//
// Products of float32, float16 and bfloat16 values are exact in float64, so an FMA and a separate
// multiply-add give the same sums: the result depends only on the order of the additions, which each
// kernel fixes (deterministic).
#pragma once
#include <cmath>
#include <cstdint>

#include "lidsplit/common.h"

namespace lidsplit {

// Number of unordered pairs i <= j of n vectors, and the row-major index of (i, j), i <= j, in the
// packed upper triangle.
LIDSPLIT_HD int64_t num_pairs(int64_t n) { return n * (n + 1) / 2; }
LIDSPLIT_HD int64_t pair_index(int64_t i, int64_t j, int64_t n) { return i * n - i * (i - 1) / 2 + (j - i); }

// The (i, j) of packed index k, i <= j (the inverse of pair_index; a short walk, for finalisation).
LIDSPLIT_HD void pair_of(int64_t k, int64_t n, int64_t* i, int64_t* j) {
  int64_t r = 0;
  while (k >= n - r) {
    k -= n - r;
    ++r;
  }
  *i = r;
  *j = r + k;
}

// One element of R vectors (v[0..R): V is double on CUDA, a 4 x double vector type in the CPU register
// tile) added to the packed upper triangle of their pair products: acc[pair_index(i, j, R)] += v[i] * v[j].
// Compile-time bounds, so the accumulators stay in registers.
template <int R, class V>
LIDSPLIT_HD void accumulate_pairs(const V (&v)[R], V (&acc)[R * (R + 1) / 2]) {
  int k = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int i = 0; i < R; ++i) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = i; j < R; ++j) acc[k++] += v[i] * v[j];
  }
}

// R row vectors x and C column vectors y (one element each, or one SIMD vector of elements: V is
// double on CUDA, a 4 x double vector type in the CPU register tile) added to the R x C rectangle of
// pair products: acc[r * C + c] += x[r] * y[c].
template <int R, int C, class V>
LIDSPLIT_HD void accumulate_rect(const V (&x)[R], const V (&y)[C], V (&acc)[R * C]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < R; ++r) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int c = 0; c < C; ++c) acc[r * C + c] += x[r] * y[c];
  }
}

// The cosine of vectors i and j from their gram entries. A zero vector (gram diagonal exactly 0) has
// cosine 0 with every vector, itself included; any other vector has cosine exactly 1 with itself.
// Off-diagonal values are clamped to [-1, 1] against rounding. Never NaN for finite inputs.
LIDSPLIT_HD double cosine_from_gram(double gij, double gii, double gjj, bool diagonal) {
  if (!(gii > 0.0) || !(gjj > 0.0)) return (gii != gii || gjj != gjj || gij != gij) ? gij + gii + gjj : 0.0;
  if (diagonal) return 1.0;
  // sqrt(gii * gjj) is exact for perfect squares (cosine exactly +-1 for parallel vectors); fall back
  // to the product of roots where the product would overflow or lose precision as a subnormal.
  const double p = gii * gjj;
  const double denom = (p >= 2.2250738585072014e-308 && p <= 1.7976931348623157e308) ? sqrt(p) : sqrt(gii) * sqrt(gjj);
  const double c = gij / denom;
  return c > 1.0 ? 1.0 : (c < -1.0 ? -1.0 : c);
}

}  // namespace lidsplit

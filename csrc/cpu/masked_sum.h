// CPU kernels of the masked_sum op family (OpenMP, raw pointers). Weights arrive already converted to
// double on the host (they are tiny and host-readable on the CPU), row-major (groups, n).
#pragma once
#include <cstdint>

#include "lidsplit/reduce.h"

namespace lidsplit::cpu {

// out[g*gn + e] = sum_j w[g*n + j] * xs[j][g*gn + e] for the G groups of gn elements each. Accumulates in
// float32 (float64 for float64 inputs). An input whose weight is exactly 0 is never read, nor need its
// pointer be valid for that group. Every input and the output have kind `kind`.
void masked_sum(FloatKind kind, const void* const* xs, int64_t n, const double* w, int64_t groups,
                int64_t group_numel, void* out);

// The gradient of masked_sum with respect to each input: outs[j][g-slice] = w[g*n + j] * grad[g-slice].
// A zero weight writes zeros without reading grad.
void masked_sum_spread(FloatKind kind, const void* grad, int64_t n, const double* w, int64_t groups,
                       int64_t group_numel, void* const* outs);

// The gradient of masked_sum with respect to the weights: out[g*n + j] = <xs[j][g-slice], grad[g-slice]>,
// one pass over the n inputs and grad, float64 accumulation. `out` has groups * n doubles.
void masked_sum_wgrad(FloatKind kind, const void* const* xs, int64_t n, const void* grad, int64_t groups,
                      int64_t group_numel, double* out);

}  // namespace lidsplit::cpu

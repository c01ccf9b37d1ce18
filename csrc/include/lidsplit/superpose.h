// Per-element logic of the superpose op family, shared by the CPU (.cpp) and CUDA (.cu) kernels.
//
// A "box" is a product of half-open index ranges, one per dimension of the weight: box i is stored
// row-major as boxes[(i * ndim + d) * 2 + 0] = start and [.. + 1] = stop of dimension d. The
// superposition coefficient of an element is the sum of the coefficients of the boxes containing it:
//   c(idx) = sum_i coeffs[i] * [start_{i,d} <= idx_d < stop_{i,d} for every d]
// and superpose(W)[idx] = W[idx] * c(idx). Ranges are clamped to [0, size) of their dimension (an
// empty or inverted range holds no element), so no box can make a kernel read out of bounds.
#pragma once
#include <cstdint>

#include "lidsplit/common.h"

namespace lidsplit {

constexpr int kSuperposeMaxDims = 8;

LIDSPLIT_HD int64_t clamp_index(int64_t v, int64_t size) { return v < 0 ? 0 : (v > size ? size : v); }

// Start and stop of box i in dimension d, clamped to [0, size] (stop >= start).
LIDSPLIT_HD void box_range(const int64_t* boxes, int64_t i, int ndim, int d, int64_t size, int64_t* start,
                           int64_t* stop) {
  const int64_t* r = boxes + (i * ndim + d) * 2;
  const int64_t a = clamp_index(r[0], size);
  const int64_t b = clamp_index(r[1], size);
  *start = a;
  *stop = b > a ? b : a;
}

// Whether box i contains the index idx[0..dims) in its first `dims` dimensions.
LIDSPLIT_HD bool box_contains_prefix(const int64_t* boxes, int64_t i, int ndim, const int64_t* shape,
                                     const int64_t* idx, int dims) {
  for (int d = 0; d < dims; ++d) {
    int64_t a, b;
    box_range(boxes, i, ndim, d, shape[d], &a, &b);
    if (idx[d] < a || idx[d] >= b) return false;
  }
  return true;
}

// The multi-index of row-major linear index `lin` in a tensor of shape[0..ndim).
LIDSPLIT_HD void unravel_index(int64_t lin, const int64_t* shape, int ndim, int64_t* idx) {
  for (int d = ndim - 1; d >= 0; --d) {
    const int64_t s = shape[d];
    idx[d] = s > 0 ? lin % s : 0;
    lin = s > 0 ? lin / s : 0;
  }
}

// c(idx) for one element: the sum, in box order, of the coefficients of the boxes containing it.
// `coeff(i)` is any callable returning the coefficient of box i in the accumulation type A.
template <class A, class CoeffFn>
LIDSPLIT_HD A superpose_coefficient(const int64_t* boxes, int64_t n, int ndim, const int64_t* shape,
                                    const int64_t* idx, CoeffFn coeff) {
  A c = A(0);
  for (int64_t i = 0; i < n; ++i)
    if (box_contains_prefix(boxes, i, ndim, shape, idx, ndim)) c += coeff(i);
  return c;
}

// Number of elements of box i (after clamping), and its extents ext[0..ndim).
LIDSPLIT_HD int64_t box_volume(const int64_t* boxes, int64_t i, int ndim, const int64_t* shape, int64_t* start,
                               int64_t* ext) {
  int64_t v = 1;
  for (int d = 0; d < ndim; ++d) {
    int64_t a, b;
    box_range(boxes, i, ndim, d, shape[d], &a, &b);
    start[d] = a;
    ext[d] = b - a;
    v *= ext[d];
  }
  return v;
}

// Row-major offset in the full tensor of the `local`-th element of a box (start[], ext[]).
LIDSPLIT_HD int64_t box_element_offset(int64_t local, const int64_t* start, const int64_t* ext, const int64_t* shape,
                                       int ndim) {
  int64_t off = 0, stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    const int64_t e = ext[d];
    const int64_t k = e > 0 ? local % e : 0;
    local = e > 0 ? local / e : 0;
    off += (start[d] + k) * stride;
    stride *= shape[d];
  }
  return off;
}

}  // namespace lidsplit

// CPU kernels of the superpose op family (OpenMP, raw pointers). See lidsplit/superpose.h for the box
// layout and the coefficient of an element. Coefficients arrive as double on the host, boxes as int64
// on the host (already checked by the binding: 0 <= start <= stop <= size).
#pragma once
#include <cstdint>

#include "lidsplit/reduce.h"

namespace lidsplit::cpu {

// out[idx] = src[idx] * c(idx), c(idx) = sum (in box order, in float32; float64 for float64 tensors) of
// coeffs[i] over the boxes i containing idx. src and out have kind `kind`, shape[0..ndim).
void superpose(FloatKind kind, const void* src, const int64_t* shape, int ndim, const double* coeffs, int64_t n,
               const int64_t* boxes, void* out);

// out[i] = sum over the elements idx of box i of grad[idx] * src[idx], float64 accumulation; the
// summation order depends only on the shapes (not on the thread count).
void superpose_coeff_grad(FloatKind kind, const void* grad, const void* src, const int64_t* shape, int ndim,
                          const int64_t* boxes, int64_t n, double* out);

}  // namespace lidsplit::cpu

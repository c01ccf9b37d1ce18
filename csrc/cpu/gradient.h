// CPU kernels of the gradient op family (OpenMP, raw pointers).
#pragma once
#include <cstdint>

#include "lidsplit/gram.h"
#include "lidsplit/reduce.h"

namespace lidsplit::cpu {

// One parameter's slice of the n gradient vectors: n pointers (nullptr = missing, counts as zeros),
// each `numel` elements of kind `kind`.
struct GramParam {
  FloatKind kind;
  int64_t numel;
  const void* const* ptrs;
};

// gram[i*n + j] = sum_p <v_i[p], v_j[p]> in float64, one streaming pass over the parameters (each element
// read once), in one parallel region whatever the number of parameters; deterministic (independent of
// the thread count). Writes the full symmetric n x n.
void gradient_gram(const GramParam* params, int64_t num_params, int64_t n, double* gram);

// In place: gram -> cosine similarity (lidsplit::cosine_from_gram for every entry).
void gram_to_cosine(double* gram, int64_t n);

}  // namespace lidsplit::cpu

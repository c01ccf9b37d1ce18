// The one dtype dispatch of the kernels (CPU .cpp and CUDA .cu, host or device code):
//
//   LIDSPLIT_DISPATCH_FLOAT(kind, T, statement);
//
// runs `statement` with the type alias T bound to the storage type of `kind` (a lidsplit::FloatKind):
// float, lidsplit::half_t, lidsplit::bfloat16_t or double. The bindings (csrc/bind_*.cpp) accept only
// these four dtypes, so there is no other case. To support a new dtype, add its FloatKind and Scalar<T>
// (lidsplit/reduce.h) and one line here.
#pragma once
#include "lidsplit/reduce.h"

#define LIDSPLIT_DISPATCH_FLOAT(kind, T, ...)                   \
  switch (kind) {                                               \
    case ::lidsplit::FloatKind::kFloat32: {                     \
      using T = float;                                          \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    case ::lidsplit::FloatKind::kFloat16: {                     \
      using T = ::lidsplit::half_t;                             \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    case ::lidsplit::FloatKind::kBFloat16: {                    \
      using T = ::lidsplit::bfloat16_t;                         \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
    case ::lidsplit::FloatKind::kFloat64: {                     \
      using T = double;                                         \
      __VA_ARGS__;                                              \
      break;                                                    \
    }                                                           \
  }

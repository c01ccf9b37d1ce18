// CUDA kernels of superpose: the forward (one thread per element: unravel, sum the coefficients of the
// boxes containing it with lidsplit::superpose_coefficient, the same code and order as the CPU) and the
// coefficient gradient (per box: blocks stride over the box's elements, float64 partials per block in a
// workspace, then summed in block order: deterministic). Coefficients and boxes are read on the device;
// box ranges are clamped to the tensor (lidsplit/superpose.h), so unchecked boxes never read out of
// bounds.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/launch.h"
#include "lidsplit/dispatch.h"
#include "lidsplit/reduce.h"
#include "lidsplit/superpose.h"

namespace lidsplit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kGradBlocks = 64;  // blocks per box in the coefficient gradient (workspace columns)
constexpr int kMaxGridY = 65535;

struct ShapeArg {
  int64_t s[kSuperposeMaxDims];
};

template <class A>
struct DeviceCoeff {
  const void* p;
  FloatKind kind;
  LIDSPLIT_HD A operator()(int64_t i) const { return load_weight<A>(p, kind, i); }
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    superpose_kernel(const T* src, ShapeArg shape, int ndim, int64_t numel, const void* coeffs, FloatKind ckind,
                     int64_t n, const int64_t* boxes, T* out) {
  using A = typename Scalar<T>::acc;
  const DeviceCoeff<A> coeff{coeffs, ckind};
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < numel;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    int64_t idx[kSuperposeMaxDims];
    unravel_index(e, shape.s, ndim, idx);
    const A c = superpose_coefficient<A>(boxes, n, ndim, shape.s, idx, coeff);
    out[e] = Scalar<T>::from_acc(Scalar<T>::to_acc(src[e]) * c);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    coeff_grad_kernel(const T* grad, const T* src, ShapeArg shape, int ndim, int64_t n, const int64_t* boxes,
                      double* ws) {
  __shared__ double smem[32];
  for (int64_t i = blockIdx.y; i < n; i += gridDim.y) {
    int64_t st[kSuperposeMaxDims], ex[kSuperposeMaxDims];
    const int64_t vol = box_volume(boxes, i, ndim, shape.s, st, ex);
    double acc[1] = {0.0};
    for (int64_t l = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; l < vol;
         l += static_cast<int64_t>(gridDim.x) * kThreads) {
      const int64_t off = box_element_offset(l, st, ex, shape.s, ndim);
      acc[0] += Scalar<T>::to_double(grad[off]) * Scalar<T>::to_double(src[off]);
    }
    const double r = block_reduce<1>(acc, smem);
    if (threadIdx.x == 0) ws[i * gridDim.x + blockIdx.x] = r;
  }
}

__global__ void coeff_grad_finalize(const double* ws, int64_t n, int cols, double* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int b = 0; b < cols; ++b) s += ws[i * cols + b];
    out[i] = s;
  }
}

ShapeArg shape_arg(const int64_t* shape, int ndim, int64_t* numel) {
  ShapeArg s{};
  int64_t m = 1;
  for (int d = 0; d < ndim; ++d) {
    s.s[d] = shape[d];
    m *= shape[d];
  }
  *numel = m;
  return s;
}

template <class T>
void launch_superpose(const void* src, const int64_t* shape, int ndim, const void* coeffs, FloatKind ckind,
                      int64_t n, const int64_t* boxes, void* out, cudaStream_t stream) {
  int64_t numel = 0;
  const ShapeArg s = shape_arg(shape, ndim, &numel);
  if (numel == 0) return;
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(65535, (numel + kThreads - 1) / kThreads)));
  superpose_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(src), s, ndim, numel, coeffs, ckind, n,
                                                      boxes, static_cast<T*>(out));
  check_launch("superpose");
}

template <class T>
void launch_coeff_grad(const void* grad, const void* src, const int64_t* shape, int ndim, const int64_t* boxes,
                       int64_t n, double* ws, double* out, cudaStream_t stream) {
  int64_t numel = 0;
  const ShapeArg s = shape_arg(shape, ndim, &numel);
  const dim3 grid(kGradBlocks, static_cast<unsigned>(std::min<int64_t>(n, kMaxGridY)));
  coeff_grad_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(grad), static_cast<const T*>(src), s, ndim,
                                                     n, boxes, ws);
  check_launch("superpose_coeff_grad");
  const int fblocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(1024, (n + kThreads - 1) / kThreads)));
  coeff_grad_finalize<<<fblocks, kThreads, 0, stream>>>(ws, n, kGradBlocks, out);
  check_launch("superpose_coeff_grad_finalize");
}

}  // namespace

void superpose(int device, int kind, const void* src, const int64_t* shape, int ndim, const void* coeffs,
               int coeff_kind, int64_t n, const int64_t* boxes, void* out, std::uintptr_t stream) {
  DeviceScope scope(device);
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  LIDSPLIT_DISPATCH_FLOAT(static_cast<FloatKind>(kind), T, launch_superpose<T>(src, shape, ndim, coeffs, static_cast<FloatKind>(coeff_kind), n, boxes, out, st));
}

int64_t superpose_coeff_grad_workspace(int64_t n) { return std::max<int64_t>(1, n * kGradBlocks); }

void superpose_coeff_grad(int device, int kind, const void* grad, const void* src, const int64_t* shape, int ndim,
                          const int64_t* boxes, int64_t n, double* ws, double* out, std::uintptr_t stream) {
  if (n == 0) return;
  DeviceScope scope(device);
  const auto st = reinterpret_cast<cudaStream_t>(stream);
  LIDSPLIT_DISPATCH_FLOAT(static_cast<FloatKind>(kind), T, launch_coeff_grad<T>(grad, src, shape, ndim, boxes, n, ws, out, st));
}

}  // namespace lidsplit::cuda

// CUDA kernels of masked_sum: forward (weighted sum), spread (input gradients) and wgrad (weight
// gradient). Elementwise kernels are grid-stride over the elements of a group (blockIdx.y walks the
// groups), so there is no per-element division. Weights are read on the device: a zero weight skips
// the input's load (forward) or the grad's load (spread) without any host synchronisation.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/launch.h"
#include "lidsplit/dispatch.h"
#include "lidsplit/reduce.h"

namespace lidsplit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;
constexpr int kMaxInputs = 64;   // pointers passed by value per launch; more inputs -> several launches
constexpr int kWgradInputs = 8;  // inputs per wgrad launch (per-thread accumulators in registers)
constexpr int kWgradBlocks = 256;
constexpr int kMaxGridY = 65535;

struct InPtrs {
  const void* p[kMaxInputs];
};
struct OutPtrs {
  void* p[kMaxInputs];
};

dim3 elementwise_grid(int64_t groups, int64_t gn) {
  const int64_t gy = std::min<int64_t>(groups, kMaxGridY);
  const int64_t per_block = static_cast<int64_t>(kThreads) * kUnroll;
  int64_t gx = (gn + per_block - 1) / per_block;
  gx = std::max<int64_t>(1, std::min<int64_t>(gx, std::max<int64_t>(1, 16384 / gy)));
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
}

// out[g-slice] (+)= sum_{j < n} w[g, j0 + j] * xs[j][g-slice]
template <class T>
__global__ void __launch_bounds__(kThreads)
    masked_sum_kernel(InPtrs xs, int n, const void* w, FloatKind w_kind, int64_t w_stride, int64_t j0,
                      int64_t groups, int64_t gn, T* out, bool accumulate) {
  using A = typename Scalar<T>::acc;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads * kUnroll;
  for (int64_t g = blockIdx.y; g < groups; g += gridDim.y) {
    const int64_t base = g * gn;
    for (int64_t e0 = static_cast<int64_t>(blockIdx.x) * kThreads * kUnroll + threadIdx.x; e0 < gn; e0 += step) {
      A acc[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t e = e0 + u * kThreads;
        acc[u] = (accumulate && e < gn) ? Scalar<T>::to_acc(out[base + e]) : A(0);
      }
      for (int j = 0; j < n; ++j) {
        const A wj = load_weight<A>(w, w_kind, g * w_stride + j0 + j);
        if (wj == A(0)) continue;  // never read x_j
        const T* x = static_cast<const T*>(xs.p[j]) + base;
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t e = e0 + u * kThreads;
          if (e < gn) acc[u] += wj * Scalar<T>::to_acc(x[e]);
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t e = e0 + u * kThreads;
        if (e < gn) out[base + e] = Scalar<T>::from_acc(acc[u]);
      }
    }
  }
}

// outs[j][g-slice] = w[g, j0 + j] * grad[g-slice]
template <class T>
__global__ void __launch_bounds__(kThreads)
    spread_kernel(const T* grad, int n, const void* w, FloatKind w_kind, int64_t w_stride, int64_t j0,
                  int64_t groups, int64_t gn, OutPtrs outs) {
  using A = typename Scalar<T>::acc;
  const int64_t step = static_cast<int64_t>(gridDim.x) * kThreads * kUnroll;
  for (int64_t g = blockIdx.y; g < groups; g += gridDim.y) {
    const int64_t base = g * gn;
    for (int64_t e0 = static_cast<int64_t>(blockIdx.x) * kThreads * kUnroll + threadIdx.x; e0 < gn; e0 += step) {
      A gv[kUnroll];
      bool loaded = false;
      for (int j = 0; j < n; ++j) {
        const A wj = load_weight<A>(w, w_kind, g * w_stride + j0 + j);
        T* o = static_cast<T*>(outs.p[j]) + base;
        if (wj != A(0) && !loaded) {
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
            const int64_t e = e0 + u * kThreads;
            gv[u] = e < gn ? Scalar<T>::to_acc(grad[base + e]) : A(0);
          }
          loaded = true;
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t e = e0 + u * kThreads;
          if (e < gn) o[e] = Scalar<T>::from_acc(wj != A(0) ? wj * gv[u] : A(0));
        }
      }
    }
  }
}

// ws[(g * kWgradBlocks + blockIdx.x) * n_total + j0 + j] = this block's part of <xs[j], grad> on group g.
template <class T, int NJ>
__global__ void __launch_bounds__(kThreads)
    wgrad_kernel(InPtrs xs, const T* grad, int64_t groups, int64_t gn, int64_t n_total, int64_t j0, double* ws) {
  __shared__ double smem[NJ * 32];
  for (int64_t g = blockIdx.y; g < groups; g += gridDim.y) {
    const int64_t base = g * gn;
    double acc[NJ];
#pragma unroll
    for (int j = 0; j < NJ; ++j) acc[j] = 0.0;
    for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < gn;
         e += static_cast<int64_t>(gridDim.x) * kThreads) {
      const double gv = Scalar<T>::to_double(grad[base + e]);
#pragma unroll
      for (int j = 0; j < NJ; ++j) acc[j] += Scalar<T>::to_double(static_cast<const T*>(xs.p[j])[base + e]) * gv;
    }
    const double r = block_reduce<NJ>(acc, smem);
    if (static_cast<int>(threadIdx.x) < NJ) ws[(g * kWgradBlocks + blockIdx.x) * n_total + j0 + threadIdx.x] = r;
  }
}

// out[g*n + j] = sum over the `rows` block partials of ws.
__global__ void wgrad_finalize(const double* ws, int64_t groups, int64_t n, int rows, double* out) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < groups * n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t g = k / n;
    const int64_t j = k % n;
    double s = 0.0;
    for (int b = 0; b < rows; ++b) s += ws[(g * kWgradBlocks + b) * n + j];
    out[k] = s;
  }
}

template <class T>
void launch_masked_sum(const void* const* xs, int64_t n, const void* w, FloatKind w_kind, int64_t groups,
                       int64_t gn, void* out, cudaStream_t stream) {
  const dim3 grid = elementwise_grid(groups, gn);
  // More than kMaxInputs inputs: later launches add into `out` (for 16-bit outputs this rounds the
  // running sum to the output dtype between launches).
  for (int64_t j0 = 0; j0 < n; j0 += kMaxInputs) {
    InPtrs p{};
    const int m = static_cast<int>(std::min<int64_t>(kMaxInputs, n - j0));
    for (int j = 0; j < m; ++j) p.p[j] = xs[j0 + j];
    masked_sum_kernel<T><<<grid, kThreads, 0, stream>>>(p, m, w, w_kind, n, j0, groups, gn, static_cast<T*>(out),
                                                        j0 > 0);
    check_launch("masked_sum");
  }
}

template <class T>
void launch_spread(const void* grad, int64_t n, const void* w, FloatKind w_kind, int64_t groups, int64_t gn,
                   void* const* outs, cudaStream_t stream) {
  const dim3 grid = elementwise_grid(groups, gn);
  for (int64_t j0 = 0; j0 < n; j0 += kMaxInputs) {
    OutPtrs p{};
    const int m = static_cast<int>(std::min<int64_t>(kMaxInputs, n - j0));
    for (int j = 0; j < m; ++j) p.p[j] = outs[j0 + j];
    spread_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(grad), m, w, w_kind, n, j0, groups, gn, p);
    check_launch("masked_sum_spread");
  }
}

template <class T, int NJ>
void launch_wgrad_chunk(const InPtrs& p, const T* grad, int64_t groups, int64_t gn, int64_t n, int64_t j0,
                        dim3 grid, double* ws, cudaStream_t stream) {
  wgrad_kernel<T, NJ><<<grid, kThreads, 0, stream>>>(p, grad, groups, gn, n, j0, ws);
  check_launch("masked_sum_wgrad");
}

template <class T>
void launch_wgrad(const void* const* xs, int64_t n, const void* grad, int64_t groups, int64_t gn, double* ws,
                  double* out, cudaStream_t stream) {
  const int64_t gy = std::min<int64_t>(groups, kMaxGridY);
  const int rows = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(kWgradBlocks, (gn + kThreads - 1) / kThreads)));
  const dim3 grid(rows, static_cast<unsigned>(gy));
  const T* g = static_cast<const T*>(grad);
  for (int64_t j0 = 0; j0 < n; j0 += kWgradInputs) {
    InPtrs p{};
    const int m = static_cast<int>(std::min<int64_t>(kWgradInputs, n - j0));
    for (int j = 0; j < m; ++j) p.p[j] = xs[j0 + j];
    switch (m) {
      case 1: launch_wgrad_chunk<T, 1>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      case 2: launch_wgrad_chunk<T, 2>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      case 3: launch_wgrad_chunk<T, 3>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      case 4: launch_wgrad_chunk<T, 4>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      case 5: launch_wgrad_chunk<T, 5>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      case 6: launch_wgrad_chunk<T, 6>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      case 7: launch_wgrad_chunk<T, 7>(p, g, groups, gn, n, j0, grid, ws, stream); break;
      default: launch_wgrad_chunk<T, 8>(p, g, groups, gn, n, j0, grid, ws, stream); break;
    }
  }
  const int64_t total = groups * n;
  const int fblocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(1024, (total + kThreads - 1) / kThreads)));
  wgrad_finalize<<<fblocks, kThreads, 0, stream>>>(ws, groups, n, rows, out);
  check_launch("masked_sum_wgrad_finalize");
}

}  // namespace

void masked_sum(int device, int kind, const void* const* xs, int64_t n, const void* w, int w_kind, int64_t groups,
                int64_t group_numel, void* out, std::uintptr_t stream) {
  if (groups * group_numel == 0) return;
  DeviceScope scope(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  LIDSPLIT_DISPATCH_FLOAT(static_cast<FloatKind>(kind), T, launch_masked_sum<T>(xs, n, w, static_cast<FloatKind>(w_kind), groups, group_numel, out, s));
}

void masked_sum_spread(int device, int kind, const void* grad, int64_t n, const void* w, int w_kind,
                       int64_t groups, int64_t group_numel, void* const* outs, std::uintptr_t stream) {
  if (groups * group_numel == 0 || n == 0) return;
  DeviceScope scope(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  LIDSPLIT_DISPATCH_FLOAT(static_cast<FloatKind>(kind), T, launch_spread<T>(grad, n, w, static_cast<FloatKind>(w_kind), groups, group_numel, outs, s));
}

int64_t masked_sum_wgrad_workspace(int64_t groups, int64_t n) { return std::max<int64_t>(1, groups * kWgradBlocks * n); }

void masked_sum_wgrad(int device, int kind, const void* const* xs, int64_t n, const void* grad, int64_t groups,
                      int64_t group_numel, double* ws, double* out, std::uintptr_t stream) {
  if (groups * n == 0) return;
  DeviceScope scope(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  if (group_numel == 0) {
    if (cudaMemsetAsync(out, 0, sizeof(double) * groups * n, s) != cudaSuccess) check_launch("memset");
    return;
  }
  LIDSPLIT_DISPATCH_FLOAT(static_cast<FloatKind>(kind), T, launch_wgrad<T>(xs, n, grad, groups, group_numel, ws, out, s));
}

}  // namespace lidsplit::cuda

// CUDA kernels of the knn / lid op family (entry points in cuda/launch.h).
//
// Simple and exact rather than fast: one thread per query row keeps that row's sorted top-k list in
// global memory (only it touches the list) and its current threshold in a register. A block of kQ
// threads loads kQ query rows and kC candidate rows feature chunk by feature chunk into shared memory
// and accumulates the kQ x kC dot products in registers; then each thread runs the shared per-pair rule
// (lidsplit/knn.h: epilogue, duplicate / near-zero rule, insertion) on its kC candidates. No b x b
// matrix: the distances of one candidate tile live in registers only.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "lidsplit/knn.h"

namespace lidsplit::cuda {
namespace {

constexpr int kQ = 64;  // query rows per block (one per thread)
constexpr int kC = 32;  // candidate rows per tile
constexpr int kF = 32;  // features per shared-memory chunk

void check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("lidsplit: CUDA kernel ") + kernel + " failed to launch: " +
                             cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&prev_);
    if (prev_ != device) {
      cudaError_t err = cudaSetDevice(device);
      if (err != cudaSuccess)
        throw std::runtime_error("lidsplit: cannot select CUDA device " + std::to_string(device) + ": " +
                                 cudaGetErrorString(err));
    }
  }
  ~DeviceGuard() {
    int cur = 0;
    cudaGetDevice(&cur);
    if (cur != prev_) cudaSetDevice(prev_);
  }

 private:
  int prev_ = 0;
};

// One warp per row: norms[r] = |x_r|^2.
__global__ void sq_norms_kernel(const float* __restrict__ x, int64_t rows, int64_t m, float* __restrict__ norms) {
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* xr = x + r * m;
  float s = 0.0f;
  for (int64_t l = lane; l < m; l += 32) s += xr[l] * xr[l];
  for (int o = 16; o > 0; o /= 2) s += __shfl_down_sync(0xffffffffu, s, o);
  if (lane == 0) norms[r] = s;
}

__global__ void knn_kernel(const float* __restrict__ x, const int32_t* __restrict__ cls, const float* __restrict__ norms,
                           int64_t b, int64_t m, int k, bool skip_zero, float* __restrict__ dist,
                           int64_t* __restrict__ idx) {
  __shared__ float qs[kQ][kF + 1];
  __shared__ float cs[kC][kF + 1];
  const int64_t s = blockIdx.y;
  const float* xs = x + s * b * m;
  const float* ns = norms + s * b;
  const int32_t* cl = cls + s * b;
  const int tid = threadIdx.x;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kQ;
  const int64_t i = q0 + tid;
  const bool active = i < b;
  float* di = dist + (s * b + (active ? i : 0)) * k;
  int64_t* ii = idx + (s * b + (active ? i : 0)) * k;
  float thr = INFINITY;
  float ni = 0.0f;
  int32_t ci = -1;
  if (active) {
    for (int t = 0; t < k; ++t) {
      di[t] = INFINITY;
      ii[t] = INT64_MAX;
    }
    ni = ns[i];
    ci = cl[i];
  }
  for (int64_t c0 = 0; c0 < b; c0 += kC) {
    float acc[kC];
#pragma unroll
    for (int j = 0; j < kC; ++j) acc[j] = 0.0f;
    for (int64_t f0 = 0; f0 < m; f0 += kF) {
      for (int e = tid; e < kQ * kF; e += kQ) {
        const int r = e / kF, c = e % kF;
        const int64_t row = q0 + r, col = f0 + c;
        qs[r][c] = (row < b && col < m) ? xs[row * m + col] : 0.0f;
      }
      for (int e = tid; e < kC * kF; e += kQ) {
        const int r = e / kF, c = e % kF;
        const int64_t row = c0 + r, col = f0 + c;
        cs[r][c] = (row < b && col < m) ? xs[row * m + col] : 0.0f;
      }
      __syncthreads();
#pragma unroll 8
      for (int c = 0; c < kF; ++c) {
        const float q = qs[tid][c];
#pragma unroll
        for (int j = 0; j < kC; ++j) acc[j] = fmaf(q, cs[j][c], acc[j]);
      }
      __syncthreads();
    }
    if (active) {
#pragma unroll
      for (int j = 0; j < kC; ++j) {
        const int64_t jj = c0 + j;
        if (jj >= b || jj == i) continue;
        const float nj = ns[jj];
        const float nsum = ni + nj;
        const float d = sq_dist_epilogue(ni, nj, acc[j]);
        const bool dup = cl[jj] == ci;
        if (knn_candidate(d, thr, nsum, dup) &&
            knn_consider(di, ii, k, d, jj, dup, nsum, skip_zero, xs + i * m, xs + jj * m, m))
          thr = di[k - 1];
      }
    }
  }
}

__global__ void lid_rows_kernel(const float* __restrict__ dist, int64_t rows, int k, int estimator,
                                float* __restrict__ out, bool* __restrict__ valid) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  bool v = false;
  out[r] = lid_from_sorted(dist + r * k, k, estimator, &v);
  valid[r] = v;
}

}  // namespace

void knn(int device, const float* x, const int32_t* cls, float* norms, int64_t B, int64_t b, int64_t m, int k,
         bool skip_zero, float* dist, int64_t* idx, std::uintptr_t stream) {
  if (B <= 0 || b <= 0) return;
  if (B > 65535) throw std::invalid_argument("lidsplit: knn on CUDA: at most 65535 matrices per call");
  DeviceGuard guard(device);
  auto st = reinterpret_cast<cudaStream_t>(stream);
  const int64_t rows = B * b;
  const int nthreads = 256;
  sq_norms_kernel<<<static_cast<unsigned>((rows * 32 + nthreads - 1) / nthreads), nthreads, 0, st>>>(x, rows, m, norms);
  check_launch("sq_norms_kernel");
  dim3 grid(static_cast<unsigned>((b + kQ - 1) / kQ), static_cast<unsigned>(B));
  knn_kernel<<<grid, kQ, 0, st>>>(x, cls, norms, b, m, k, skip_zero, dist, idx);
  check_launch("knn_kernel");
}

void lid_rows(int device, const float* dist, int64_t rows, int k, int estimator, float* out, bool* valid,
              std::uintptr_t stream) {
  if (rows <= 0) return;
  DeviceGuard guard(device);
  auto st = reinterpret_cast<cudaStream_t>(stream);
  const int nthreads = 256;
  lid_rows_kernel<<<static_cast<unsigned>((rows + nthreads - 1) / nthreads), nthreads, 0, st>>>(dist, rows, k, estimator,
                                                                                                 out, valid);
  check_launch("lid_rows_kernel");
}

}  // namespace lidsplit::cuda

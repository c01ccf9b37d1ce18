// CUDA kernels of gradient_gram / gradient_cosine.
//
// For each parameter, one launch reads the n vectors' slices once (each thread walks a grid-stride
// range, converting to float64 and accumulating all pair products in registers), reduces over the
// block and adds the block's float64 partials to row blockIdx.x of a workspace (rows x pairs). The
// launches of consecutive parameters are ordered by the stream, so the read-modify-write of a row is
// race-free. A final single-block kernel sums the rows in a fixed order (deterministic) and writes the
// symmetric gram, then, for the cosine, applies lidsplit::cosine_from_gram.
//
// n <= 8: one launch per parameter covers the whole triangle. n > 8: the vectors are cut into tiles of
// 8 and each pair of tiles (i <= j) gets its own launch, so each vector is read once per tile pair it is
// in (about n/8 times) instead of once.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "cuda/launch.h"
#include "lidsplit/reduce.h"

namespace lidsplit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kGramBlocks = 512;  // workspace rows: the most blocks one launch uses
constexpr int kTile = 8;
constexpr int64_t kMaxFinalizeN = 4096;  // the finalize kernel keeps the diagonal in shared memory

struct TilePtrs {
  const void* p[kTile];
};

template <class T>
__device__ __forceinline__ double load_or_zero(const void* p, int64_t e) {
  return p != nullptr ? Scalar<T>::to_double(static_cast<const T*>(p)[e]) : 0.0;
}

// DIAG: the triangle of R vectors (rows; nr of them real). Otherwise: the R x C rectangle of rows x cols.
template <class T, int R, int C, bool DIAG>
__global__ void __launch_bounds__(kThreads)
    gram_kernel(TilePtrs rows, TilePtrs cols, int64_t numel, int64_t n, int r0, int c0, int nr, int nc, double* ws) {
  constexpr int K = DIAG ? R * (R + 1) / 2 : R * C;
  __shared__ double smem[K * 32];
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < numel;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    double a[R];
#pragma unroll
    for (int i = 0; i < R; ++i) a[i] = load_or_zero<T>(rows.p[i], e);
    if constexpr (DIAG) {
      accumulate_pairs<R>(a, R, acc);
    } else {
      double b[C];
#pragma unroll
      for (int j = 0; j < C; ++j) b[j] = load_or_zero<T>(cols.p[j], e);
#pragma unroll
      for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < C; ++j) acc[i * C + j] += a[i] * b[j];
    }
  }
  const double r = block_reduce<K>(acc, smem);
  const int k = threadIdx.x;
  if (k >= K) return;
  int i, j;
  if constexpr (DIAG) {
    int rem = k;
    i = 0;
    while (rem >= R - i) {
      rem -= R - i;
      ++i;
    }
    j = i + rem;
    if (j >= nr) return;
    j += r0;
  } else {
    i = k / C;
    j = k % C;
    if (i >= nr || j >= nc) return;
    j += c0;
  }
  i += r0;
  ws[static_cast<int64_t>(blockIdx.x) * num_pairs(n) + pair_index(i, j, n)] += r;
}

// out = gram (or cosine) from the first `rows_used` workspace rows.
__global__ void gram_finalize(const double* ws, int rows_used, int64_t n, bool cosine, double* out) {
  extern __shared__ double diag[];
  const int64_t pairs = num_pairs(n);
  for (int64_t k = threadIdx.x; k < pairs; k += blockDim.x) {
    int64_t i = 0, rem = k;
    while (rem >= n - i) {
      rem -= n - i;
      ++i;
    }
    const int64_t j = i + rem;
    double s = 0.0;
    for (int b = 0; b < rows_used; ++b) s += ws[b * pairs + k];
    out[i * n + j] = s;
    out[j * n + i] = s;
    if (i == j) diag[i] = s;
  }
  __syncthreads();
  if (!cosine) return;
  for (int64_t k = threadIdx.x; k < pairs; k += blockDim.x) {
    int64_t i = 0, rem = k;
    while (rem >= n - i) {
      rem -= n - i;
      ++i;
    }
    const int64_t j = i + rem;
    const double c = cosine_from_gram(out[i * n + j], diag[i], diag[j], i == j);
    out[i * n + j] = c;
    out[j * n + i] = c;
  }
}

template <class T, int R, int C, bool DIAG>
void launch_tile(const TilePtrs& rows, const TilePtrs& cols, int64_t numel, int64_t n, int r0, int c0, int nr, int nc,
                 int blocks, double* ws, cudaStream_t stream) {
  gram_kernel<T, R, C, DIAG><<<blocks, kThreads, 0, stream>>>(rows, cols, numel, n, r0, c0, nr, nc, ws);
  check_launch("gradient_gram");
}

template <class T>
void launch_diag(int r, const TilePtrs& rows, int64_t numel, int64_t n, int r0, int blocks, double* ws,
                 cudaStream_t stream) {
  const TilePtrs none{};
  switch (r) {
    case 1: launch_tile<T, 1, 1, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    case 2: launch_tile<T, 2, 2, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    case 3: launch_tile<T, 3, 3, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    case 4: launch_tile<T, 4, 4, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    case 5: launch_tile<T, 5, 5, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    case 6: launch_tile<T, 6, 6, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    case 7: launch_tile<T, 7, 7, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
    default: launch_tile<T, 8, 8, true>(rows, none, numel, n, r0, r0, r, r, blocks, ws, stream); break;
  }
}

// All launches of one parameter; returns the number of workspace rows they used.
template <class T>
int launch_param(const GramParamDev& prm, int64_t n, double* ws, cudaStream_t stream) {
  const int blocks = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(kGramBlocks, (prm.numel + 2 * kThreads - 1) / (2 * kThreads))));
  const int64_t tiles = (n + kTile - 1) / kTile;
  auto tile_ptrs = [&](int64_t t, int& count) {
    TilePtrs p{};
    count = static_cast<int>(std::min<int64_t>(kTile, n - t * kTile));
    for (int i = 0; i < count; ++i) p.p[i] = prm.ptrs[t * kTile + i];
    return p;
  };
  auto missing = [](const TilePtrs& p, int count) {
    for (int i = 0; i < count; ++i)
      if (p.p[i] != nullptr) return false;
    return true;
  };
  for (int64_t ti = 0; ti < tiles; ++ti) {
    int nr = 0;
    const TilePtrs rows = tile_ptrs(ti, nr);
    if (missing(rows, nr)) continue;
    const int r0 = static_cast<int>(ti * kTile);
    launch_diag<T>(nr, rows, prm.numel, n, r0, blocks, ws, stream);
    for (int64_t tj = ti + 1; tj < tiles; ++tj) {
      int nc = 0;
      const TilePtrs cols = tile_ptrs(tj, nc);
      if (missing(cols, nc)) continue;
      launch_tile<T, kTile, kTile, false>(rows, cols, prm.numel, n, r0, static_cast<int>(tj * kTile), nr, nc, blocks,
                                          ws, stream);
    }
  }
  return blocks;
}

}  // namespace

int64_t gradient_gram_workspace(int64_t n) { return std::max<int64_t>(1, kGramBlocks * num_pairs(n)); }

void gradient_gram(int device, const GramParamDev* params, int64_t num_params, int64_t n, bool cosine, double* ws,
                   double* out, std::uintptr_t stream) {
  if (n <= 0) return;
  if (n > kMaxFinalizeN)
    throw std::invalid_argument("lidsplit: gradient_gram on CUDA supports at most " + std::to_string(kMaxFinalizeN) +
                                " gradient vectors, got " + std::to_string(n));
  DeviceScope scope(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  const int64_t pairs = num_pairs(n);
  if (cudaMemsetAsync(ws, 0, sizeof(double) * kGramBlocks * pairs, s) != cudaSuccess) check_launch("memset");
  int rows_used = 0;
  for (int64_t p = 0; p < num_params; ++p) {
    const GramParamDev& prm = params[p];
    if (prm.numel == 0) continue;
    int used = 0;
    switch (static_cast<FloatKind>(prm.kind)) {
      case FloatKind::kFloat32: used = launch_param<float>(prm, n, ws, s); break;
      case FloatKind::kFloat16: used = launch_param<half_t>(prm, n, ws, s); break;
      case FloatKind::kBFloat16: used = launch_param<bfloat16_t>(prm, n, ws, s); break;
      case FloatKind::kFloat64: used = launch_param<double>(prm, n, ws, s); break;
      default: throw std::runtime_error("lidsplit: gradient_gram: unsupported dtype code");
    }
    rows_used = std::max(rows_used, used);
  }
  gram_finalize<<<1, kThreads, sizeof(double) * n, s>>>(ws, rows_used, n, cosine, out);
  check_launch("gradient_gram_finalize");
}

}  // namespace lidsplit::cuda

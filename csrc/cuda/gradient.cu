// CUDA kernels of gradient_gram / gradient_cosine.
//
// All parameters go into one work list: the host packs, for every parameter with a tensor present,
// its dtype, size, first chunk and n pointers, and copies the table into the workspace (one small
// host-to-device copy). A launch's blocks walk the chunks of kChunk elements of all parameters in a
// grid-stride loop (a block finds a chunk's parameter by binary search), so a network's many tiny
// tensors cost their elements, not a launch each. Each thread converts its elements to float64 and
// accumulates the pair products in registers (lidsplit/gram.h); the block reduces and writes its
// partials to row blockIdx.x of the workspace. A final single-block kernel sums the rows in a fixed
// order (deterministic) and writes the symmetric gram, then, for the cosine, applies
// lidsplit::cosine_from_gram.
//
// n <= 8: one launch covers the whole triangle. n > 8: the vectors are cut into tiles of 8 and each
// pair of tiles (i <= j) gets its own launch over the whole work list, so each vector is read once per
// tile pair it is in (about n/8 times) instead of once: registers hold at most 8 x 8 accumulators.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/launch.h"
#include "lidsplit/dispatch.h"
#include "lidsplit/gram.h"
#include "lidsplit/reduce.h"

namespace lidsplit::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;                        // elements per thread and chunk
constexpr int64_t kChunk = kThreads * kPerThread;    // elements of one parameter per block step
constexpr int kGramBlocks = 512;                     // workspace rows: the most blocks a launch uses
constexpr int kTile = 8;
constexpr int64_t kMaxFinalizeN = 4096;  // the finalize kernel keeps the diagonal in shared memory

// One parameter of the work list (device side); its n pointers are ptrs[item * n .. item * n + n).
struct Item {
  int64_t numel;
  int64_t first_chunk;
  int32_t kind;  // FloatKind
  int32_t pad;
};

template <class T>
__device__ __forceinline__ double load_or_zero(const void* p, int64_t e) {
  return p != nullptr ? Scalar<T>::to_double(static_cast<const T*>(p)[e]) : 0.0;
}

// The elements of chunk `base` of one parameter that this thread owns, added to acc: vectors
// r0 + [0, nr) (DIAG: their triangle) or the rectangle of those rows by columns c0 + [0, nc).
template <class T, int R, int C, bool DIAG>
__device__ __forceinline__ void chunk_pairs(const void* const* p, int64_t numel, int64_t base, int r0, int c0, int nr,
                                            int nc, double (&acc)[DIAG ? R * (R + 1) / 2 : R * C]) {
#pragma unroll
  for (int k = 0; k < kPerThread; ++k) {
    const int64_t e = base + k * kThreads + threadIdx.x;
    if (e >= numel) break;
    double a[R];
#pragma unroll
    for (int r = 0; r < R; ++r) a[r] = r < nr ? load_or_zero<T>(p[r0 + r], e) : 0.0;
    if constexpr (DIAG) {
      accumulate_pairs<R>(a, acc);
    } else {
      double b[C];
#pragma unroll
      for (int c = 0; c < C; ++c) b[c] = c < nc ? load_or_zero<T>(p[c0 + c], e) : 0.0;
      accumulate_rect<R, C>(a, b, acc);
    }
  }
}

template <int R, int C, bool DIAG>
__global__ void __launch_bounds__(kThreads)
    gram_kernel(const Item* items, const void* const* ptrs, int64_t num_items, int64_t chunks, int64_t n, int r0,
                int c0, int nr, int nc, double* ws) {
  constexpr int K = DIAG ? R * (R + 1) / 2 : R * C;
  __shared__ double smem[K * 32];
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    int64_t lo = 0, hi = num_items - 1;  // the last item whose first chunk is <= c
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (items[mid].first_chunk <= c) lo = mid;
      else hi = mid - 1;
    }
    const Item it = items[lo];
    const void* const* p = ptrs + lo * n;
    const int64_t base = (c - it.first_chunk) * kChunk;
    LIDSPLIT_DISPATCH_FLOAT(static_cast<FloatKind>(it.kind), T,
                            (chunk_pairs<T, R, C, DIAG>(p, it.numel, base, r0, c0, nr, nc, acc)));
  }
  const double r = block_reduce<K>(acc, smem);
  const int k = threadIdx.x;
  if (k >= K) return;
  int i, j;
  if constexpr (DIAG) {
    int64_t pi, pj;
    pair_of(k, R, &pi, &pj);
    i = static_cast<int>(pi);
    j = static_cast<int>(pj);
    if (j >= nr) return;
  } else {
    i = k / C;
    j = k % C;
    if (i >= nr || j >= nc) return;
  }
  ws[static_cast<int64_t>(blockIdx.x) * num_pairs(n) + pair_index(r0 + i, (DIAG ? r0 : c0) + j, n)] = r;
}

// out = gram (or cosine) from the first `rows_used` workspace rows.
__global__ void gram_finalize(const double* ws, int rows_used, int64_t n, bool cosine, double* out) {
  extern __shared__ double diag[];
  const int64_t pairs = num_pairs(n);
  for (int64_t k = threadIdx.x; k < pairs; k += blockDim.x) {
    int64_t i, j;
    pair_of(k, n, &i, &j);
    double s = 0.0;
    for (int b = 0; b < rows_used; ++b) s += ws[b * pairs + k];
    out[i * n + j] = s;
    out[j * n + i] = s;
    if (i == j) diag[i] = s;
  }
  __syncthreads();
  if (!cosine) return;
  for (int64_t k = threadIdx.x; k < pairs; k += blockDim.x) {
    int64_t i, j;
    pair_of(k, n, &i, &j);
    const double c = cosine_from_gram(out[i * n + j], diag[i], diag[j], i == j);
    out[i * n + j] = c;
    out[j * n + i] = c;
  }
}

struct Launch {
  const Item* items;
  const void* const* ptrs;
  int64_t num_items, chunks, n;
  int blocks;
  double* ws;
  cudaStream_t stream;
};

template <int R, int C, bool DIAG>
void launch_tile(const Launch& L, int r0, int c0, int nr, int nc) {
  gram_kernel<R, C, DIAG><<<L.blocks, kThreads, 0, L.stream>>>(L.items, L.ptrs, L.num_items, L.chunks, L.n, r0, c0,
                                                                nr, nc, L.ws);
  check_launch("gradient_gram");
}

void launch_diag(const Launch& L, int r0, int nr) {
  switch (nr) {
    case 1: launch_tile<1, 1, true>(L, r0, r0, nr, nr); break;
    case 2: launch_tile<2, 2, true>(L, r0, r0, nr, nr); break;
    case 3: launch_tile<3, 3, true>(L, r0, r0, nr, nr); break;
    case 4: launch_tile<4, 4, true>(L, r0, r0, nr, nr); break;
    case 5: launch_tile<5, 5, true>(L, r0, r0, nr, nr); break;
    case 6: launch_tile<6, 6, true>(L, r0, r0, nr, nr); break;
    case 7: launch_tile<7, 7, true>(L, r0, r0, nr, nr); break;
    default: launch_tile<8, 8, true>(L, r0, r0, nr, nr); break;
  }
}

// Bytes of the work-list table for `items` parameters of n vectors, rounded up to whole doubles.
int64_t table_doubles(int64_t n, int64_t items) {
  const int64_t bytes = items * static_cast<int64_t>(sizeof(Item)) + items * n * static_cast<int64_t>(sizeof(void*));
  return (bytes + 7) / 8;
}

}  // namespace

int64_t gradient_gram_workspace(int64_t n, int64_t num_params) {
  return std::max<int64_t>(1, kGramBlocks * num_pairs(n) + table_doubles(n, num_params));
}

void gradient_gram(int device, const GramParamDev* params, int64_t num_params, int64_t n, bool cosine, double* ws,
                   double* out, std::uintptr_t stream) {
  if (n <= 0) return;
  if (n > kMaxFinalizeN)
    throw std::invalid_argument("lidsplit: gradient_gram on CUDA supports at most " + std::to_string(kMaxFinalizeN) +
                                " gradient vectors, got " + std::to_string(n));
  DeviceScope scope(device);
  const auto s = reinterpret_cast<cudaStream_t>(stream);
  // The work list: parameters with a tensor present and elements, end to end in chunks.
  std::vector<Item> items;
  std::vector<const void*> ptrs;
  int64_t chunks = 0;
  for (int64_t p = 0; p < num_params; ++p) {
    const GramParamDev& prm = params[p];
    bool present = false;
    for (int64_t i = 0; i < n; ++i) present = present || prm.ptrs[i] != nullptr;
    if (!present || prm.numel == 0) continue;
    items.push_back(Item{prm.numel, chunks, prm.kind, 0});
    ptrs.insert(ptrs.end(), prm.ptrs, prm.ptrs + n);
    chunks += (prm.numel + kChunk - 1) / kChunk;
  }
  const int64_t num_items = static_cast<int64_t>(items.size());
  const int64_t pairs = num_pairs(n);
  int blocks = 0;
  if (num_items > 0) {
    // Table after the partial rows: the Items (8-byte aligned), then the pointers. The source is pageable
    // host memory, which cudaMemcpyAsync has staged by the time it returns, so the vectors may go.
    char* table = reinterpret_cast<char*>(ws + kGramBlocks * pairs);
    const size_t item_bytes = items.size() * sizeof(Item);
    if (cudaMemcpyAsync(table, items.data(), item_bytes, cudaMemcpyHostToDevice, s) != cudaSuccess ||
        cudaMemcpyAsync(table + item_bytes, ptrs.data(), ptrs.size() * sizeof(void*), cudaMemcpyHostToDevice, s) !=
            cudaSuccess)
      check_launch("gradient_gram (work list copy)");
    blocks = static_cast<int>(std::min<int64_t>(kGramBlocks, chunks));
    const Launch L{reinterpret_cast<const Item*>(table), reinterpret_cast<const void* const*>(table + item_bytes),
                   num_items, chunks, n, blocks, ws, s};
    const int64_t tiles = (n + kTile - 1) / kTile;
    for (int64_t ti = 0; ti < tiles; ++ti) {
      const int r0 = static_cast<int>(ti * kTile);
      const int nr = static_cast<int>(std::min<int64_t>(kTile, n - r0));
      launch_diag(L, r0, nr);
      for (int64_t tj = ti + 1; tj < tiles; ++tj) {
        const int c0 = static_cast<int>(tj * kTile);
        launch_tile<kTile, kTile, false>(L, r0, c0, nr, static_cast<int>(std::min<int64_t>(kTile, n - c0)));
      }
    }
  }
  gram_finalize<<<1, kThreads, sizeof(double) * n, s>>>(ws, blocks, n, cosine, out);
  check_launch("gradient_gram_finalize");
}

}  // namespace lidsplit::cuda

// CPU kernels of masked_sum: weighted sum of n same-shaped inputs, its input gradients ("spread") and
// its weight gradient. Work is split into chunks of at most kChunk elements that never straddle a group;
// each chunk is accumulated in a small stack buffer, so every input element is read once.
#include "cpu/masked_sum.h"

#include "lidsplit/dispatch.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lidsplit::cpu {
namespace {

constexpr int64_t kChunk = 1024;
constexpr int kBlock = 16;  // outputs kept in registers by the forward kernel
// Below this many elements the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMin = 1 << 15;

// Task t of `chunks` chunks per group of gn elements: its group, offset in the group, offset in the
// tensor and length. Chunks never straddle a group.
struct Chunk {
  int64_t g, off, begin, len;
};
inline Chunk chunk(int64_t t, int64_t chunks, int64_t gn) {
  const int64_t g = t / chunks;
  const int64_t off = (t % chunks) * kChunk;
  return {g, off, g * gn + off, std::min(kChunk, gn - off)};
}

int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

template <class T>
LIDSPLIT_CPU_CLONES void masked_sum_impl(const void* const* xs, int64_t n, const double* w, int64_t groups, int64_t gn, void* out_) {
  using A = typename Scalar<T>::acc;
  T* out = static_cast<T*>(out_);
  const int64_t chunks = (gn + kChunk - 1) / kChunk;
  const int64_t tasks = groups * chunks;
#pragma omp parallel if (groups * gn >= kParallelMin)
  {
    // The inputs with a nonzero weight in the current group, in input order.
    std::vector<const T*> px(n);
    std::vector<A> pw(n);
    int64_t cached_group = -1, m = 0;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const auto [g, off, begin, len] = chunk(t, chunks, gn);
      if (g != cached_group) {
        m = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double wd = w[g * n + j];
          if (wd == 0.0) continue;  // skipped: x_j is never read
          px[m] = static_cast<const T*>(xs[j]) + g * gn;
          pw[m++] = static_cast<A>(wd);
        }
        cached_group = g;
      }
      T* o = out + begin;
      if (m == 0) {
        for (int64_t e = 0; e < len; ++e) o[e] = Scalar<T>::from_acc(A(0));
        continue;
      }
      // kBlock outputs stay in registers while the inputs stream past: one load per input element,
      // one store per output element.
      int64_t e = off;
      for (; e + kBlock <= off + len; e += kBlock) {
        A a[kBlock];
        for (int k = 0; k < kBlock; ++k) a[k] = pw[0] * Scalar<T>::to_acc(px[0][e + k]);
        for (int64_t q = 1; q < m; ++q) {
          const T* x = px[q] + e;
          const A wq = pw[q];
          for (int k = 0; k < kBlock; ++k) a[k] += wq * Scalar<T>::to_acc(x[k]);
        }
        for (int k = 0; k < kBlock; ++k) o[e - off + k] = Scalar<T>::from_acc(a[k]);
      }
      for (; e < off + len; ++e) {
        A a = pw[0] * Scalar<T>::to_acc(px[0][e]);
        for (int64_t q = 1; q < m; ++q) a += pw[q] * Scalar<T>::to_acc(px[q][e]);
        o[e - off] = Scalar<T>::from_acc(a);
      }
    }
  }
}

template <class T>
LIDSPLIT_CPU_CLONES void spread_impl(const void* grad_, int64_t n, const double* w, int64_t groups, int64_t gn, void* const* outs) {
  using A = typename Scalar<T>::acc;
  const T* grad = static_cast<const T*>(grad_);
  const int64_t chunks = (gn + kChunk - 1) / kChunk;
  const int64_t tasks = groups * chunks;
#pragma omp parallel for schedule(static) if (groups * gn * n >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const auto [g, off, begin, len] = chunk(t, chunks, gn);
    const T* gr = grad + begin;
    bool any = false;
    for (int64_t j = 0; j < n; ++j) any = any || w[g * n + j] != 0.0;
    if (!any) {  // every weight of the group is 0: zeros, grad not read
      for (int64_t j = 0; j < n; ++j) {
        T* o = static_cast<T*>(outs[j]) + begin;
        for (int64_t e = 0; e < len; ++e) o[e] = Scalar<T>::from_acc(A(0));
      }
      continue;
    }
    int64_t e = 0;
    for (; e + kBlock <= len; e += kBlock) {
      A a[kBlock];
      for (int k = 0; k < kBlock; ++k) a[k] = Scalar<T>::to_acc(gr[e + k]);
      for (int64_t j = 0; j < n; ++j) {
        const A wj = static_cast<A>(w[g * n + j]);
        T* o = static_cast<T*>(outs[j]) + begin + e;
        for (int k = 0; k < kBlock; ++k) o[k] = Scalar<T>::from_acc(wj * a[k]);
      }
    }
    for (; e < len; ++e) {
      const A a = Scalar<T>::to_acc(gr[e]);
      for (int64_t j = 0; j < n; ++j)
        static_cast<T*>(outs[j])[begin + e] = Scalar<T>::from_acc(static_cast<A>(w[g * n + j]) * a);
    }
  }
}

template <class T>
LIDSPLIT_CPU_CLONES void wgrad_impl(const void* const* xs, int64_t n, const void* grad_, int64_t groups, int64_t gn, double* out) {
  const T* grad = static_cast<const T*>(grad_);
  const int64_t chunks = (gn + kChunk - 1) / kChunk;
  const int64_t tasks = groups * chunks;
  const int64_t m = groups * n;
  const bool parallel = groups * gn * (n + 1) >= kParallelMin;
  const int threads = parallel ? thread_count() : 1;
  // Per-thread float64 partials, combined in thread order afterwards (deterministic for a fixed
  // thread count).
  const int64_t stride = padded(m);
  std::vector<double> partial(static_cast<size_t>(threads) * stride, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    double* acc = partial.data() + static_cast<int64_t>(thread_id()) * stride;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const auto [g, off, begin, len] = chunk(t, chunks, gn);
      const T* gr = grad + begin;
      // grad's chunk stays in L1 across the n inputs; within a chunk the products are summed in the
      // accumulation type (float32 unless float64), chunks in float64.
      for (int64_t j = 0; j < n; ++j) acc[g * n + j] += dot_acc(static_cast<const T*>(xs[j]) + begin, gr, len);
    }
  }
  for (int64_t k = 0; k < m; ++k) {
    double s = 0.0;
    for (int th = 0; th < threads; ++th) s += partial[static_cast<size_t>(th) * stride + k];
    out[k] = s;
  }
}

}  // namespace

void masked_sum(FloatKind kind, const void* const* xs, int64_t n, const double* w, int64_t groups,
                int64_t group_numel, void* out) {
  if (groups * group_numel == 0) return;
  LIDSPLIT_DISPATCH_FLOAT(kind, T, masked_sum_impl<T>(xs, n, w, groups, group_numel, out));
}

void masked_sum_spread(FloatKind kind, const void* grad, int64_t n, const double* w, int64_t groups,
                       int64_t group_numel, void* const* outs) {
  if (groups * group_numel == 0 || n == 0) return;
  LIDSPLIT_DISPATCH_FLOAT(kind, T, spread_impl<T>(grad, n, w, groups, group_numel, outs));
}

void masked_sum_wgrad(FloatKind kind, const void* const* xs, int64_t n, const void* grad, int64_t groups,
                      int64_t group_numel, double* out) {
  if (groups * group_numel == 0) {
    std::fill(out, out + groups * n, 0.0);
    return;
  }
  LIDSPLIT_DISPATCH_FLOAT(kind, T, wgrad_impl<T>(xs, n, grad, groups, group_numel, out));
}

}  // namespace lidsplit::cpu

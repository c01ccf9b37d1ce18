// CPU kernel of gradient_gram: all n(n+1)/2 dot products of n gradient vectors in one pass.
//
// The parameters are cut into chunks of at most kChunk elements (one flat task range over all
// parameters, so many small tensors and a few huge ones balance alike). For a chunk, each present
// vector's slice is converted once into a float64 buffer (L1-resident), then every pair of buffers is
// dotted into the thread's float64 partials. Memory beyond the inputs: threads x (n * kChunk + n(n+1)/2) doubles and
// P + 1 chunk offsets.
#include "cpu/gradient.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lidsplit::cpu {
namespace {

constexpr int64_t kChunk = 512;
constexpr int64_t kParallelMin = 1 << 14;

template <class T>
void to_double(const void* src, int64_t begin, int64_t len, double* dst) {
  const T* s = static_cast<const T*>(src) + begin;
  for (int64_t e = 0; e < len; ++e) dst[e] = Scalar<T>::to_double(s[e]);
}

void load_chunk(FloatKind kind, const void* src, int64_t begin, int64_t len, double* dst) {
  switch (kind) {
    case FloatKind::kFloat32: to_double<float>(src, begin, len, dst); break;
    case FloatKind::kFloat16: to_double<half_t>(src, begin, len, dst); break;
    case FloatKind::kBFloat16: to_double<bfloat16_t>(src, begin, len, dst); break;
    case FloatKind::kFloat64: to_double<double>(src, begin, len, dst); break;
  }
}

}  // namespace

LIDSPLIT_CPU_CLONES void gradient_gram(const GramParam* params, int64_t num_params, int64_t n, double* gram) {
  const int64_t pairs = num_pairs(n);
  // Chunk t of the flat task list belongs to parameter p with first_task[p] <= t < first_task[p + 1]
  // (O(P) memory, not O(M)); parameters with no gradient present get no chunks.
  std::vector<int64_t> first_task(static_cast<size_t>(num_params) + 1, 0);
  int64_t total = 0;
  for (int64_t p = 0; p < num_params; ++p) {
    bool present = false;
    for (int64_t i = 0; i < n; ++i) present = present || params[p].ptrs[i] != nullptr;
    const int64_t numel = present ? params[p].numel : 0;
    first_task[p + 1] = first_task[p] + (numel + kChunk - 1) / kChunk;
    total += numel;
  }
  const int64_t ntasks = first_task[num_params];
  bool parallel = total * n >= kParallelMin;
#ifdef _OPENMP
  const int threads = parallel ? omp_get_max_threads() : 1;
#else
  const int threads = 1;
  parallel = false;
#endif
  const int64_t stride = padded(pairs);
  std::vector<double> partial(static_cast<size_t>(threads) * stride, 0.0);
#pragma omp parallel num_threads(threads) if (parallel)
  {
#ifdef _OPENMP
    double* acc = partial.data() + static_cast<int64_t>(omp_get_thread_num()) * stride;
#else
    double* acc = partial.data();
#endif
    std::vector<double> buf(static_cast<size_t>(n) * kChunk);
    std::vector<const double*> rows(n);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < ntasks; ++t) {
      const int64_t p = std::upper_bound(first_task.begin(), first_task.end(), t) - first_task.begin() - 1;
      const GramParam& prm = params[p];
      const int64_t begin = (t - first_task[p]) * kChunk;
      const int64_t len = std::min(kChunk, prm.numel - begin);
      for (int64_t i = 0; i < n; ++i) {
        if (prm.ptrs[i] == nullptr) {
          rows[i] = nullptr;
          continue;
        }
        double* dst = buf.data() + i * kChunk;
        load_chunk(prm.kind, prm.ptrs[i], begin, len, dst);
        rows[i] = dst;
      }
      for (int64_t i = 0; i < n; ++i) {
        if (rows[i] == nullptr) continue;
        for (int64_t j = i; j < n; ++j)
          if (rows[j] != nullptr) acc[pair_index(i, j, n)] += pair_dot(rows[i], rows[j], len);
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j < n; ++j) {
      double s = 0.0;
      for (int th = 0; th < threads; ++th) s += partial[static_cast<size_t>(th) * stride + pair_index(i, j, n)];
      gram[i * n + j] = s;
      gram[j * n + i] = s;
    }
  }
}

void gram_to_cosine(double* gram, int64_t n) {
  std::vector<double> diag(n);
  for (int64_t i = 0; i < n; ++i) diag[i] = gram[i * n + i];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) gram[i * n + j] = cosine_from_gram(gram[i * n + j], diag[i], diag[j], i == j);
}

}  // namespace lidsplit::cpu

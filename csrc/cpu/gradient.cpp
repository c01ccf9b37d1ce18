// CPU kernel of gradient_gram: all n(n+1)/2 dot products of n gradient vectors in one pass.
//
// The parameters are laid end to end into one position space (parameter p covers positions
// [offset[p], offset[p+1])), cut into chunks of L positions: a chunk may span many tiny parameters, so
// a tensor of 3 elements costs 3 positions, not a task or a parallel region. For a chunk, each vector's
// slice is converted once into an L1-resident float64 buffer (zeros where a parameter is missing);
// then the pair products are accumulated by register tiles over blocks of 3 vectors x 4 lanes: a block's
// own triangle (6 accumulators, 3 loads) and its 3 x 3 rectangles with later blocks (9 accumulators, 6
// loads per 9 FMAs), so exactly n(n+1)/2 FMAs per 4 positions, bound by the FMA units, not by loads. Vectors with nothing in the chunk
// are left out of the tiles.
//
// Determinism: the chunks are grouped into kSpans spans of consecutive chunks (fewer if there are
// fewer chunks), each with its own float64 partials; spans are handed to threads dynamically (a
// loaded machine does not stall on one slow thread) and their partials are summed in span order at
// the end, so the result does not depend on the thread count or the schedule.
//
// Memory beyond the inputs: threads x n x L doubles of chunk buffer (L x n <= 2048: 16 KiB), kSpans x
// n(n+1)/2 doubles of partials and P + 1 offsets.
#include "cpu/gradient.h"

#include <algorithm>
#include <vector>

#include "lidsplit/dispatch.h"
#include "lidsplit/gram.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lidsplit::cpu {
namespace {

// The tile loops need FMA (exact products, so the same result as the baseline clone's mul + add).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LIDSPLIT_GRAM_CLONES __attribute__((target_clones("fma", "default")))
#define LIDSPLIT_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define LIDSPLIT_GRAM_CLONES
#define LIDSPLIT_ALWAYS_INLINE inline
#endif

constexpr int kTile = 3;   // vectors per side of a register tile
constexpr int kLanes = 4;  // positions per accumulator (one 256-bit vector of doubles)
constexpr int64_t kBufDoubles = 2048;  // n x L chunk buffer: half of a 32 KiB L1
constexpr int64_t kMinChunk = 16;
constexpr int64_t kSpans = 64;
// Below this many products the OpenMP fork costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

int64_t chunk_length(int64_t n) {
  return std::max(kMinChunk, kBufDoubles / n / kMinChunk * kMinChunk);
}

template <class T>
LIDSPLIT_ALWAYS_INLINE void to_double(const void* src, int64_t begin, int64_t len, double* dst) {
  const T* s = static_cast<const T*>(src) + begin;
  for (int64_t e = 0; e < len; ++e) dst[e] = Scalar<T>::to_double(s[e]);
}

LIDSPLIT_ALWAYS_INLINE void load_slice(FloatKind kind, const void* src, int64_t begin, int64_t len, double* dst) {
  LIDSPLIT_DISPATCH_FLOAT(kind, T, to_double<T>(src, begin, len, dst));
}

// One accumulator: kLanes doubles (a 256-bit vector with AVX; two 128-bit halves in the baseline clone).
#if defined(__GNUC__)
// (Lanes never crosses a call boundary: every user is always_inline, so the ABI note does not apply.)
#pragma GCC diagnostic ignored "-Wpsabi"
typedef double Lanes __attribute__((vector_size(kLanes * sizeof(double))));
LIDSPLIT_ALWAYS_INLINE Lanes load_lanes(const double* p) {
  Lanes v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
LIDSPLIT_ALWAYS_INLINE double lane_sum(Lanes v) { return (v[0] + v[2]) + (v[1] + v[3]); }
#else
struct Lanes {
  double v[kLanes] = {};
  Lanes& operator+=(const Lanes& o) {
    for (int l = 0; l < kLanes; ++l) v[l] += o.v[l];
    return *this;
  }
  Lanes operator*(const Lanes& o) const {
    Lanes r;
    for (int l = 0; l < kLanes; ++l) r.v[l] = v[l] * o.v[l];
    return r;
  }
};
inline Lanes load_lanes(const double* p) {
  Lanes r;
  for (int l = 0; l < kLanes; ++l) r.v[l] = p[l];
  return r;
}
inline double lane_sum(const Lanes& v) { return (v.v[0] + v.v[2]) + (v.v[1] + v.v[3]); }
#endif

// out[r * C + c] = <x[r], y[c]> over len positions (a multiple of kLanes); lanes summed at the end.
template <int R, int C>
LIDSPLIT_ALWAYS_INLINE void tile(const double* const* x, const double* const* y, int64_t len, double* out) {
  Lanes acc[R * C] = {};
  for (int64_t e = 0; e < len; e += kLanes) {
    Lanes xv[R], yv[C];
    for (int r = 0; r < R; ++r) xv[r] = load_lanes(x[r] + e);
    for (int c = 0; c < C; ++c) yv[c] = load_lanes(y[c] + e);
    accumulate_rect<R, C>(xv, yv, acc);
  }
  for (int k = 0; k < R * C; ++k) out[k] = lane_sum(acc[k]);
}

// out[pair_index(r, c, R)] = <x[r], x[c]>, r <= c: the triangle of R vectors, each loaded once.
template <int R>
LIDSPLIT_ALWAYS_INLINE void tile_triangle(const double* const* x, int64_t len, double* out) {
  constexpr int K = R * (R + 1) / 2;
  Lanes acc[K] = {};
  for (int64_t e = 0; e < len; e += kLanes) {
    Lanes xv[R];
    for (int r = 0; r < R; ++r) xv[r] = load_lanes(x[r] + e);
    accumulate_pairs<R>(xv, acc);
  }
  for (int k = 0; k < K; ++k) out[k] = lane_sum(acc[k]);
}

template <int R>
LIDSPLIT_ALWAYS_INLINE void tile_rows(int cols, const double* const* x, const double* const* y, int64_t len,
                                      double* out) {
  switch (cols) {
    case 1: tile<R, 1>(x, y, len, out); break;
    case 2: tile<R, 2>(x, y, len, out); break;
    default: tile<R, 3>(x, y, len, out); break;
  }
}

// Everything a span needs, read-only.
struct Plan {
  const GramParam* params;
  const int64_t* offset;  // P + 1 position offsets
  int64_t n, L;
};

// Per-thread scratch: the chunk buffer (n x L), and per vector the end of what its row holds (-1: not
// in this chunk); the used rows in vector order.
struct Scratch {
  std::vector<double> buf;
  std::vector<int64_t> filled, vec;
  std::vector<const double*> rows;
  explicit Scratch(int64_t n, int64_t L) : buf(n * L), filled(n), vec(n), rows(n) {}
};

// Asks for the next chunk's slices of parameter p (the one holding position `end`) to be brought into
// L2 while the tiles compute on this one: without it the loads of a chunk and the FMAs alternate instead
// of overlapping (the hardware prefetcher stops at the end of each row's slice).
LIDSPLIT_ALWAYS_INLINE void prefetch_next(const Plan& plan, int64_t end, int64_t p) {
#if defined(__GNUC__)
  if (end >= plan.offset[p + 1]) return;
  const GramParam& prm = plan.params[p];
  const int64_t from = end - plan.offset[p];
  const int64_t count = std::min(plan.L, plan.offset[p + 1] - end);
  const int64_t size = prm.kind == FloatKind::kFloat64 ? 8 : (prm.kind == FloatKind::kFloat32 ? 4 : 2);
  for (int64_t i = 0; i < plan.n; ++i) {
    if (prm.ptrs[i] == nullptr) continue;
    const char* base = static_cast<const char*>(prm.ptrs[i]) + from * size;
    for (int64_t b = 0; b < count * size; b += 64) __builtin_prefetch(base + b, 0, 1);
  }
#endif
}

// Adds the pair products of positions [begin, end) (at most L; parameter p holds `begin`) to acc
// (packed upper triangle); advances p to the parameter that holds `end`.
LIDSPLIT_GRAM_CLONES void chunk_products(const Plan& plan, int64_t begin, int64_t end, int64_t& p, Scratch& s,
                                         double* acc) {
  const int64_t n = plan.n, L = plan.L;
  const int64_t padded_len = (end - begin + kLanes - 1) / kLanes * kLanes;
  std::fill(s.filled.begin(), s.filled.end(), int64_t{-1});
  for (int64_t pos = begin; pos < end; pos = std::min(end, plan.offset[p + 1])) {
    while (plan.offset[p + 1] <= pos) ++p;  // skip empty and absent parameters
    const GramParam& prm = plan.params[p];
    const int64_t at = pos - begin, count = std::min(end, plan.offset[p + 1]) - pos;
    for (int64_t i = 0; i < n; ++i) {
      if (prm.ptrs[i] == nullptr) continue;
      double* row = s.buf.data() + i * L;
      std::fill(row + std::max<int64_t>(0, s.filled[i]), row + at, 0.0);  // a gap where vector i was missing
      load_slice(prm.kind, prm.ptrs[i], pos - plan.offset[p], count, row + at);
      s.filled[i] = at + count;
    }
  }
  prefetch_next(plan, end, p);
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (s.filled[i] < 0) continue;  // nothing of vector i here: its products are 0
    double* row = s.buf.data() + i * L;
    std::fill(row + s.filled[i], row + padded_len, 0.0);
    s.vec[m] = i;
    s.rows[m++] = row;
  }
  double out[kTile * kTile];
  for (int64_t bi = 0; bi < m; bi += kTile) {
    const int R = static_cast<int>(std::min<int64_t>(kTile, m - bi));
    const double* const* x = s.rows.data() + bi;
    switch (R) {  // the block's own triangle
      case 1: tile_triangle<1>(x, padded_len, out); break;
      case 2: tile_triangle<2>(x, padded_len, out); break;
      default: tile_triangle<3>(x, padded_len, out); break;
    }
    for (int r = 0, k = 0; r < R; ++r)
      for (int c = r; c < R; ++c) acc[pair_index(s.vec[bi + r], s.vec[bi + c], n)] += out[k++];
    for (int64_t bj = bi + kTile; bj < m; bj += kTile) {  // its rectangles with the later blocks
      const int C = static_cast<int>(std::min<int64_t>(kTile, m - bj));
      const double* const* y = s.rows.data() + bj;
      switch (R) {
        case 1: tile_rows<1>(C, x, y, padded_len, out); break;
        case 2: tile_rows<2>(C, x, y, padded_len, out); break;
        default: tile_rows<3>(C, x, y, padded_len, out); break;
      }
      for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[pair_index(s.vec[bi + r], s.vec[bj + c], n)] += out[r * C + c];
    }
  }
}

}  // namespace

void gradient_gram(const GramParam* params, int64_t num_params, int64_t n, double* gram) {
  const int64_t pairs = num_pairs(n);
  // Positions of the parameters end to end; a parameter with no tensor present takes none.
  std::vector<int64_t> offset(static_cast<size_t>(num_params) + 1, 0);
  for (int64_t p = 0; p < num_params; ++p) {
    bool present = false;
    for (int64_t i = 0; i < n; ++i) present = present || params[p].ptrs[i] != nullptr;
    offset[p + 1] = offset[p] + (present ? params[p].numel : 0);
  }
  const int64_t total = offset[num_params];
  const Plan plan{params, offset.data(), n, chunk_length(n)};
  const int64_t chunks = (total + plan.L - 1) / plan.L;
  const int64_t spans = std::min(chunks, kSpans);
  const int64_t stride = padded(pairs);
  std::vector<double> partial(static_cast<size_t>(std::max<int64_t>(spans, 1) * stride), 0.0);
#pragma omp parallel if (total * pairs >= kParallelMin && spans > 1)
  {
    Scratch scratch(n, plan.L);
#pragma omp for schedule(dynamic, 1)
    for (int64_t sp = 0; sp < spans; ++sp) {
      const int64_t c0 = sp * chunks / spans, c1 = (sp + 1) * chunks / spans;
      const int64_t begin = c0 * plan.L;
      int64_t p = std::upper_bound(offset.begin(), offset.end(), begin) - offset.begin() - 1;
      double* acc = partial.data() + sp * stride;
      for (int64_t c = c0; c < c1; ++c)
        chunk_products(plan, c * plan.L, std::min(total, (c + 1) * plan.L), p, scratch, acc);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j < n; ++j) {
      double v = 0.0;
      for (int64_t sp = 0; sp < spans; ++sp) v += partial[static_cast<size_t>(sp * stride + pair_index(i, j, n))];
      gram[i * n + j] = v;
      gram[j * n + i] = v;
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

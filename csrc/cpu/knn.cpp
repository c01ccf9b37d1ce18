// CPU kernels of the knn / lid op family: see cpu/knn.h. The per-pair rule lives in
// lidsplit/knn.h (shared with the CUDA kernel); this file adds the SIMD pre-filter around it, the
// panel bookkeeping and the OpenMP scheduling.
#include "cpu/knn.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "lidsplit/knn.h"

namespace lidsplit::cpu {
namespace {

// SIMD block of the epilogue: 16 float32 lanes, one AVX-512 register or two AVX2 ones.
constexpr int kW = 16;

// Work per task (pairs), so that small panels are not split into tasks too small to pay for.
constexpr int64_t kTaskPairs = 1 << 13;

// Below this many elements (or pairs) a pass runs on the calling thread: a parallel region costs more.
constexpr int64_t kParallelWork = 1 << 16;

// Largest squared norm accepted: with |xi|^2, |xj|^2 <= FLT_MAX / 4 neither the Gram entries nor
// |xi|^2 + |xj|^2 - 2 <xi, xj> can overflow float32.
constexpr float kMaxSqNorm = FLT_MAX / 4;

// The hot loops are compiled for AVX-512, AVX2 and the baseline; the loader picks one per process,
// so every call of a process sees the same rounding.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define LIDSPLIT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LIDSPLIT_CLONES
#endif

LIDSPLIT_CLONES float row_sq_norm(const float* x, int64_t m) {
  float acc[kW] = {};
  int64_t l = 0;
  for (; l + kW <= m; l += kW)
    for (int t = 0; t < kW; ++t) acc[t] += x[l + t] * x[l + t];
  float s = 0.0f;
  for (int t = 0; t < kW; ++t) s += acc[t];
  for (; l < m; ++l) s += x[l] * x[l];
  return s;
}

// Hash of a row's values (-0 and +0 hash alike, as they compare equal).
uint64_t row_hash(const float* x, int64_t m) {
  uint64_t h = 1469598103934665603ull;
  for (int64_t l = 0; l < m; ++l) {
    const float v = x[l] + 0.0f;
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    h = (h ^ u) * 1099511628211ull;
  }
  return h;
}

bool rows_equal(const float* a, const float* b, int64_t m) {
  for (int64_t l = 0; l < m; ++l)
    if (a[l] != b[l]) return false;
  return true;
}

// Duplicate classes of one matrix: cls[i] = the lowest index of a row equal to row i. Equal rows
// have bitwise-equal norms (same code, same values), so only rows of equal norm are hashed, and only
// rows of equal norm and hash are compared.
void duplicate_classes(KnnState& s) {
  const int64_t b = s.b, m = s.m;
  const float* nrm = s.norms.data();
  std::vector<int32_t> ord(b);
  std::iota(ord.begin(), ord.end(), 0);
  std::sort(ord.begin(), ord.end(), [&](int32_t a, int32_t c) { return nrm[a] < nrm[c] || (nrm[a] == nrm[c] && a < c); });
  for (int64_t i = 0; i < b; ++i) s.cls[i] = static_cast<int32_t>(i);
  std::vector<std::pair<uint64_t, int32_t>> group;
  std::vector<int32_t> reps;
  for (int64_t lo = 0; lo < b;) {
    int64_t hi = lo + 1;
    while (hi < b && nrm[ord[hi]] == nrm[ord[lo]]) ++hi;
    if (hi - lo > 1) {
      group.clear();
      for (int64_t t = lo; t < hi; ++t) group.emplace_back(row_hash(s.x + ord[t] * m, m), ord[t]);
      std::sort(group.begin(), group.end());
      for (size_t a = 0; a < group.size();) {
        size_t c = a + 1;
        while (c < group.size() && group[c].first == group[a].first) ++c;
        reps.clear();  // indices ascending within a run of equal hash
        for (size_t t = a; t < c; ++t) {
          const int32_t i = group[t].second;
          bool found = false;
          for (int32_t r : reps)
            if (rows_equal(s.x + r * m, s.x + i * m, m)) {
              s.cls[i] = r;
              found = true;
              break;
            }
          if (!found) reps.push_back(i);
        }
        a = c;
      }
    }
    lo = hi;
  }
}

// Groups of candidates whose minima bound a row's k-th distance: 16 * kGroupVecs at most.
constexpr int kGroupVecs = 8;

// Offer row r of s the n candidates c0 .. c0 + n - 1, whose Gram entries with r are gv[0 .. n).
//
// When r's list is not yet full, a bound on its final k-th distance comes first: the candidates are
// dealt into disjoint groups (lane t of block q goes to group (q mod V, t)); each group's minimum over
// its regular members (not equal to r, not near zero, so their distance is final) is an actual
// distance, so the k-th smallest group minimum has at least k candidates at or below it. Candidates
// above the bound can never enter the list, which cuts the insertions of a fresh row from about
// k (1 + ln(n / k)) to little more than k.
LIDSPLIT_CLONES void offer(KnnState& s, int64_t r, const float* gv, int64_t c0, int64_t n) {
  const int64_t m = s.m;
  const int k = s.k;
  const bool skip_zero = s.skip_zero;
  const float* nrm = s.norms.data() + c0;
  const int32_t* cls = s.cls.data() + c0;
  float* di = s.dist.data() + r * k;
  int32_t* ii = s.idx.data() + r * k;
  const float* xr = s.x + r * m;
  const float nr = s.norms[r];
  const int32_t cr = s.cls[r];
  float thr = di[k - 1];
  const int64_t nb = n / kW * kW;
  if (thr == INFINITY) {
    const int vecs = std::min(kGroupVecs, std::max(1, (3 * k + kW - 1) / kW));
    alignas(64) float gmin[kGroupVecs * kW];
    for (int e = 0; e < vecs * kW; ++e) gmin[e] = INFINITY;
    int v = 0;
    for (int64_t q = 0; q < nb; q += kW) {
      float* acc = gmin + v * kW;
#pragma omp simd
      for (int t = 0; t < kW; ++t) {
        const float ns = nr + nrm[q + t];
        const float d = sq_dist_epilogue(nr, nrm[q + t], gv[q + t]);
        const bool regular = (d > kNearZeroRel * ns) & (cls[q + t] != cr);
        const float c = regular ? d : INFINITY;
        acc[t] = c < acc[t] ? c : acc[t];
      }
      v = v + 1 == vecs ? 0 : v + 1;
    }
    for (int64_t q = nb; q < n; ++q) {
      const float ns = nr + nrm[q];
      const float d = sq_dist_epilogue(nr, nrm[q], gv[q]);
      if (d > kNearZeroRel * ns && cls[q] != cr) gmin[q - nb] = std::min(gmin[q - nb], d);
    }
    if (vecs * kW >= k) {
      std::nth_element(gmin, gmin + (k - 1), gmin + vecs * kW);
      thr = gmin[k - 1];  // +inf when fewer than k groups have a regular member
    }
  }
  alignas(64) float dv[kW];
  auto visit = [&](int64_t q, float d) {
    const int64_t j = c0 + q;
    const float ns = nr + nrm[q];
    const bool dup = cls[q] == cr;
    if (j == r || !knn_candidate(d, thr, ns, dup)) return;
    if (knn_consider(di, ii, k, d, j, dup, ns, skip_zero, xr, s.x + j * m, m)) thr = std::min(thr, di[k - 1]);
  };
  for (int64_t q = 0; q < nb; q += kW) {
    uint32_t mask = 0;
#pragma omp simd reduction(| : mask)
    for (int t = 0; t < kW; ++t) {
      const float ns = nr + nrm[q + t];
      const float d = sq_dist_epilogue(nr, nrm[q + t], gv[q + t]);
      dv[t] = d;
      const uint32_t f = static_cast<uint32_t>(d <= thr) | static_cast<uint32_t>(d <= kNearZeroRel * ns) |
                         static_cast<uint32_t>(cls[q + t] == cr);
      mask |= f << t;
    }
    for (; mask; mask &= mask - 1) {
      const int t = __builtin_ctz(mask);
      visit(q + t, dv[t]);
    }
  }
  for (int64_t q = nb; q < n; ++q) visit(q, sq_dist_epilogue(nr, nrm[q], gv[q]));
}

// Row pass: rows [r_lo, r_hi) of the panel against its columns [i0, b).
void row_pass(const KnnPanel& p, int64_t r_lo, int64_t r_hi) {
  KnnState& s = *p.s;
  const int64_t ld = s.b - p.i0;
  for (int64_t i = r_lo; i < r_hi; ++i) offer(s, i, p.g + (i - p.i0) * ld, p.i0, ld);
}

// Column pass: rows [c_lo, c_hi) (all >= i1) receive the panel's rows [i0, i1) as candidates: the
// panel's columns, kW at a time, transposed into a scratch block and offered like rows.
void col_pass(const KnnPanel& p, int64_t c_lo, int64_t c_hi) {
  KnnState& s = *p.s;
  const int64_t ld = s.b - p.i0, rows = p.i1 - p.i0;
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(kW * rows));
  float* tr = scratch.data();
  for (int64_t j0 = c_lo; j0 < c_hi; j0 += kW) {
    const int w = static_cast<int>(std::min<int64_t>(kW, c_hi - j0));
    const float* g = p.g + (j0 - p.i0);
    for (int64_t r = 0; r < rows; ++r)
      for (int t = 0; t < w; ++t) tr[t * rows + r] = g[r * ld + t];
    for (int t = 0; t < w; ++t) offer(s, j0 + t, tr + t * rows, p.i0, rows);
  }
}

struct Task {
  int32_t panel;
  bool column;
  int64_t lo, hi;
};

int clamp_threads(int threads) { return threads < 1 ? 1 : threads; }

}  // namespace

void knn_prepare(std::vector<KnnState*>& states, int threads) {
  const size_t ns = states.size();
  std::vector<int64_t> off(ns + 1, 0);
  for (size_t t = 0; t < ns; ++t) {
    KnnState& s = *states[t];
    if (s.x == nullptr && s.b * s.m > 0) throw std::invalid_argument("lidsplit: knn state '" + s.name + "' has no data");
    if (s.k < 1 || s.b <= s.k)
      throw std::invalid_argument("lidsplit: argument '" + s.name + "': need more rows than neighbours, got b = " +
                                  std::to_string(s.b) + " rows and k = " + std::to_string(s.k));
    if (s.m < 1) throw std::invalid_argument("lidsplit: argument '" + s.name + "' has no columns (m = 0)");
    if (s.b > std::numeric_limits<int32_t>::max() - 1)
      throw std::invalid_argument("lidsplit: argument '" + s.name + "': at most 2^31 - 2 rows");
    s.norms.assign(s.b, 0.0f);
    s.cls.assign(s.b, 0);
    s.dist.assign(s.b * s.k, INFINITY);
    s.idx.assign(s.b * s.k, std::numeric_limits<int32_t>::max());
    s.next_row = 0;
    off[t + 1] = off[t] + s.b;
  }
  const int64_t total = off[ns];
  int64_t work = 0;
  for (size_t t = 0; t < ns; ++t) work += states[t]->b * states[t]->m;
  int64_t bad = std::numeric_limits<int64_t>::max();
#pragma omp parallel for num_threads(clamp_threads(threads)) schedule(static) reduction(min : bad) if (work >= kParallelWork)
  for (int64_t r = 0; r < total; ++r) {
    const size_t t = static_cast<size_t>(std::upper_bound(off.begin(), off.end(), r) - off.begin()) - 1;
    KnnState& s = *states[t];
    const int64_t i = r - off[t];
    const float n = row_sq_norm(s.x + i * s.m, s.m);
    s.norms[i] = n;
    if (!(n <= kMaxSqNorm)) bad = std::min(bad, r);
  }
  if (bad != std::numeric_limits<int64_t>::max()) {
    const size_t t = static_cast<size_t>(std::upper_bound(off.begin(), off.end(), bad) - off.begin()) - 1;
    const KnnState& s = *states[t];
    const int64_t i = bad - off[t];
    bool finite = true;
    for (int64_t l = 0; l < s.m; ++l) finite = finite && std::isfinite(s.x[i * s.m + l]);
    if (!finite)
      throw std::invalid_argument("lidsplit: argument '" + s.name + "' contains NaN or Inf (row " + std::to_string(i) + ")");
    throw std::invalid_argument("lidsplit: argument '" + s.name + "': row " + std::to_string(i) +
                                " is too large for float32 distances (squared norm above 8.5e37); rescale the input");
  }
#pragma omp parallel for num_threads(clamp_threads(threads)) schedule(dynamic, 1) if (ns > 1)
  for (size_t t = 0; t < ns; ++t) duplicate_classes(*states[t]);
}

void knn_update(const std::vector<KnnPanel>& panels, int threads) {
  std::unordered_set<const KnnState*> seen;
  std::vector<Task> tasks;
  for (size_t q = 0; q < panels.size(); ++q) {
    const KnnPanel& p = panels[q];
    KnnState& s = *p.s;
    if (!seen.insert(&s).second)
      throw std::invalid_argument("lidsplit: knn_update got two panels of '" + s.name + "' in one call");
    if (p.g == nullptr || p.i0 != s.next_row || p.i1 <= p.i0 || p.i1 > s.b)
      throw std::invalid_argument("lidsplit: knn_update: panel rows [" + std::to_string(p.i0) + ", " +
                                  std::to_string(p.i1) + ") of '" + s.name + "' out of order (next row " +
                                  std::to_string(s.next_row) + ", b = " + std::to_string(s.b) + ")");
    const int64_t cols = s.b - p.i0, rows = p.i1 - p.i0;
    const int64_t rstep = std::max<int64_t>(1, kTaskPairs / cols);
    for (int64_t r = p.i0; r < p.i1; r += rstep)
      tasks.push_back({static_cast<int32_t>(q), false, r, std::min(p.i1, r + rstep)});
    const int64_t cstep = std::max<int64_t>(1, kTaskPairs / rows / kW) * kW;
    for (int64_t c = p.i1; c < s.b; c += cstep) tasks.push_back({static_cast<int32_t>(q), true, c, std::min(s.b, c + cstep)});
  }
  const int64_t nt = static_cast<int64_t>(tasks.size());
  int64_t pairs = 0;  // a small matrix (b = 128: 16k pairs, tens of microseconds) runs on this thread
  for (const KnnPanel& p : panels) pairs += (p.i1 - p.i0) * (p.s->b - p.i0);
#pragma omp parallel for num_threads(clamp_threads(threads)) schedule(dynamic, 1) if (nt > 1 && pairs >= kParallelWork)
  for (int64_t t = 0; t < nt; ++t) {
    const Task& task = tasks[t];
    if (task.column)
      col_pass(panels[task.panel], task.lo, task.hi);
    else
      row_pass(panels[task.panel], task.lo, task.hi);
  }
  for (const KnnPanel& p : panels) p.s->next_row = p.i1;
}

void lid_finish(const std::vector<KnnState*>& states, int estimator, float* rows, bool* valid, float* means,
                int64_t* counts, int threads) {
  const size_t ns = states.size();
  std::vector<int64_t> off(ns + 1, 0);
  for (size_t t = 0; t < ns; ++t) {
    const KnnState& s = *states[t];
    if (s.next_row != s.b || s.dist.size() != static_cast<size_t>(s.b * s.k))
      throw std::invalid_argument("lidsplit: lid_finish before every panel of '" + s.name + "' was processed");
    off[t + 1] = off[t] + s.b;
  }
  const int64_t total = off[ns];
  std::vector<float> est(total);
  std::vector<unsigned char> ok(total);
  int64_t work = 0;
  for (size_t t = 0; t < ns; ++t) work += states[t]->b * states[t]->k;
#pragma omp parallel for num_threads(clamp_threads(threads)) schedule(static) if (work >= kParallelWork / 4)
  for (int64_t r = 0; r < total; ++r) {
    const size_t t = static_cast<size_t>(std::upper_bound(off.begin(), off.end(), r) - off.begin()) - 1;
    const KnnState& s = *states[t];
    bool v = false;
    est[r] = lid_from_sorted(s.dist.data() + (r - off[t]) * s.k, s.k, estimator, &v);
    ok[r] = v;
  }
  for (size_t t = 0; t < ns; ++t) {
    double sum = 0.0;
    int64_t n = 0;
    for (int64_t r = off[t]; r < off[t + 1]; ++r)
      if (ok[r]) {
        sum += est[r];
        ++n;
      }
    means[t] = n ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
    counts[t] = n;
  }
  if (rows) std::copy(est.begin(), est.end(), rows);
  if (valid)
    for (int64_t r = 0; r < total; ++r) valid[r] = ok[r] != 0;
}

void knn_finish(const KnnState& s, float* dist, int64_t* idx) {
  if (s.next_row != s.b || s.dist.size() != static_cast<size_t>(s.b * s.k))
    throw std::invalid_argument("lidsplit: knn_finish before every panel of '" + s.name + "' was processed");
  std::copy(s.dist.begin(), s.dist.end(), dist);
  for (size_t e = 0; e < s.idx.size(); ++e) idx[e] = s.idx[e];
}

}  // namespace lidsplit::cpu

// Per-element logic of the k-nearest-neighbour and LID kernels, shared by the CPU (csrc/cpu/knn.cpp)
// and CUDA (csrc/cuda/knn.cu) kernels: the squared-distance epilogue, the duplicate / near-zero
// rule, the running sorted top-k insertion (ties by lower index) and the LID estimators.
//
// Conventions:
//  * A row's neighbour list is `k` (distance, index) pairs sorted ascending by (distance, index);
//    an empty slot holds (+inf, max index). `dist[k-1]` is the row's current admission threshold.
//  * Distances are squared Euclidean, float32. The expansion |xi|^2 + |xj|^2 - 2<xi, xj> (with the
//    Gram entry from a float32 GEMM) is used unless it is below kNearZeroRel * (|xi|^2 + |xj|^2),
//    where cancellation makes it meaningless: such a pair is recomputed exactly from the rows
//    (exact_sq_dist), so two rows are at distance 0 exactly when they are equal, and distinct rows
//    are always at a positive distance.
//  * `dup` says the two rows are known to be equal; callers compute it from a duplicate-class id per
//    row (cheaper than comparing rows). Equal rows that the ids miss are still found: their exact
//    distance is 0.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "lidsplit/common.h"

namespace lidsplit {

// Which LID estimator (the Python strings "mle", "levina_bickel", "official").
enum LidEstimator : int { kLidMle = 0, kLidLevinaBickel = 1, kLidOfficial = 2 };

// Below this fraction of |xi|^2 + |xj|^2 the expanded squared distance is recomputed exactly.
// float32 GEMM error is about sqrt(m) * 6e-8 of that sum, so 2^-10 leaves a wide margin.
constexpr float kNearZeroRel = 1.0f / 1024.0f;

// The eps terms of the NAS-LID code ("official" estimator).
constexpr double kOfficialEps = 1e-6;

// Squared distance from the Gram entry; never negative.
LIDSPLIT_HD float sq_dist_epilogue(float ni, float nj, float g) {
  const float d = (ni + nj) - 2.0f * g;
  return d > 0.0f ? d : 0.0f;
}

// Cheap pre-filter, evaluated for every pair: can (d, j) change row i's list, or does it need the
// exact path (duplicate, or near zero)? Must be true for every pair the full rule could insert.
LIDSPLIT_HD bool knn_candidate(float d, float thr, float nsum, bool dup) {
  return dup || d <= thr || d <= kNearZeroRel * nsum;
}

// Exact squared distance of two float32 rows, accumulated in double. A positive result that would
// round to 0 in float32 is returned as the smallest positive float, so distinct rows stay apart.
LIDSPLIT_HD float exact_sq_dist(const float* a, const float* b, int64_t m) {
  double s = 0.0;
  for (int64_t l = 0; l < m; ++l) {
    const double t = static_cast<double>(a[l]) - static_cast<double>(b[l]);
    s += t * t;
  }
  float f = static_cast<float>(s);
  if (f == 0.0f && s > 0.0) f = FLT_TRUE_MIN;
  return f;
}

// (da, ia) strictly before (db, ib): smaller distance, ties by lower index.
template <class I>
LIDSPLIT_HD bool knn_before(float da, int64_t ia, float db, I ib) {
  return da < db || (da == db && ia < static_cast<int64_t>(ib));
}

// Insert (d, j) into the sorted list if it belongs to the k best; returns whether it did. A plain
// shift from the end: measured faster here than a binary search or a branch-free (SIMD) count.
template <class I>
LIDSPLIT_HD bool topk_insert(float* dist, I* idx, int k, float d, int64_t j) {
  if (!knn_before(d, j, dist[k - 1], idx[k - 1])) return false;
  int p = k - 1;
  while (p > 0 && knn_before(d, j, dist[p - 1], idx[p - 1])) {
    dist[p] = dist[p - 1];
    idx[p] = idx[p - 1];
    --p;
  }
  dist[p] = d;
  idx[p] = static_cast<I>(j);
  return true;
}

// The full rule for a pair that passed knn_candidate (j != i): resolve duplicates and near-zero
// distances exactly, skip duplicates when `skip_zero` (the MLE rule), then insert.
template <class I>
LIDSPLIT_HD bool knn_consider(float* dist, I* idx, int k, float d_approx, int64_t j, bool dup, float nsum,
                              bool skip_zero, const float* xi, const float* xj, int64_t m) {
  float d;
  if (dup) {
    if (skip_zero) return false;
    d = 0.0f;
  } else {
    d = d_approx;
    const float tol = kNearZeroRel * nsum;
    if (d <= tol) {
      if (d > dist[k - 1] + tol) return false;  // cannot enter even if the exact value is smaller
      d = exact_sq_dist(xi, xj, m);
      if (d == 0.0f && skip_zero) return false;  // equal rows the class ids missed (exactly 0 iff equal)
    }
  }
  return topk_insert(dist, idx, k, d, j);
}

// LID of one row from its sorted squared neighbour distances d2[0..k).
//  mle / levina_bickel: the list holds the k nearest neighbours at positive distance; the row is
//    invalid (returns NaN, *valid = false) if the list is not full or all k distances are equal: NaN so
//    that a plain mean over per-row values is loudly NaN, never silently wrong.
//    mle = -k / sum_j log(r_j / r_k); levina_bickel = -(k-1) / sum_j log(r_j / r_k) (r = sqrt(d2)).
//  official: the k nearest other rows, zeros included (NAS-LID code):
//    -k / (sum_j log(r_j / (r_k + 1e-6)) + 1e-6); a zero distance gives log 0 = -inf and LID 0.
LIDSPLIT_HD float lid_from_sorted(const float* d2, int k, int estimator, bool* valid) {
  if (estimator == kLidOfficial) {
    const double rk = sqrt(static_cast<double>(d2[k - 1]));
    double s = 0.0;
    for (int j = 0; j < k; ++j) s += log(sqrt(static_cast<double>(d2[j])) / (rk + kOfficialEps));
    *valid = true;
    return static_cast<float>(-static_cast<double>(k) / (s + kOfficialEps));
  }
  const float last = d2[k - 1];
  if (!(last < INFINITY) || !(d2[0] > 0.0f)) {
    *valid = false;
    return NAN;
  }
  // log of each ratio in float32 (the ratio is exact to 6e-8 and logf is accurate near 1, so no
  // cancellation), summed in float64: 2-4x faster than double logs, same result to ~1e-7.
  double s = 0.0;
  for (int j = 0; j < k; ++j) s += 0.5 * static_cast<double>(logf(d2[j] / last));
  if (!(s < 0.0)) {
    *valid = false;
    return NAN;
  }
  const double num = estimator == kLidLevinaBickel ? static_cast<double>(k - 1) : static_cast<double>(k);
  *valid = true;
  return static_cast<float>(-num / s);
}

}  // namespace lidsplit

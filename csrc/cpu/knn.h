// CPU kernels of the knn / lid op family (OpenMP, raw pointers, no pybind11).
//
// The dense product comes from outside (torch's GEMM, called from Python): the caller computes the
// Gram matrix of one matrix panel by panel, G = X[i0:i1] @ X[i0:b]^T, and hands each panel to
// knn_update, which runs the fused epilogue (squared distance, self exclusion by index, duplicate and
// near-zero rule, running per-row top-k) on both rows of the panel (row pass) and, by symmetry, on the
// rows below it (column pass). The b x b matrix never exists; per matrix the state is O(b * k).
//
// Panels of one matrix must arrive in order (i0 = 0, then each i0 = the previous i1, up to b); this
// is checked, so that every pair is seen exactly once by each of its two rows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lidsplit::cpu {

struct KnnState {
  // Set by the caller before knn_prepare.
  const float* x = nullptr;  // (b, m) row-major float32; must stay alive until the last call
  int64_t b = 0;
  int64_t m = 0;
  int k = 0;
  bool skip_zero = false;  // MLE rule: neighbours equal to the row (distance 0) are not neighbours
  std::string name;        // used in error messages, e.g. "x" or "features[3]"

  // Filled by knn_prepare.
  std::vector<float> norms;   // |x_i|^2, float32
  std::vector<int32_t> cls;   // duplicate class: the lowest index of a row equal to x_i
  std::vector<float> dist;    // (b, k) sorted squared distances, +inf when empty
  std::vector<int32_t> idx;   // (b, k) neighbour indices
  int64_t next_row = 0;       // panels seen so far cover rows [0, next_row)
};

// Norms, finiteness check (std::invalid_argument naming the matrix and row on NaN/Inf or values whose
// squares overflow float32), duplicate classes, empty lists. Parallel over all rows of all states.
void knn_prepare(std::vector<KnnState*>& states, int threads);

struct KnnPanel {
  KnnState* s;
  const float* g;  // (i1 - i0, b - i0) row-major: g[r * (b - i0) + c] = <x[i0 + r], x[i0 + c]>
  int64_t i0, i1;
};

// Runs the epilogue of every panel (at most one panel per state per call). Parallel over row and
// column chunks of all panels together.
void knn_update(const std::vector<KnnPanel>& panels, int threads);

// LID of every row of every state (`estimator` is a lidsplit::LidEstimator): rows[o_s + i] and
// valid[o_s + i] with o_s the sum of the b of the states before s (either may be null), means[s] (mean
// over the valid rows, 0 if none) and counts[s] (number of valid rows).
void lid_finish(const std::vector<KnnState*>& states, int estimator, float* rows, bool* valid, float* means,
                int64_t* counts, int threads);

// The neighbour lists of one state as float32 squared distances and int64 indices, (b, k) each.
void knn_finish(const KnnState& s, float* dist, int64_t* idx);

}  // namespace lidsplit::cpu

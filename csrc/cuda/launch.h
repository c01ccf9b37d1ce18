// Plain C++ entry points of the CUDA kernels, called by the binding files. No pybind11, no Python,
// no CUDA headers here, so this file is included from both .cpp and .cu translation units.
// Every launch takes the raw cudaStream_t of torch's current stream as an integer.
#pragma once
#include <cstdint>
#include <string>

namespace lidsplit::cuda {

// Number of usable devices; 0 with `why` set when the runtime or driver cannot be used.
int device_count(std::string& why);
int runtime_version();

}  // namespace lidsplit::cuda

// ---- masked_sum (csrc/cuda/masked_sum.cu) and gradient gram (csrc/cuda/gradient.cu) -------------
// Dtype arguments are lidsplit::FloatKind values (csrc/include/lidsplit/reduce.h) as int. All pointers
// are device pointers on `device`; weights are read on the device (no host sync). Launch failures
// throw std::runtime_error naming the kernel.
namespace lidsplit::cuda {

// out = sum_j w[g, j] * xs[j] per group (see lidsplit::cpu::masked_sum); w has kind w_kind (float32 or
// the inputs' kind), row-major (groups, n). A zero weight skips the load of that input.
void masked_sum(int device, int kind, const void* const* xs, int64_t n, const void* w, int w_kind, int64_t groups,
                int64_t group_numel, void* out, std::uintptr_t stream);
// outs[j][g-slice] = w[g, j] * grad[g-slice]; zero weight -> zeros, grad not read.
void masked_sum_spread(int device, int kind, const void* grad, int64_t n, const void* w, int w_kind,
                       int64_t groups, int64_t group_numel, void* const* outs, std::uintptr_t stream);
// out[g*n + j] = <xs[j][g-slice], grad[g-slice]> (float64); ws: masked_sum_wgrad_workspace(groups, n)
// doubles of device scratch.
void masked_sum_wgrad(int device, int kind, const void* const* xs, int64_t n, const void* grad, int64_t groups,
                      int64_t group_numel, double* ws, double* out, std::uintptr_t stream);
int64_t masked_sum_wgrad_workspace(int64_t groups, int64_t n);

// One parameter of the gradient gram: n device pointers (nullptr = missing, counts as zeros).
struct GramParamDev {
  int kind;
  int64_t numel;
  const void* const* ptrs;  // host array of n device pointers
};
// out (n x n float64, device) = gram of the n vectors, or their cosine matrix when `cosine`
// (lidsplit::cosine_from_gram); ws: gradient_gram_workspace(n, num_params) doubles of device scratch
// (partials and the work list). One launch per tile pair of 8 vectors covers all parameters.
void gradient_gram(int device, const GramParamDev* params, int64_t num_params, int64_t n, bool cosine, double* ws,
                   double* out, std::uintptr_t stream);
int64_t gradient_gram_workspace(int64_t n, int64_t num_params);

}  // namespace lidsplit::cuda

// ---- knn / lid (csrc/cuda/knn.cu) -----------------------------------------------------------------
// All pointers are device pointers on `device`; work is queued on `stream` (no host sync). Launch
// failures throw std::runtime_error naming the kernel.
namespace lidsplit::cuda {

// For each of the B matrices x[s] (b, m) float32 row-major: the k nearest other rows of every row
// (squared Euclidean, ascending, ties by lower index, self excluded by index), written to dist and idx
// (B, b, k). cls (B, b): equal rows share a class id (distance exactly 0); skip_zero drops them (the
// MLE rule). norms (B, b) is scratch. The b x b matrix is never stored.
void knn(int device, const float* x, const int32_t* cls, float* norms, int64_t B, int64_t b, int64_t m, int k,
         bool skip_zero, float* dist, int64_t* idx, std::uintptr_t stream);

// out[r], valid[r] = LID of row r from its sorted squared neighbour distances dist[r * k .. r * k + k)
// (lidsplit::lid_from_sorted), for `rows` rows.
void lid_rows(int device, const float* dist, int64_t rows, int k, int estimator, float* out, bool* valid,
              std::uintptr_t stream);

}  // namespace lidsplit::cuda

// ---- superpose (csrc/cuda/superpose.cu) --------------------------------------------------------
// shape: host array of ndim (<= 8) sizes; src/out/grad device tensors of that shape and dtype `kind`;
// coeffs: n device values of kind coeff_kind; boxes: device int64 (n, ndim, 2), ranges clamped to the
// shape on the device (never read out of bounds).
namespace lidsplit::cuda {

// out[idx] = src[idx] * sum of coeffs[i] over the boxes i containing idx.
void superpose(int device, int kind, const void* src, const int64_t* shape, int ndim, const void* coeffs,
               int coeff_kind, int64_t n, const int64_t* boxes, void* out, std::uintptr_t stream);
// out[i] (float64, device) = sum over box i of grad * src; ws: superpose_coeff_grad_workspace(n) doubles.
void superpose_coeff_grad(int device, int kind, const void* grad, const void* src, const int64_t* shape, int ndim,
                          const int64_t* boxes, int64_t n, double* ws, double* out, std::uintptr_t stream);
int64_t superpose_coeff_grad_workspace(int64_t n);

}  // namespace lidsplit::cuda

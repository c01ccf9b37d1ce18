// CPU kernels of superpose. The forward works on chunks of at most kChunk elements along the last
// dimension. The boxes containing a row (all dimensions but the last) are the AND of per-dimension bit
// sets; when they differ from the previous row's, their coefficients are added over their
// last-dimension ranges into a line buffer, in box order (the same order, hence the same float result,
// as lidsplit::superpose_coefficient per element on the GPU). Each element then costs one multiply.
#include "cpu/superpose.h"

#include <algorithm>
#include <vector>

#include "lidsplit/dispatch.h"
#include "lidsplit/superpose.h"

namespace lidsplit::cpu {
namespace {

constexpr int64_t kChunk = 4096;   // elements of the last dimension per task (when it alone is large)
constexpr int64_t kInner = 16384;  // most elements of an inner block whose coefficients are cached
constexpr int64_t kParallelMin = 1 << 15;
constexpr int64_t kGradTaskElems = 4096;  // elements per task of the coefficient gradient

// Per outer dimension d < p and index v, the set of boxes whose range in d contains v, as bit words
// (bit i of word i/64). The boxes containing an outer row are the AND over its dimensions.
struct DimMasks {
  int64_t words = 0;
  std::vector<std::vector<uint64_t>> bits;  // bits[d][v * words + w]

  DimMasks(const int64_t* shape, int ndim, int p, const int64_t* boxes, int64_t n) {
    words = std::max<int64_t>(1, (n + 63) / 64);
    bits.resize(p);
    for (int d = 0; d < p; ++d) {
      bits[d].assign(static_cast<size_t>(shape[d] * words), 0);
      for (int64_t i = 0; i < n; ++i) {
        int64_t a, b;
        box_range(boxes, i, ndim, d, shape[d], &a, &b);
        for (int64_t v = a; v < b; ++v) bits[d][v * words + i / 64] |= uint64_t(1) << (i % 64);
      }
    }
  }
};

// line[...] += c over box i restricted to the inner dimensions [p, ndim) and, in the last dimension, to
// the chunk [off, off + cnt) (line holds the inner block, or one chunk of the last dimension when p is
// ndim - 1).
template <class A>
void add_inner_box(A* line, A c, const int64_t* boxes, int64_t i, int ndim, int p, const int64_t* shape, int64_t off,
                   int64_t cnt) {
  int64_t st[kSuperposeMaxDims], ex[kSuperposeMaxDims];
  int64_t rows = 1;
  for (int d = p; d < ndim; ++d) {
    int64_t a, b;
    box_range(boxes, i, ndim, d, shape[d], &a, &b);
    if (d == ndim - 1) {
      a = std::max(a, off);
      b = std::min(b, off + cnt);
      if (b < a) b = a;
    }
    st[d] = a;
    ex[d] = b - a;
    if (d < ndim - 1) rows *= ex[d];
  }
  const int64_t w = ex[ndim - 1];
  if (w == 0 || rows == 0) return;
  int64_t k[kSuperposeMaxDims] = {0};  // odometer over the inner dimensions but the last
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = 0;
    for (int d = p; d < ndim - 1; ++d) base = base * shape[d] + st[d] + k[d];
    A* l = line + base * (p == ndim - 1 ? 0 : shape[ndim - 1]) + (st[ndim - 1] - off);
    for (int64_t e = 0; e < w; ++e) l[e] += c;
    for (int d = ndim - 2; d >= p; --d) {
      if (++k[d] < ex[d]) break;
      k[d] = 0;
    }
  }
}

template <class T>
void superpose_impl(const void* src_, const int64_t* shape, int ndim, const double* coeffs, int64_t n,
                    const int64_t* boxes, void* out_) {
  using A = typename Scalar<T>::acc;
  const T* src = static_cast<const T*>(src_);
  T* out = static_cast<T*>(out_);
  // Split the dimensions into outer [0, p) and inner [p, ndim): the inner block (at most kInner elements,
  // at least the last dimension, chunked when that alone is larger) gets its coefficients computed once
  // per distinct set of boxes containing the outer index.
  int p = ndim - 1;
  int64_t inner = shape[ndim - 1];
  while (p > 0 && inner * shape[p - 1] <= kInner) inner *= shape[--p];
  const int64_t len = shape[ndim - 1];
  const int64_t chunk = p == ndim - 1 ? std::min(len, kChunk) : inner;
  const int64_t chunks = p == ndim - 1 ? (len + chunk - 1) / chunk : 1;
  int64_t rows = 1;
  for (int d = 0; d < p; ++d) rows *= shape[d];
  const int64_t tasks = rows * chunks;
  std::vector<A> cf(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) cf[i] = static_cast<A>(coeffs[i]);
  const DimMasks masks(shape, ndim, p, boxes, n);
  const int64_t words = masks.words;
  std::vector<uint64_t> valid(static_cast<size_t>(words), ~uint64_t(0));  // bits of existing boxes
  if (n % 64) valid[words - 1] = (uint64_t(1) << (n % 64)) - 1;
  if (n == 0) valid[0] = 0;
#pragma omp parallel if (rows * inner >= kParallelMin)
  {
    int64_t idx[kSuperposeMaxDims] = {0};
    std::vector<uint64_t> cur(static_cast<size_t>(words)), prev(static_cast<size_t>(words));
    std::vector<A> line(static_cast<size_t>(chunk));
    int64_t prev_off = -1, next_task = -1;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t r = t / chunks;
      const int64_t off = (t % chunks) * chunk;
      const int64_t cnt = p == ndim - 1 ? std::min(chunk, len - off) : inner;
      // The outer multi-index: unravelled at a thread's first task, then advanced like an odometer.
      if (t != next_task) {
        unravel_index(r, shape, p, idx);
      } else if (off == 0) {
        for (int d = p - 1; d >= 0; --d) {
          if (++idx[d] < shape[d]) break;
          idx[d] = 0;
        }
      }
      next_task = t + 1;
      for (int64_t w = 0; w < words; ++w) {
        uint64_t m = valid[w];
        for (int d = 0; d < p; ++d) m &= masks.bits[d][idx[d] * words + w];
        cur[w] = m;
      }
      if (off != prev_off || cur != prev) {  // the coefficients of the inner block changed
        for (int64_t e = 0; e < cnt; ++e) line[e] = A(0);
        for (int64_t w = 0; w < words; ++w)
          for (uint64_t m = cur[w]; m; m &= m - 1) {
            const int64_t i = w * 64 + __builtin_ctzll(m);
            add_inner_box<A>(line.data(), cf[i], boxes, i, ndim, p, shape, off, cnt);
          }
        prev = cur;
        prev_off = off;
      }
      const T* s = src + r * (p == ndim - 1 ? len : inner) + off;
      T* o = out + r * (p == ndim - 1 ? len : inner) + off;
      for (int64_t e = 0; e < cnt; ++e) o[e] = Scalar<T>::from_acc(Scalar<T>::to_acc(s[e]) * line[e]);
    }
  }
}

struct GradTask {
  int64_t box;
  int64_t row0, row1;  // rows of the box (local, in its first ndim-1 dimensions)
};

template <class T>
void coeff_grad_impl(const void* grad_, const void* src_, const int64_t* shape, int ndim, const int64_t* boxes,
                     int64_t n, double* out) {
  const T* grad = static_cast<const T*>(grad_);
  const T* src = static_cast<const T*>(src_);
  const int64_t len = shape[ndim - 1];
  // Fixed tasks (a function of the shapes only), partial sums combined in task order: deterministic.
  std::vector<GradTask> tasks;
  std::vector<int64_t> starts(static_cast<size_t>(n) * kSuperposeMaxDims), exts(static_cast<size_t>(n) * kSuperposeMaxDims);
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t* st = starts.data() + i * kSuperposeMaxDims;
    int64_t* ex = exts.data() + i * kSuperposeMaxDims;
    const int64_t vol = box_volume(boxes, i, ndim, shape, st, ex);
    if (vol == 0) continue;
    total += vol;
    int64_t rows = 1;
    for (int d = 0; d < ndim - 1; ++d) rows *= ex[d];
    const int64_t per = std::max<int64_t>(1, kGradTaskElems / std::max<int64_t>(1, ex[ndim - 1]));
    for (int64_t r = 0; r < rows; r += per) tasks.push_back({i, r, std::min(rows, r + per)});
  }
  std::vector<double> partial(tasks.size(), 0.0);
  const int64_t ntasks = static_cast<int64_t>(tasks.size());
#pragma omp parallel for schedule(dynamic, 4) if (total >= kParallelMin)
  for (int64_t t = 0; t < ntasks; ++t) {
    const GradTask& task = tasks[t];
    const int64_t* st = starts.data() + task.box * kSuperposeMaxDims;
    const int64_t* ex = exts.data() + task.box * kSuperposeMaxDims;
    const int64_t w = ex[ndim - 1];
    double acc = 0.0;
    for (int64_t r = task.row0; r < task.row1; ++r) {
      const int64_t row = ndim > 1 ? box_element_offset(r, st, ex, shape, ndim - 1) : 0;
      const int64_t base = row * len + st[ndim - 1];
      double s = 0.0;
      for (int64_t e = 0; e < w; ++e) s += Scalar<T>::to_double(grad[base + e]) * Scalar<T>::to_double(src[base + e]);
      acc += s;
    }
    partial[t] = acc;
  }
  std::fill(out, out + n, 0.0);
  for (int64_t t = 0; t < ntasks; ++t) out[tasks[t].box] += partial[t];
}

}  // namespace

void superpose(FloatKind kind, const void* src, const int64_t* shape, int ndim, const double* coeffs, int64_t n,
               const int64_t* boxes, void* out) {
  int64_t numel = 1;
  for (int d = 0; d < ndim; ++d) numel *= shape[d];
  if (numel == 0) return;
  LIDSPLIT_DISPATCH_FLOAT(kind, T, superpose_impl<T>(src, shape, ndim, coeffs, n, boxes, out));
}

void superpose_coeff_grad(FloatKind kind, const void* grad, const void* src, const int64_t* shape, int ndim,
                          const int64_t* boxes, int64_t n, double* out) {
  if (n == 0) return;
  LIDSPLIT_DISPATCH_FLOAT(kind, T, coeff_grad_impl<T>(grad, src, shape, ndim, boxes, n, out));
}

}  // namespace lidsplit::cpu

// Bindings of the knn / lid op family: checks, dispatch to csrc/cpu/knn.cpp or csrc/cuda/knn.cu.
//
// CPU: the Gram matrix comes from torch's GEMM, called from Python panel by panel (see
// python/lidsplit/ops/lid.py), so the CPU entry points are a small state machine:
//   s = knn_prepare([x...], k, skip_zero, [name...], threads)   # norms, checks, duplicate classes
//   s.update(buf, [(state, offset, i0, i1), ...], threads)       # epilogue of Gram panels in buf
//   s.finish_lid(...) or s.finish_knn(...)                       # LID per row / mean, or the lists
// The KnnSet keeps the input capsules (and so the tensors) alive until it is dropped.
//
// CUDA: knn_cuda / lid_rows_cuda run everything on the device on the given stream.
#include <memory>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bridge.h"
#include "cpu/knn.h"
#include "lidsplit/knn.h"
#ifdef LIDSPLIT_WITH_CUDA
#include "cuda/launch.h"
#endif

namespace lidsplit {
namespace {

void check_cpu(const TensorArg& a) {
  if (a.cuda) a.fail("a CPU tensor (this entry point is the CPU kernel)");
}

void check_estimator(int estimator) {
  if (estimator != kLidMle && estimator != kLidLevinaBickel && estimator != kLidOfficial)
    throw std::invalid_argument("lidsplit: unknown LID estimator code " + std::to_string(estimator));
}

struct KnnSet {
  std::vector<std::unique_ptr<cpu::KnnState>> states;
  std::vector<py::capsule> keep;  // the inputs, alive as long as the states point into them

  std::vector<cpu::KnnState*> ptrs() const {
    std::vector<cpu::KnnState*> p;
    for (auto& s : states) p.push_back(s.get());
    return p;
  }
  int64_t total_rows() const {
    int64_t n = 0;
    for (auto& s : states) n += s->b;
    return n;
  }
};

std::unique_ptr<KnnSet> knn_prepare(const std::vector<py::capsule>& xs, int k, bool skip_zero,
                                    const std::vector<std::string>& names, int threads) {
  if (names.size() != xs.size()) throw std::invalid_argument("lidsplit: knn_prepare: one name per matrix");
  if (xs.empty()) throw std::invalid_argument("lidsplit: knn_prepare: no matrices");
  auto set = std::make_unique<KnnSet>();
  for (size_t t = 0; t < xs.size(); ++t) {
    TensorArg a = tensor_arg(xs[t], names[t].c_str());
    require_cuda_build(a);
    check_cpu(a);
    a.check_dtype({DType::kFloat32});
    a.check_dim(2);
    if (a.numel() == 0) a.fail("a non-empty matrix");
    auto s = std::make_unique<cpu::KnnState>();
    s->x = a.ptr<const float>();
    s->b = a.size(0);
    s->m = a.size(1);
    s->k = k;
    s->skip_zero = skip_zero;
    s->name = names[t];
    set->states.push_back(std::move(s));
    set->keep.push_back(xs[t]);
  }
  auto p = set->ptrs();
  {
    py::gil_scoped_release nogil;
    cpu::knn_prepare(p, threads);
  }
  return set;
}

void knn_set_update(KnnSet& set, const py::capsule& buf, const std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t>>& panels,
                    int threads) {
  TensorArg g = tensor_arg(buf, "buf");
  check_cpu(g);
  g.check_dtype({DType::kFloat32});
  g.check_dim(1);
  std::vector<cpu::KnnPanel> ps;
  for (auto& [state, offset, i0, i1] : panels) {
    if (state < 0 || state >= static_cast<int64_t>(set.states.size()))
      throw std::invalid_argument("lidsplit: knn update: state index " + std::to_string(state) + " out of range");
    cpu::KnnState* s = set.states[state].get();
    if (i0 < 0 || i1 <= i0 || i1 > s->b)
      throw std::invalid_argument("lidsplit: knn update: bad panel rows [" + std::to_string(i0) + ", " + std::to_string(i1) + ")");
    const int64_t need = (i1 - i0) * (s->b - i0);
    if (offset < 0 || offset + need > g.numel())
      g.fail(std::to_string(need) + " elements from offset " + std::to_string(offset) + " for a panel of '" + s->name + "'");
    ps.push_back({s, g.ptr<const float>() + offset, i0, i1});
  }
  py::gil_scoped_release nogil;
  cpu::knn_update(ps, threads);
}

void knn_set_finish_lid(KnnSet& set, int estimator, const py::object& rows, const py::object& valid,
                        const py::capsule& means, const py::capsule& counts, int threads) {
  check_estimator(estimator);
  const int64_t total = set.total_rows(), ns = static_cast<int64_t>(set.states.size());
  float* rows_p = nullptr;
  bool* valid_p = nullptr;
  if (!rows.is_none()) {
    TensorArg r = tensor_arg(rows.cast<py::capsule>(), "rows");
    check_cpu(r);
    r.check_dtype({DType::kFloat32});
    r.check_writable();
    if (r.numel() != total) r.fail(std::to_string(total) + " elements");
    rows_p = r.ptr<float>();
  }
  if (!valid.is_none()) {
    TensorArg v = tensor_arg(valid.cast<py::capsule>(), "valid");
    check_cpu(v);
    v.check_dtype({DType::kBool});
    v.check_writable();
    if (v.numel() != total) v.fail(std::to_string(total) + " elements");
    valid_p = v.ptr<bool>();
  }
  TensorArg mu = tensor_arg(means, "means");
  check_cpu(mu);
  mu.check_dtype({DType::kFloat32});
  mu.check_writable();
  if (mu.numel() != ns) mu.fail(std::to_string(ns) + " elements");
  TensorArg ct = tensor_arg(counts, "counts");
  check_cpu(ct);
  ct.check_dtype({DType::kInt64});
  ct.check_writable();
  if (ct.numel() != ns) ct.fail(std::to_string(ns) + " elements");
  auto p = set.ptrs();
  py::gil_scoped_release nogil;
  cpu::lid_finish(p, estimator, rows_p, valid_p, mu.ptr<float>(), ct.ptr<int64_t>(), threads);
}

void knn_set_finish_knn(KnnSet& set, const py::capsule& dist, const py::capsule& idx) {
  TensorArg d = tensor_arg(dist, "dist");
  TensorArg i = tensor_arg(idx, "index");
  check_cpu(d);
  check_cpu(i);
  d.check_dtype({DType::kFloat32});
  i.check_dtype({DType::kInt64});
  d.check_writable();
  i.check_writable();
  int64_t need = 0;
  for (auto& s : set.states) need += s->b * s->k;
  if (d.numel() != need) d.fail(std::to_string(need) + " elements");
  if (i.numel() != need) i.fail(std::to_string(need) + " elements");
  py::gil_scoped_release nogil;
  int64_t off = 0;
  for (auto& s : set.states) {
    cpu::knn_finish(*s, d.ptr<float>() + off, i.ptr<int64_t>() + off);
    off += s->b * s->k;
  }
}

// ---- CUDA -----------------------------------------------------------------------------------------

void check_cuda_arg(const TensorArg& a) {
  require_cuda_build(a);
  if (!a.cuda) a.fail("a CUDA tensor (this entry point is the CUDA kernel)");
}

void knn_cuda(const py::capsule& x, const py::capsule& cls, const py::capsule& norms, int k, bool skip_zero,
              const py::capsule& dist, const py::capsule& idx, std::uintptr_t stream) {
  TensorArg xa = tensor_arg(x, "x");
  check_cuda_arg(xa);
  xa.check_dtype({DType::kFloat32});
  xa.check_dim(3);
  const int64_t B = xa.size(0), b = xa.size(1), m = xa.size(2);
  if (xa.numel() == 0) xa.fail("a non-empty tensor");
  if (k < 1 || b <= k)
    throw std::invalid_argument("lidsplit: argument 'x': need more rows than neighbours, got b = " + std::to_string(b) +
                                " rows and k = " + std::to_string(k));
  TensorArg ca = tensor_arg(cls, "cls");
  ca.check_dtype({DType::kInt32});
  ca.check_dim(2);
  ca.check_size(0, B);
  ca.check_size(1, b);
  ca.check_same_device(xa);
  TensorArg na = tensor_arg(norms, "norms");
  na.check_dtype({DType::kFloat32});
  na.check_dim(2);
  na.check_size(0, B);
  na.check_size(1, b);
  na.check_same_device(xa);
  na.check_writable();
  TensorArg da = tensor_arg(dist, "dist");
  TensorArg ia = tensor_arg(idx, "index");
  da.check_dtype({DType::kFloat32});
  ia.check_dtype({DType::kInt64});
  for (TensorArg* o : {&da, &ia}) {
    o->check_dim(3);
    o->check_size(0, B);
    o->check_size(1, b);
    o->check_size(2, k);
    o->check_same_device(xa);
    o->check_writable();
  }
#ifdef LIDSPLIT_WITH_CUDA
  py::gil_scoped_release nogil;
  cuda::knn(xa.device_id, xa.ptr<const float>(), ca.ptr<const int32_t>(), na.ptr<float>(), B, b, m, k, skip_zero,
            da.ptr<float>(), ia.ptr<int64_t>(), stream);
#endif
}

void lid_rows_cuda(const py::capsule& dist, int estimator, const py::capsule& rows, const py::capsule& valid,
                   std::uintptr_t stream) {
  check_estimator(estimator);
  TensorArg da = tensor_arg(dist, "dist");
  check_cuda_arg(da);
  da.check_dtype({DType::kFloat32});
  da.check_dim(3);
  const int64_t n = da.size(0) * da.size(1), k = da.size(2);
  if (k < 1) da.fail("k >= 1 neighbours");
  TensorArg ra = tensor_arg(rows, "rows");
  TensorArg va = tensor_arg(valid, "valid");
  ra.check_dtype({DType::kFloat32});
  va.check_dtype({DType::kBool});
  for (TensorArg* o : {&ra, &va}) {
    o->check_same_device(da);
    o->check_writable();
    if (o->numel() != n) o->fail(std::to_string(n) + " elements");
  }
#ifdef LIDSPLIT_WITH_CUDA
  py::gil_scoped_release nogil;
  cuda::lid_rows(da.device_id, da.ptr<const float>(), n, static_cast<int>(k), estimator, ra.ptr<float>(), va.ptr<bool>(),
                 stream);
#endif
}

}  // namespace

void register_lid(py::module_& m) {
  py::class_<KnnSet>(m, "KnnSet", "Running k-nearest-neighbour state of one or more matrices (CPU); see csrc/lid.cpp")
      .def("__len__", [](const KnnSet& s) { return s.states.size(); })
      .def("update", &knn_set_update, py::arg("buf"), py::arg("panels"), py::arg("threads"),
           "Epilogue of Gram panels: buf (1-D float32) holds, for each (state, offset, i0, i1), "
           "X[i0:i1] @ X[i0:].T row-major at offset. Panels of a state must come in row order.")
      .def("finish_lid", &knn_set_finish_lid, py::arg("estimator"), py::arg("rows"), py::arg("valid"),
           py::arg("means"), py::arg("counts"), py::arg("threads"),
           "Per-row LID (rows float32, valid bool; each may be None), mean over valid rows and their count "
           "per matrix (means float32, counts int64)")
      .def("finish_knn", &knn_set_finish_knn, py::arg("dist"), py::arg("index"),
           "The neighbour lists of all matrices: dist float32 and index int64, sum(b * k) elements each");
  m.def("knn_prepare", &knn_prepare, py::arg("xs"), py::arg("k"), py::arg("skip_zero"), py::arg("names"),
        py::arg("threads"),
        "Start a knn state for each float32 CPU matrix (b, m): squared norms, NaN/Inf check, duplicate classes");
  m.def("knn_cuda", &knn_cuda, py::arg("x"), py::arg("cls"), py::arg("norms"), py::arg("k"), py::arg("skip_zero"),
        py::arg("dist"), py::arg("index"), py::arg("stream"),
        "k nearest other rows of each of the B matrices x (B, b, m) float32 on the GPU (cls (B, b) int32: equal "
        "rows share a class; norms (B, b) float32 scratch); writes dist (B, b, k) float32 and index (B, b, k) int64");
  m.def("lid_rows_cuda", &lid_rows_cuda, py::arg("dist"), py::arg("estimator"), py::arg("rows"), py::arg("valid"),
        py::arg("stream"), "Per-row LID from sorted squared neighbour distances (B, b, k) on the GPU");
  m.attr("LID_ESTIMATORS") = py::dict(py::arg("mle") = static_cast<int>(kLidMle),
                                      py::arg("levina_bickel") = static_cast<int>(kLidLevinaBickel),
                                      py::arg("official") = static_cast<int>(kLidOfficial));
}

}  // namespace lidsplit

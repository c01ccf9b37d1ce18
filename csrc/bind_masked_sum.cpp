// Bindings of the masked_sum op family: checks, dispatch to csrc/cpu or csrc/cuda.
//
//   masked_sum(xs, weights, out, stream)             out = sum_j weights[..., j] * xs[j]
//   masked_sum_spread(grad, weights, outs, stream)   outs[j] = weights[..., j] * grad (input gradients)
//   masked_sum_wgrad(xs, grad, weights, out, ws, stream)   out[..., j] = <xs[j], grad> (float64)
//
// weights is (n,) or (G, n); with G groups the leading dimension of the tensors is split into G equal
// slices, slice g weighted by row g. All tensors are contiguous DLPack capsules on one device.
#include <string>
#include <vector>

#include "bridge.h"
#include "cpu/masked_sum.h"
#ifdef LIDSPLIT_WITH_CUDA
#include "cuda/launch.h"
#endif

namespace lidsplit {

namespace {

// A Python list of capsules as checked tensor views named name[j].
std::vector<TensorArg> tensor_list(const py::list& caps, const std::string& name) {
  std::vector<TensorArg> out;
  out.reserve(caps.size());
  for (size_t j = 0; j < caps.size(); ++j) {
    const std::string item = name + "[" + std::to_string(j) + "]";
    if (!py::isinstance<py::capsule>(caps[j]))
      throw std::invalid_argument("lidsplit: argument '" + item + "': expected a DLPack capsule");
    out.push_back(tensor_arg(caps[j].cast<py::capsule>(), item.c_str()));
  }
  return out;
}

void check_like(const TensorArg& a, const TensorArg& ref) {
  a.check_same_device(ref);
  a.check_same_dtype(ref);
  if (a.shape != ref.shape) a.fail("the same shape as '" + ref.name + "' (" + ref.describe() + ")");
}

// The checked weights of n inputs shaped like `like`; returns the number of groups.
int64_t check_weights(const TensorArg& w, int64_t n, const TensorArg& like) {
  w.check_same_device(like);
  if (w.dtype != DType::kFloat32 && w.dtype != like.dtype)
    w.fail(std::string("dtype float32 or ") + dtype_name(like.dtype) + " (the dtype of '" + like.name + "')");
  if (w.dim() != 1 && w.dim() != 2) w.fail("1 dimension (n,) or 2 dimensions (G, n)");
  if (w.size(-1) != n) w.fail("size " + std::to_string(n) + " (the number of inputs) in its last dimension");
  if (w.dim() == 1) return 1;
  const int64_t groups = w.size(0);
  if (groups < 1) w.fail("at least one group (row)");
  if (like.dim() == 0)
    w.fail("1-dimensional weights: (G, n) weights split the leading dimension of '" + like.name +
           "', which is 0-dimensional");
  if (like.size(0) % groups != 0)
    w.fail(std::to_string(groups) + " groups to divide the leading dimension of '" + like.name + "' (" +
           like.describe() + ") into equal slices");
  return groups;
}

// Weights of a CPU call, read on the host into float64 (exact for every accepted dtype).
std::vector<double> host_weights(const TensorArg& w) {
  std::vector<double> out(static_cast<size_t>(w.numel()));
  for (int64_t i = 0; i < w.numel(); ++i) out[i] = load_weight<double>(w.data, float_kind(w.dtype), i);
  return out;
}

void masked_sum_binding(const py::list& xs_caps, const py::capsule& w_cap, const py::capsule& out_cap,
                        std::uintptr_t stream) {
  if (xs_caps.size() == 0) throw std::invalid_argument("lidsplit: argument 'xs': expected at least one tensor, got none");
  const std::vector<TensorArg> xs = tensor_list(xs_caps, "xs");
  const TensorArg& x0 = xs[0];
  check_float(x0);
  for (size_t j = 1; j < xs.size(); ++j) check_like(xs[j], x0);
  const int64_t n = static_cast<int64_t>(xs.size());
  const TensorArg w = tensor_arg(w_cap, "weights");
  const int64_t groups = check_weights(w, n, x0);
  const TensorArg out = tensor_arg(out_cap, "out");
  check_like(out, x0);
  out.check_writable();
  const int64_t gn = x0.numel() / groups;
  std::vector<const void*> ptrs(n);
  for (int64_t j = 0; j < n; ++j) ptrs[j] = xs[j].data;
  if (x0.cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    py::gil_scoped_release nogil;
    cuda::masked_sum(x0.device_id, static_cast<int>(float_kind(x0.dtype)), ptrs.data(), n, w.data,
                     static_cast<int>(float_kind(w.dtype)), groups, gn, out.data, stream);
#else
    x0.fail("a CPU tensor (this build has no CUDA kernels)");
#endif
    return;
  }
  const std::vector<double> wh = host_weights(w);
  py::gil_scoped_release nogil;
  cpu::masked_sum(float_kind(x0.dtype), ptrs.data(), n, wh.data(), groups, gn, out.data);
}

void spread_binding(const py::capsule& grad_cap, const py::capsule& w_cap, const py::list& out_caps,
                    std::uintptr_t stream) {
  const TensorArg grad = tensor_arg(grad_cap, "grad");
  check_float(grad);
  const std::vector<TensorArg> outs = tensor_list(out_caps, "outs");
  const int64_t n = static_cast<int64_t>(outs.size());
  for (const auto& o : outs) {
    check_like(o, grad);
    o.check_writable();
  }
  const TensorArg w = tensor_arg(w_cap, "weights");
  const int64_t groups = check_weights(w, n, grad);
  const int64_t gn = grad.numel() / groups;
  std::vector<void*> ptrs(n);
  for (int64_t j = 0; j < n; ++j) ptrs[j] = outs[j].data;
  if (grad.cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    py::gil_scoped_release nogil;
    cuda::masked_sum_spread(grad.device_id, static_cast<int>(float_kind(grad.dtype)), grad.data, n, w.data,
                            static_cast<int>(float_kind(w.dtype)), groups, gn, ptrs.data(), stream);
#else
    grad.fail("a CPU tensor (this build has no CUDA kernels)");
#endif
    return;
  }
  const std::vector<double> wh = host_weights(w);
  py::gil_scoped_release nogil;
  cpu::masked_sum_spread(float_kind(grad.dtype), grad.data, n, wh.data(), groups, gn, ptrs.data());
}

void wgrad_binding(const py::list& xs_caps, const py::capsule& grad_cap, const py::capsule& w_cap,
                   const py::capsule& out_cap, const py::object& ws_obj, std::uintptr_t stream) {
  if (xs_caps.size() == 0) throw std::invalid_argument("lidsplit: argument 'xs': expected at least one tensor, got none");
  const std::vector<TensorArg> xs = tensor_list(xs_caps, "xs");
  const TensorArg grad = tensor_arg(grad_cap, "grad");
  check_float(grad);
  for (const auto& x : xs) check_like(x, grad);
  const int64_t n = static_cast<int64_t>(xs.size());
  const TensorArg w = tensor_arg(w_cap, "weights");
  const int64_t groups = check_weights(w, n, grad);
  const TensorArg out = tensor_arg(out_cap, "out");
  out.check_dtype({DType::kFloat64});
  out.check_same_device(grad);
  out.check_writable();
  if (out.numel() != groups * n) out.fail(std::to_string(groups * n) + " elements (the weights' shape)");
  const int64_t gn = grad.numel() / groups;
  std::vector<const void*> ptrs(n);
  for (int64_t j = 0; j < n; ++j) ptrs[j] = xs[j].data;
  if (grad.cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    if (ws_obj.is_none()) throw std::invalid_argument("lidsplit: argument 'ws': a CUDA workspace is required");
    const TensorArg ws = tensor_arg(ws_obj.cast<py::capsule>(), "ws");
    ws.check_dtype({DType::kFloat64});
    ws.check_same_device(grad);
    ws.check_writable();
    if (ws.numel() < cuda::masked_sum_wgrad_workspace(groups, n))
      ws.fail("at least " + std::to_string(cuda::masked_sum_wgrad_workspace(groups, n)) + " elements");
    py::gil_scoped_release nogil;
    cuda::masked_sum_wgrad(grad.device_id, static_cast<int>(float_kind(grad.dtype)), ptrs.data(), n, grad.data, groups,
                           gn, ws.ptr<double>(), out.ptr<double>(), stream);
#else
    grad.fail("a CPU tensor (this build has no CUDA kernels)");
#endif
    return;
  }
  py::gil_scoped_release nogil;
  cpu::masked_sum_wgrad(float_kind(grad.dtype), ptrs.data(), n, grad.data, groups, gn, out.ptr<double>());
}

}  // namespace

void register_masked_sum(py::module_& m) {
  m.def("masked_sum", &masked_sum_binding, py::arg("xs"), py::arg("weights"), py::arg("out"), py::arg("stream"),
        "out = sum_j weights[..., j] * xs[j] (weights (n,) or (G, n)); zero weights skip their input");
  m.def("masked_sum_spread", &spread_binding, py::arg("grad"), py::arg("weights"), py::arg("outs"),
        py::arg("stream"), "outs[j] = weights[..., j] * grad per group (zero weight: zeros, grad not read)");
  m.def("masked_sum_wgrad", &wgrad_binding, py::arg("xs"), py::arg("grad"), py::arg("weights"), py::arg("out"),
        py::arg("ws"), py::arg("stream"), "out[..., j] = <xs[j], grad> per group, float64");
  m.def(
      "masked_sum_wgrad_workspace",
      [](int64_t groups, int64_t n) -> int64_t {
#ifdef LIDSPLIT_WITH_CUDA
        return cuda::masked_sum_wgrad_workspace(groups, n);
#else
        return 0;
#endif
      },
      py::arg("groups"), py::arg("n"), "float64 elements of CUDA scratch that masked_sum_wgrad needs");
}

}  // namespace lidsplit

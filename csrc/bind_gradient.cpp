// Bindings of the gradient op family: checks, dispatch to csrc/cpu or csrc/cuda.
//
//   gradient_gram(grads, n, out, ws, cosine, stream)
//
// grads is the flat, vector-major list of n gradient vectors of P parameters each: grads[i * P + p] is
// parameter p of vector i, a DLPack capsule or None (missing: zeros). For each p the present tensors
// share shape and dtype; all tensors share one device. out is a contiguous (n, n) float64 tensor on that
// device (the CPU when every entry is None); ws is the CUDA workspace (None on the CPU).
#include <string>
#include <vector>

#include "bridge.h"
#include "cpu/gradient.h"
#ifdef LIDSPLIT_WITH_CUDA
#include "cuda/launch.h"
#endif

namespace lidsplit {

namespace {

void gram_binding(const py::list& grads, int64_t n, const py::capsule& out_cap,
                  const py::object& ws_obj, bool cosine, std::uintptr_t stream) {
  if (n < 1) throw std::invalid_argument("lidsplit: argument 'n': expected at least one gradient vector, got " +
                                         std::to_string(n));
  const int64_t total = static_cast<int64_t>(grads.size());
  if (total % n != 0)
    throw std::invalid_argument("lidsplit: argument 'grads': " + std::to_string(total) +
                                " entries do not split into n = " + std::to_string(n) + " vectors of equal length");
  const int64_t P = total / n;
  std::vector<TensorArg> args(static_cast<size_t>(total));
  std::vector<bool> present(static_cast<size_t>(total), false);
  const TensorArg* first = nullptr;  // the first present tensor: defines the device
  for (int64_t p = 0; p < P; ++p) {
    const TensorArg* ref = nullptr;  // the first present tensor of parameter p
    for (int64_t i = 0; i < n; ++i) {
      const py::object o = grads[i * P + p];
      if (o.is_none()) continue;
      const std::string name = "grads[" + std::to_string(i) + "][" + std::to_string(p) + "]";
      if (!py::isinstance<py::capsule>(o))
        throw std::invalid_argument("lidsplit: argument '" + name + "': expected a DLPack capsule or None");
      TensorArg& a = args[i * P + p];
      a = tensor_arg(o.cast<py::capsule>(), name.c_str());
      present[i * P + p] = true;
      a.check_dtype({DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64});
      require_cuda_build(a);
      if (first == nullptr) first = &a;
      a.check_same_device(*first);
      if (ref == nullptr) {
        ref = &a;
        continue;
      }
      a.check_same_dtype(*ref);
      if (a.shape != ref->shape) a.fail("the same shape as '" + ref->name + "' (" + ref->describe() + ")");
    }
  }
  const TensorArg out = tensor_arg(out_cap, "out");
  out.check_dtype({DType::kFloat64});
  out.check_dim(2);
  out.check_size(0, n);
  out.check_size(1, n);
  out.check_writable();
  const bool cuda = first != nullptr && first->cuda;
  if (first != nullptr) out.check_same_device(*first);
  else if (out.cuda) out.fail("a CPU tensor (no gradient is present)");

  std::vector<const void*> ptrs(static_cast<size_t>(total), nullptr);  // parameter-major: ptrs[p * n + i]
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < n; ++i)
      if (present[i * P + p]) ptrs[p * n + i] = args[i * P + p].data;
  auto param_info = [&](int64_t p, FloatKind& kind, int64_t& numel) {
    kind = FloatKind::kFloat32;
    numel = 0;
    for (int64_t i = 0; i < n; ++i)
      if (present[i * P + p]) {
        kind = float_kind(args[i * P + p].dtype);
        numel = args[i * P + p].numel();
        return;
      }
  };

  if (cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    if (ws_obj.is_none()) throw std::invalid_argument("lidsplit: argument 'ws': a CUDA workspace is required");
    const TensorArg ws = tensor_arg(ws_obj.cast<py::capsule>(), "ws");
    ws.check_dtype({DType::kFloat64});
    ws.check_same_device(out);
    ws.check_writable();
    if (ws.numel() < cuda::gradient_gram_workspace(n, P))
      ws.fail("at least " + std::to_string(cuda::gradient_gram_workspace(n, P)) + " elements");
    std::vector<cuda::GramParamDev> params(static_cast<size_t>(P));
    for (int64_t p = 0; p < P; ++p) {
      FloatKind kind;
      param_info(p, kind, params[p].numel);
      params[p].kind = static_cast<int>(kind);
      params[p].ptrs = ptrs.data() + p * n;
    }
    py::gil_scoped_release nogil;
    cuda::gradient_gram(out.device_id, params.data(), P, n, cosine, ws.ptr<double>(), out.ptr<double>(), stream);
#else
    first->fail("a CPU tensor (this build has no CUDA kernels)");
#endif
    return;
  }
  std::vector<cpu::GramParam> params(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) {
    param_info(p, params[p].kind, params[p].numel);
    params[p].ptrs = ptrs.data() + p * n;
  }
  py::gil_scoped_release nogil;
  cpu::gradient_gram(params.data(), P, n, out.ptr<double>());
  if (cosine) cpu::gram_to_cosine(out.ptr<double>(), n);
}

}  // namespace

void register_gradient(py::module_& m) {
  m.def("gradient_gram", &gram_binding, py::arg("grads"), py::arg("n"), py::arg("out"), py::arg("ws"),
        py::arg("cosine"), py::arg("stream"),
        "out = the n x n float64 gram (or cosine) matrix of n gradient vectors given as a flat vector-major "
        "list of per-parameter capsules (None = zeros)");
  m.def(
      "gradient_gram_workspace",
      [](int64_t n, int64_t num_params) -> int64_t {
#ifdef LIDSPLIT_WITH_CUDA
        return cuda::gradient_gram_workspace(n, num_params);
#else
        return 0;
#endif
      },
      py::arg("n"), py::arg("num_params"),
      "float64 elements of CUDA scratch that gradient_gram needs for n vectors of num_params parameters");
}

}  // namespace lidsplit

// Bindings of the gradient op family: checks, dispatch to csrc/cpu or csrc/cuda.
//
//   gradient_gram(grads, n, out, ws, cosine, stream)
//
// grads is the flat, vector-major list of n gradient vectors of P parameters each: grads[i * P + p] is
// parameter p of vector i, a DLPack capsule or None (missing: zeros). For each p the present tensors
// share shape and dtype; all tensors share one device. out is a contiguous (n, n) float64 tensor on that
// device (the CPU when every entry is None); ws is the CUDA workspace (None on the CPU).
#include <cstring>
#include <string>
#include <vector>

#include "bridge.h"
#include "cpu/gradient.h"
#ifdef LIDSPLIT_WITH_CUDA
#include "cuda/launch.h"
#endif

namespace lidsplit {

namespace {

// The checked inputs, parameter-major: ptrs[p * n + i] (nullptr: missing or empty), and per parameter
// its dtype and size.
struct GramInputs {
  std::vector<const void*> ptrs;
  std::vector<FloatKind> kind;
  std::vector<int64_t> numel;
  bool any = false;  // some tensor is present: it defines the device
  bool cuda = false;
  int device_id = 0;
};

// The fast scan: no strings, no allocation per tensor (a network has thousands of parameters, and this
// runs for each of them n times). Returns false at the first thing it does not accept; the checked
// scan then says what is wrong.
bool scan_fast(const py::list& grads, int64_t n, int64_t P, GramInputs& in) {
  std::vector<const DLTensor*> ref(static_cast<size_t>(P), nullptr);
  PyObject* list = grads.ptr();
  int32_t dev_type = 0, dev_id = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < P; ++p) {
      PyObject* o = PyList_GET_ITEM(list, i * P + p);
      if (o == Py_None) continue;
      bool read_only = false;
      const DLTensor* t = peek_dltensor(o, &read_only);
      if (t == nullptr) return false;
      const DType d = dtype_of(t->dtype);
      if (d != DType::kFloat32 && d != DType::kFloat16 && d != DType::kBFloat16 && d != DType::kFloat64) return false;
      if (t->device.device_type != kDLCPU && (t->device.device_type != kDLCUDA || !kWithCuda)) return false;
      if (!in.any) {
        dev_type = t->device.device_type;
        dev_id = t->device.device_id;
        in.any = true;
      } else if (t->device.device_type != dev_type || t->device.device_id != dev_id) {
        return false;
      }
      if (!dl_contiguous(t)) return false;
      const DLTensor* r = ref[p];
      if (r == nullptr) {
        ref[p] = t;
        in.kind[p] = float_kind(d);
        in.numel[p] = dl_numel(t);
      } else if (r->ndim != t->ndim || std::memcmp(&r->dtype, &t->dtype, sizeof t->dtype) != 0 ||
                 std::memcmp(r->shape, t->shape, sizeof(int64_t) * t->ndim) != 0) {
        return false;
      }
      if (in.numel[p] > 0) in.ptrs[p * n + i] = static_cast<const char*>(t->data) + t->byte_offset;
    }
  }
  in.cuda = dev_type == kDLCUDA;
  in.device_id = dev_id;
  return true;
}

// The checked scan, run only when the fast one refused: throws, naming the first bad entry.
[[noreturn]] void explain(const py::list& grads, int64_t n, int64_t P) {
  std::vector<TensorArg> args(static_cast<size_t>(n * P));
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
      check_float(a);
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
  throw std::logic_error("lidsplit: gradient_gram: the fast argument scan refused inputs the checked scan accepts");
}

void gram_binding(const py::list& grads, int64_t n, const py::capsule& out_cap, const py::object& ws_obj, bool cosine,
                  std::uintptr_t stream) {
  if (n < 1) throw std::invalid_argument("lidsplit: argument 'n': expected at least one gradient vector, got " +
                                         std::to_string(n));
  const int64_t total = static_cast<int64_t>(grads.size());
  if (total % n != 0)
    throw std::invalid_argument("lidsplit: argument 'grads': " + std::to_string(total) +
                                " entries do not split into n = " + std::to_string(n) + " vectors of equal length");
  const int64_t P = total / n;
  GramInputs in;
  in.ptrs.assign(static_cast<size_t>(total), nullptr);
  in.kind.assign(static_cast<size_t>(P), FloatKind::kFloat32);
  in.numel.assign(static_cast<size_t>(P), 0);
  if (!scan_fast(grads, n, P, in)) explain(grads, n, P);

  const TensorArg out = tensor_arg(out_cap, "out");
  out.check_dtype({DType::kFloat64});
  out.check_dim(2);
  out.check_size(0, n);
  out.check_size(1, n);
  out.check_writable();
  if (in.any && (out.cuda != in.cuda || out.device_id != in.device_id))
    out.fail(std::string("the device of the gradients (") +
             (in.cuda ? "cuda:" + std::to_string(in.device_id) : std::string("cpu")) + ")");
  if (!in.any && out.cuda) out.fail("a CPU tensor (no gradient is present)");

  if (in.cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    if (ws_obj.is_none()) throw std::invalid_argument("lidsplit: argument 'ws': a CUDA workspace is required");
    const TensorArg ws = tensor_arg(ws_obj.cast<py::capsule>(), "ws");
    ws.check_dtype({DType::kFloat64});
    ws.check_same_device(out);
    ws.check_writable();
    if (ws.numel() < cuda::gradient_gram_workspace(n, P))
      ws.fail("at least " + std::to_string(cuda::gradient_gram_workspace(n, P)) + " elements");
    std::vector<cuda::GramParamDev> params(static_cast<size_t>(P));
    for (int64_t p = 0; p < P; ++p)
      params[p] = cuda::GramParamDev{static_cast<int>(in.kind[p]), in.numel[p], in.ptrs.data() + p * n};
    py::gil_scoped_release nogil;
    cuda::gradient_gram(out.device_id, params.data(), P, n, cosine, ws.ptr<double>(), out.ptr<double>(), stream);
#endif
    return;
  }
  std::vector<cpu::GramParam> params(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) params[p] = cpu::GramParam{in.kind[p], in.numel[p], in.ptrs.data() + p * n};
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

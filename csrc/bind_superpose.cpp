// Bindings of the superpose op family: checks, dispatch to csrc/cpu or csrc/cuda.
//
//   superpose(src, coeffs, boxes, out, stream)                  out = src * c, c(idx) = sum of coeffs over
//                                                               the boxes containing idx
//   superpose_coeff_grad(grad, src, boxes, out, ws, stream)     out[i] = sum over box i of grad * src (float64)
//
// boxes: int64 (n, ndim, 2) start/stop per dimension of src, on src's device. On the CPU every range must
// satisfy 0 <= start <= stop <= size (checked here); on CUDA they are not checked (that would need a
// device synchronisation) and are clamped to the tensor by the kernels.
#include <string>
#include <vector>

#include "bridge.h"
#include "cpu/superpose.h"
#include "lidsplit/superpose.h"
#ifdef LIDSPLIT_WITH_CUDA
#include "cuda/launch.h"
#endif

namespace lidsplit {
namespace {

void check_src(const TensorArg& src) {
  check_float(src);
  if (src.dim() < 1 || src.dim() > kSuperposeMaxDims)
    src.fail("1 to " + std::to_string(kSuperposeMaxDims) + " dimensions");
}

void check_like(const TensorArg& a, const TensorArg& ref) {
  a.check_same_device(ref);
  a.check_same_dtype(ref);
  if (a.shape != ref.shape) a.fail("the same shape as '" + ref.name + "' (" + ref.describe() + ")");
}

// Checks boxes against src; returns n. CPU boxes are range-checked.
int64_t check_boxes(const TensorArg& boxes, const TensorArg& src) {
  boxes.check_dtype({DType::kInt64});
  boxes.check_same_device(src);
  boxes.check_dim(3);
  boxes.check_size(1, src.dim());
  boxes.check_size(2, 2);
  const int64_t n = boxes.size(0);
  if (!boxes.cuda) {
    const int64_t* b = boxes.ptr<const int64_t>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t d = 0; d < src.dim(); ++d) {
        const int64_t a = b[(i * src.dim() + d) * 2], e = b[(i * src.dim() + d) * 2 + 1];
        if (a < 0 || a > e || e > src.size(d))
          boxes.fail("0 <= start <= stop <= size in every range; box " + std::to_string(i) + " has [" +
                     std::to_string(a) + ", " + std::to_string(e) + ") in dimension " + std::to_string(d) +
                     " of size " + std::to_string(src.size(d)));
      }
  }
  return n;
}

std::vector<double> host_coeffs(const TensorArg& c) {
  std::vector<double> out(static_cast<size_t>(c.numel()));
  for (int64_t i = 0; i < c.numel(); ++i) {
    switch (c.dtype) {
      case DType::kFloat32: out[i] = c.ptr<const float>()[i]; break;
      case DType::kFloat16: out[i] = Scalar<half_t>::to_double(c.ptr<const half_t>()[i]); break;
      case DType::kBFloat16: out[i] = Scalar<bfloat16_t>::to_double(c.ptr<const bfloat16_t>()[i]); break;
      default: out[i] = c.ptr<const double>()[i]; break;
    }
  }
  return out;
}

void superpose_binding(const py::capsule& src_cap, const py::capsule& coeffs_cap, const py::capsule& boxes_cap,
                       const py::capsule& out_cap, std::uintptr_t stream) {
  const TensorArg src = tensor_arg(src_cap, "weight");
  check_src(src);
  const TensorArg coeffs = tensor_arg(coeffs_cap, "coeffs");
  coeffs.check_dtype({DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64});
  coeffs.check_same_device(src);
  coeffs.check_dim(1);
  const TensorArg boxes = tensor_arg(boxes_cap, "boxes");
  const int64_t n = check_boxes(boxes, src);
  if (coeffs.size(0) != n) coeffs.fail("size " + std::to_string(n) + " (the number of boxes)");
  const TensorArg out = tensor_arg(out_cap, "out");
  check_like(out, src);
  out.check_writable();
  const int ndim = static_cast<int>(src.dim());
  if (src.cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    py::gil_scoped_release nogil;
    cuda::superpose(src.device_id, static_cast<int>(float_kind(src.dtype)), src.data, src.shape.data(), ndim, coeffs.data,
                    static_cast<int>(float_kind(coeffs.dtype)), n, boxes.ptr<const int64_t>(), out.data, stream);
#else
    src.fail("a CPU tensor (this build has no CUDA kernels)");
#endif
    return;
  }
  const std::vector<double> ch = host_coeffs(coeffs);
  py::gil_scoped_release nogil;
  cpu::superpose(float_kind(src.dtype), src.data, src.shape.data(), ndim, ch.data(), n, boxes.ptr<const int64_t>(),
                 out.data);
}

void coeff_grad_binding(const py::capsule& grad_cap, const py::capsule& src_cap, const py::capsule& boxes_cap,
                        const py::capsule& out_cap, const py::object& ws_obj, std::uintptr_t stream) {
  const TensorArg src = tensor_arg(src_cap, "weight");
  check_src(src);
  const TensorArg grad = tensor_arg(grad_cap, "grad");
  check_like(grad, src);
  const TensorArg boxes = tensor_arg(boxes_cap, "boxes");
  const int64_t n = check_boxes(boxes, src);
  const TensorArg out = tensor_arg(out_cap, "out");
  out.check_dtype({DType::kFloat64});
  out.check_same_device(src);
  out.check_writable();
  if (out.numel() != n) out.fail(std::to_string(n) + " elements (one per box)");
  const int ndim = static_cast<int>(src.dim());
  if (src.cuda) {
#ifdef LIDSPLIT_WITH_CUDA
    if (ws_obj.is_none()) throw std::invalid_argument("lidsplit: argument 'ws': a CUDA workspace is required");
    const TensorArg ws = tensor_arg(ws_obj.cast<py::capsule>(), "ws");
    ws.check_dtype({DType::kFloat64});
    ws.check_same_device(src);
    ws.check_writable();
    if (ws.numel() < cuda::superpose_coeff_grad_workspace(n))
      ws.fail("at least " + std::to_string(cuda::superpose_coeff_grad_workspace(n)) + " elements");
    py::gil_scoped_release nogil;
    cuda::superpose_coeff_grad(src.device_id, static_cast<int>(float_kind(src.dtype)), grad.data, src.data,
                               src.shape.data(), ndim, boxes.ptr<const int64_t>(), n, ws.ptr<double>(),
                               out.ptr<double>(), stream);
#else
    src.fail("a CPU tensor (this build has no CUDA kernels)");
#endif
    return;
  }
  py::gil_scoped_release nogil;
  cpu::superpose_coeff_grad(float_kind(src.dtype), grad.data, src.data, src.shape.data(), ndim,
                            boxes.ptr<const int64_t>(), n, out.ptr<double>());
}

}  // namespace

void register_superpose(py::module_& m) {
  m.def("superpose", &superpose_binding, py::arg("weight"), py::arg("coeffs"), py::arg("boxes"), py::arg("out"),
        py::arg("stream"), "out = weight * c, c(idx) = sum of coeffs[i] over the boxes i containing idx");
  m.def("superpose_coeff_grad", &coeff_grad_binding, py::arg("grad"), py::arg("weight"), py::arg("boxes"),
        py::arg("out"), py::arg("ws"), py::arg("stream"),
        "out[i] = sum over box i of grad * weight (float64): the gradient of superpose w.r.t. coeffs");
  m.def(
      "superpose_coeff_grad_workspace",
      [](int64_t n) -> int64_t {
#ifdef LIDSPLIT_WITH_CUDA
        return cuda::superpose_coeff_grad_workspace(n);
#else
        return 0;
#endif
      },
      py::arg("n"), "float64 elements of CUDA scratch that superpose_coeff_grad needs for n boxes");
}

}  // namespace lidsplit

// The one extension module, lidsplit._C. Each op family registers its bindings from its own file.
#include <pybind11/pybind11.h>

#include <string>

#include "bridge.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef LIDSPLIT_WITH_CUDA
#include "cuda/launch.h"
#endif

namespace py = pybind11;

namespace lidsplit {
void register_lid(py::module_& m);
void register_masked_sum(py::module_& m);
void register_gradient(py::module_& m);
void register_superpose(py::module_& m);
}  // namespace lidsplit

PYBIND11_MODULE(_C, m) {
  m.doc() = "lidsplit compute kernels (CPU with OpenMP, CUDA when compiled in); tensors cross as DLPack capsules";
  m.def("cuda_compiled", []() { return lidsplit::kWithCuda; });
  m.def("cuda_status", []() {
    py::dict d;
#ifdef LIDSPLIT_WITH_CUDA
    std::string why;
    int n = lidsplit::cuda::device_count(why);
    d["runtime_version"] = lidsplit::cuda::runtime_version();
    d["device_count"] = n;
    d["reason"] = why;
#else
    d["runtime_version"] = 0;
    d["device_count"] = 0;
    d["reason"] = std::string("lidsplit was built without CUDA (LIDSPLIT_CUDA=OFF, or no CUDA compiler at build time)");
#endif
    return d;
  });
  m.def("max_threads", []() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
  });
  lidsplit::register_lid(m);
  lidsplit::register_masked_sum(m);
  lidsplit::register_gradient(m);
  lidsplit::register_superpose(m);
}

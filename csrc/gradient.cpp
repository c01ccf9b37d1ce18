// Bindings of the gradient op family: checks, dispatch to csrc/cpu or csrc/cuda.
#include "bridge.h"

namespace lidsplit {
void register_gradient(py::module_& m) {}
}  // namespace lidsplit

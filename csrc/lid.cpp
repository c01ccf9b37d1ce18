// Bindings of the lid op family: checks, dispatch to csrc/cpu or csrc/cuda.
#include "bridge.h"

namespace lidsplit {
void register_lid(py::module_& m) {}
}  // namespace lidsplit

// Bindings of the masked_sum op family: checks, dispatch to csrc/cpu or csrc/cuda.
#include "bridge.h"

namespace lidsplit {
void register_masked_sum(py::module_& m) {}
}  // namespace lidsplit

// Plain C++ entry points of the CUDA kernels, called by the binding files. No pybind11, no Python,
// no CUDA headers here, so this file is included from both .cpp and .cu translation units.
// Every launch takes the raw cudaStream_t of torch's current stream as an integer.
#pragma once
#include <cstdint>
#include <string>

namespace lidsplit::cuda {

// Number of usable devices; 0 with `why` set when the runtime or driver cannot be used.
int device_count(std::string& why);
int runtime_version();

}  // namespace lidsplit::cuda

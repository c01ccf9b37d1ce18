// Macros shared by the CPU (.cpp) and CUDA (.cu) kernels. No pybind11, no Python, no CUDA headers.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define LIDSPLIT_HD __host__ __device__ __forceinline__
#else
#define LIDSPLIT_HD inline
#endif

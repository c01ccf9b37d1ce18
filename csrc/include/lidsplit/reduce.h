// Per-element logic shared by the CPU (.cpp) and CUDA (.cu) kernels: storage types and their
// conversions to the accumulation type, weights, and short dot products (the gradient gram's pair
// products and cosine are in lidsplit/gram.h, the dtype dispatch in lidsplit/dispatch.h). No pybind11, no Python; CUDA headers only when
// compiled by nvcc (device-side fp16 conversions use the hardware instructions there).
#pragma once
#include <cstdint>
#include <cstring>

#include "lidsplit/common.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#endif

#include <cmath>

namespace lidsplit {

// CPU kernels get an AVX2 clone beside the baseline x86-64 one, chosen once at load time (GCC
// target_clones / ifunc), so the wheel runs anywhere and uses 256-bit vectors where it can.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__CUDACC__)
#define LIDSPLIT_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LIDSPLIT_CPU_CLONES
#endif

// Per-thread partial arrays of m doubles are laid out `padded(m)` apart: whole 64-byte cache lines, so
// threads never write to a shared line.
inline int64_t padded(int64_t m) { return (m + 7) / 8 * 8 + 8; }

// The floating dtypes these ops accept, as plain integers so that launch.h stays free of pybind11.
enum class FloatKind : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

// 16-bit storage types: raw bits, converted explicitly.
struct half_t {
  uint16_t bits;
};
struct bfloat16_t {
  uint16_t bits;
};

LIDSPLIT_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

LIDSPLIT_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// IEEE binary16 -> binary32, exact (subnormals, inf and NaN included).
LIDSPLIT_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in float32
    const float mag = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -mag : mag;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
#endif
}

// binary32 -> binary16, round to nearest even; overflow to inf, NaN stays NaN (quiet).
LIDSPLIT_HD uint16_t float_to_half_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  uint32_t u = float_to_bits(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint32_t o;
  if (u >= 0x47800000u) {  // >= 2^16: inf (65520 <= |f| < 65536 overflows in the normal path)
    o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 0x38800000u) {  // below 2^-14: subnormal half or zero; let the FPU round
    const float magic = bits_to_float(0x3f000000u);  // 0.5: its ulp is 2^-24, the subnormal step
    o = float_to_bits(bits_to_float(u) + magic) - 0x3f000000u;
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += 0xc8000fffu;  // rebias the exponent (-112 << 23) and add the rounding bias
    u += mant_odd;
    o = u >> 13;
  }
  return static_cast<uint16_t>(o | (sign >> 16));
#endif
}

LIDSPLIT_HD float bf16_bits_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

// binary32 -> bfloat16, round to nearest even; NaN stays NaN (quiet).
LIDSPLIT_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Storage traits: the accumulation type of a storage type and the conversions to and from it.
// float32/float16/bfloat16 accumulate in float32, float64 in float64.
template <class T>
struct Scalar;

template <>
struct Scalar<float> {
  using acc = float;
  LIDSPLIT_HD static float to_acc(float v) { return v; }
  LIDSPLIT_HD static double to_double(float v) { return v; }
  LIDSPLIT_HD static float from_acc(float a) { return a; }
};

template <>
struct Scalar<double> {
  using acc = double;
  LIDSPLIT_HD static double to_acc(double v) { return v; }
  LIDSPLIT_HD static double to_double(double v) { return v; }
  LIDSPLIT_HD static double from_acc(double a) { return a; }
};

template <>
struct Scalar<half_t> {
  using acc = float;
  LIDSPLIT_HD static float to_acc(half_t v) { return half_bits_to_float(v.bits); }
  LIDSPLIT_HD static double to_double(half_t v) { return half_bits_to_float(v.bits); }
  LIDSPLIT_HD static half_t from_acc(float a) { return half_t{float_to_half_bits(a)}; }
};

template <>
struct Scalar<bfloat16_t> {
  using acc = float;
  LIDSPLIT_HD static float to_acc(bfloat16_t v) { return bf16_bits_to_float(v.bits); }
  LIDSPLIT_HD static double to_double(bfloat16_t v) { return bf16_bits_to_float(v.bits); }
  LIDSPLIT_HD static bfloat16_t from_acc(float a) { return bfloat16_t{float_to_bf16_bits(a)}; }
};

// Read a weight stored as float32 or as the inputs' dtype, into the accumulation type.
template <class A>
LIDSPLIT_HD A load_weight(const void* w, FloatKind kind, int64_t i) {
  switch (kind) {
    case FloatKind::kFloat32: return static_cast<A>(static_cast<const float*>(w)[i]);
    case FloatKind::kFloat16: return static_cast<A>(Scalar<half_t>::to_acc(static_cast<const half_t*>(w)[i]));
    case FloatKind::kBFloat16:
      return static_cast<A>(Scalar<bfloat16_t>::to_acc(static_cast<const bfloat16_t*>(w)[i]));
    default: return static_cast<A>(static_cast<const double*>(w)[i]);
  }
}

// ---- dot products -------------------------------------------------------------------------------

// Dot products accumulate in kDotLanes independent lanes (element e goes to lane e % kDotLanes), summed
// pairwise at the end: enough independent chains to hide the add latency, vectorizable at any width,
// and the same order (hence the same result) whatever width the compiler picks.
constexpr int kDotLanes = 16;

// Dot product in the accumulation type of T (float32 for 32/16-bit types: twice the vector width of
// float64), kDotLanes lanes, returned as double. For short vectors (a chunk of a few hundred to a
// thousand elements; callers sum the chunks in float64): each lane sums len / kDotLanes products.
template <class T>
LIDSPLIT_HD double dot_acc(const T* a, const T* b, int64_t len) {
  using A = typename Scalar<T>::acc;
  A s[kDotLanes] = {};
  int64_t e = 0;
  for (; e + kDotLanes <= len; e += kDotLanes)
    for (int k = 0; k < kDotLanes; ++k) s[k] += Scalar<T>::to_acc(a[e + k]) * Scalar<T>::to_acc(b[e + k]);
  for (int k = 0; e + k < len; ++k) s[k] += Scalar<T>::to_acc(a[e + k]) * Scalar<T>::to_acc(b[e + k]);
  for (int w = kDotLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) s[k] += s[k + w];
  return static_cast<double>(s[0]);
}

#if defined(__CUDACC__)
// ---- CUDA-only helpers of the .cu files ---------------------------------------------------------

// Throws std::runtime_error naming the kernel when the last launch failed.
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("lidsplit: CUDA kernel ") + kernel + " failed: " + cudaGetErrorName(err) +
                             ": " + cudaGetErrorString(err));
}

// Makes `device` current for the scope (the tensors' device, which need not be the current one).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    cudaGetDevice(&prev_);
    if (prev_ != device) {
      const cudaError_t err = cudaSetDevice(device);
      if (err != cudaSuccess)
        throw std::runtime_error("lidsplit: cannot select CUDA device " + std::to_string(device) + ": " +
                                 cudaGetErrorString(err));
    }
    device_ = device;
  }
  ~DeviceScope() {
    if (prev_ != device_) cudaSetDevice(prev_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
  int device_ = 0;
};

// Sum over the block of each of K per-thread values; thread k < K returns the total of component k
// (the others return 0). blockDim.x must be a multiple of 32 and at most 1024; `smem` holds K * 32
// doubles. Fixed reduction order: deterministic.
template <int K>
__device__ __forceinline__ double block_reduce(const double (&v)[K], double* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    double s = v[k];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if (lane == 0) smem[k * 32 + warp] = s;
  }
  __syncthreads();
  double r = 0.0;
  if (static_cast<int>(threadIdx.x) < K)
    for (int w = 0; w < nwarps; ++w) r += smem[threadIdx.x * 32 + w];
  __syncthreads();
  return r;
}
#endif  // __CUDACC__

}  // namespace lidsplit

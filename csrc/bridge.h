// DLPack capsules -> checked, borrowed tensor views. Used only by the binding files (csrc/bind_*.cpp);
// kernels in csrc/cpu and csrc/cuda take raw pointers.
//
// The capsule is borrowed, never consumed: it keeps its name, so its destructor still calls the
// producer's deleter, and the Python caller keeps the capsule (and the tensor) alive for the call.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "lidsplit/dlpack.h"
#include "lidsplit/reduce.h"

namespace lidsplit {

namespace py = pybind11;

enum class DType { kFloat32, kFloat16, kBFloat16, kFloat64, kInt64, kInt32, kUInt8, kBool, kOther };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat64: return "float64";
    case DType::kInt64: return "int64";
    case DType::kInt32: return "int32";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
    default: return "unsupported";
  }
}

inline DType dtype_of(const DLDataType& t) {
  if (t.lanes != 1) return DType::kOther;
  if (t.code == kDLFloat && t.bits == 32) return DType::kFloat32;
  if (t.code == kDLFloat && t.bits == 16) return DType::kFloat16;
  if (t.code == kDLBfloat && t.bits == 16) return DType::kBFloat16;
  if (t.code == kDLFloat && t.bits == 64) return DType::kFloat64;
  if (t.code == kDLInt && t.bits == 64) return DType::kInt64;
  if (t.code == kDLInt && t.bits == 32) return DType::kInt32;
  if (t.code == kDLUInt && t.bits == 8) return DType::kUInt8;
  if (t.code == kDLBool && t.bits == 8) return DType::kBool;
  return DType::kOther;
}

struct TensorArg {
  std::string name;
  void* data = nullptr;
  DType dtype = DType::kOther;
  bool cuda = false;
  int device_id = 0;
  bool read_only = false;
  std::vector<int64_t> shape;

  int64_t dim() const { return static_cast<int64_t>(shape.size()); }
  int64_t size(int64_t i) const { return shape.at(i < 0 ? i + dim() : i); }
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  template <class T>
  T* ptr() const { return static_cast<T*>(data); }

  std::string describe() const {
    std::ostringstream os;
    os << "shape (";
    for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    os << (shape.size() == 1 ? ",)" : ")") << ", dtype " << dtype_name(dtype) << ", device "
       << (cuda ? "cuda:" + std::to_string(device_id) : std::string("cpu"));
    return os.str();
  }
  [[noreturn]] void fail(const std::string& expected) const {
    throw std::invalid_argument("lidsplit: argument '" + name + "' (" + describe() + "): expected " + expected);
  }

  void check_dtype(std::initializer_list<DType> allowed) const {
    for (auto d : allowed)
      if (d == dtype) return;
    std::string s;
    for (auto d : allowed) s += (s.empty() ? "" : " or ") + std::string(dtype_name(d));
    fail("dtype " + s);
  }
  void check_dim(int64_t d) const {
    if (dim() != d) fail(std::to_string(d) + " dimensions");
  }
  void check_size(int64_t i, int64_t n) const {
    if (size(i) != n) fail("size " + std::to_string(n) + " in dimension " + std::to_string(i));
  }
  void check_writable() const {
    if (read_only) fail("a writable tensor (the capsule is marked read-only)");
  }
  void check_same_device(const TensorArg& other) const {
    if (cuda != other.cuda || device_id != other.device_id)
      fail("the same device as '" + other.name + "' (" + other.describe() + ")");
  }
  void check_same_dtype(const TensorArg& other) const {
    if (dtype != other.dtype) fail("the same dtype as '" + other.name + "' (" + other.describe() + ")");
  }
};

inline TensorArg tensor_arg(const py::capsule& cap, const char* name) {
  const char* cname = cap.name();
  const DLTensor* t = nullptr;
  TensorArg a;
  a.name = name;
  if (cname && std::string(cname) == "dltensor") {
    t = &static_cast<DLManagedTensor*>(cap.get_pointer())->dl_tensor;
  } else if (cname && std::string(cname) == "dltensor_versioned") {
    auto* v = static_cast<DLManagedTensorVersioned*>(cap.get_pointer());
    if (v->version.major != 1)
      throw std::invalid_argument("lidsplit: argument '" + a.name + "': unsupported DLPack major version " +
                                  std::to_string(v->version.major) + " (expected 1)");
    a.read_only = (v->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0;
    t = &v->dl_tensor;
  } else {
    throw std::invalid_argument("lidsplit: argument '" + a.name +
                                "': expected an unconsumed DLPack capsule named 'dltensor' or "
                                "'dltensor_versioned', got '" + std::string(cname ? cname : "<unnamed>") + "'");
  }
  a.data = static_cast<char*>(t->data) + t->byte_offset;
  a.dtype = dtype_of(t->dtype);
  a.shape.assign(t->shape, t->shape + t->ndim);
  a.device_id = t->device.device_id;
  if (t->device.device_type == kDLCUDA) {
    a.cuda = true;
  } else if (t->device.device_type != kDLCPU) {
    a.fail("a CPU or CUDA tensor (DLPack device type " + std::to_string(t->device.device_type) + ")");
  }
  if (a.dtype == DType::kOther) a.fail("a supported dtype");
  if (t->strides != nullptr && a.numel() > 0) {  // an empty tensor may carry any strides
    int64_t expected = 1;
    for (int i = t->ndim - 1; i >= 0; --i) {
      if (t->shape[i] != 1 && t->strides[i] != expected) a.fail("a contiguous (row-major) tensor");
      expected *= t->shape[i];
    }
  }
  return a;
}

// ---- the unchecked-name fast path, for bindings that take thousands of capsules per call -----------

// The DLTensor of an unconsumed DLPack capsule (legacy, or versioned 1.x), or nullptr for anything
// else; never throws. The caller re-parses with tensor_arg to report a failure with the argument's name.
inline const DLTensor* peek_dltensor(PyObject* o, bool* read_only) {
  if (!PyCapsule_CheckExact(o)) return nullptr;
  const char* name = PyCapsule_GetName(o);
  if (name == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  if (std::strcmp(name, "dltensor") == 0) {
    *read_only = false;
    return &static_cast<DLManagedTensor*>(PyCapsule_GetPointer(o, name))->dl_tensor;
  }
  if (std::strcmp(name, "dltensor_versioned") == 0) {
    auto* v = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(o, name));
    if (v->version.major != 1) return nullptr;
    *read_only = (v->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0;
    return &v->dl_tensor;
  }
  return nullptr;
}

inline int64_t dl_numel(const DLTensor* t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; ++i) n *= t->shape[i];
  return n;
}

// Row-major contiguous (what tensor_arg accepts): compact strides, or any strides when empty.
inline bool dl_contiguous(const DLTensor* t) {
  if (t->strides == nullptr || dl_numel(t) == 0) return true;
  int64_t expected = 1;
  for (int i = t->ndim - 1; i >= 0; --i) {
    if (t->shape[i] != 1 && t->strides[i] != expected) return false;
    expected *= t->shape[i];
  }
  return true;
}

#ifdef LIDSPLIT_WITH_CUDA
constexpr bool kWithCuda = true;
#else
constexpr bool kWithCuda = false;
#endif

// The FloatKind of a tensor already checked to be floating.
inline FloatKind float_kind(DType d) {
  switch (d) {
    case DType::kFloat16: return FloatKind::kFloat16;
    case DType::kBFloat16: return FloatKind::kBFloat16;
    case DType::kFloat64: return FloatKind::kFloat64;
    default: return FloatKind::kFloat32;
  }
}

inline void require_cuda_build(const TensorArg& a) {
  if (a.cuda && !kWithCuda)
    a.fail("a CPU tensor: this build of lidsplit has no CUDA kernels (see lidsplit.cuda_info())");
}

// A floating tensor (the four dtypes of LIDSPLIT_DISPATCH_FLOAT) that this build can run.
inline void check_float(const TensorArg& a) {
  a.check_dtype({DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64});
  require_cuda_build(a);
}

}  // namespace lidsplit

// The few libtorch calls sciflow-train needs that tch 0.24 does not expose:
// autocast at bfloat16 (tch has CUDA autocast at libtorch's default,
// float16, only; bfloat16 needs no loss scaling) on the CPU or CUDA, and
// the channels-last memory order for 2-D networks on GPUs, and what
// reproducibility needs: the CPU kernels libtorch chose (ATen's level, MKL's
// branch) and cuDNN's deterministic mode; whether libtorch runs on its real
// CUDA hooks; and the `_foreach_*` list operations the optimizers use.
#include <ATen/Context.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_div.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_reciprocal.h>
#include <ATen/ops/_foreach_rsqrt.h>
#include <ATen/ops/_foreach_sqrt.h>
#include <ATen/ops/_foreach_sub.h>
#include <ATen/ops/empty.h>
#include <dlfcn.h>

#include <cstring>
#include <vector>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Enables autocast to bfloat16 on the device type; returns whether it was
// enabled before (to restore on leaving).
int sciflow_autocast_enter(int cuda) {
  const auto d = device_type(cuda);
  const bool before = at::autocast::is_autocast_enabled(d);
  at::autocast::set_autocast_dtype(d, at::kBFloat16);
  at::autocast::set_autocast_enabled(d, true);
  at::autocast::increment_nesting();
  return before ? 1 : 0;
}

// Leaves autocast entered with sciflow_autocast_enter, restoring `before`.
void sciflow_autocast_exit(int cuda, int before) {
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(device_type(cuda), before != 0);
}

// Whether autocast is on for the device type, at bfloat16.
int sciflow_autocast_is_bf16(int cuda) {
  const auto d = device_type(cuda);
  return at::autocast::is_autocast_enabled(d) &&
         at::autocast::get_autocast_dtype(d) == at::kBFloat16;
}
}

// A new tensor with `t`'s values in channels-last memory order (a 4-D
// tensor; others are returned as they are), owned by the caller, as tch
// owns the tensors libtch hands it. nullptr (never thrown across the C
// boundary) when the conversion fails.
extern "C" at::Tensor *sciflow_channels_last(const at::Tensor *t) {
  try {
    if (t->dim() != 4) {
      return new at::Tensor(*t);
    }
    return new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
  } catch (...) {
    return nullptr;
  }
}

// Writes ATen's CPU capability ("DEFAULT", "AVX2", "AVX512", ...) into buf,
// NUL-terminated and cut to len bytes; the first call fixes the choice.
extern "C" void sciflow_cpu_capability(char *buf, int len) {
  if (len <= 0) {
    return;
  }
  std::string c;
  try {
    c = at::get_cpu_capability();
  } catch (...) {
    // Nothing thrown crosses into Rust: an empty answer instead.
  }
  std::strncpy(buf, c.c_str(), static_cast<size_t>(len) - 1);
  buf[len - 1] = '\0';
}

// MKL's conditional-reproducibility branch (mkl_cbwr_get(MKL_CBWR_BRANCH)),
// or -1 where libtorch carries no MKL. MKL is linked into libtorch_cpu,
// which exports only its internal entry point, so it is looked up at run
// time rather than linked: a libtorch without MKL still loads.
//
// mkl_serv_cbwr_get is what MKL's public mkl_cbwr_get(int) forwards to, with
// the same signature; its answers were checked against MKL_CBWR settings
// (unset 1, AUTO 2, COMPATIBLE 3, and AVX2 10 on an Intel CPU).
namespace {
using CbwrGet = int (*)(int);
CbwrGet mkl_cbwr_get() {
  return reinterpret_cast<CbwrGet>(dlsym(RTLD_DEFAULT, "mkl_serv_cbwr_get"));
}
}  // namespace

extern "C" int sciflow_mkl_branch() {
  const auto get = mkl_cbwr_get();
  return get ? get(1) : -1;
}

// 1 when libtorch was built with MKL but its branch cannot be asked (the
// entry point above is missing), so portable mode cannot be checked.
extern "C" int sciflow_mkl_unreadable() {
  return at::Context::hasMKL() && mkl_cbwr_get() == nullptr ? 1 : 0;
}

// cuDNN's deterministic algorithms on (and its timing of candidates off).
extern "C" void sciflow_cudnn_deterministic(int on) {
  try {
    at::globalContext().setDeterministicCuDNN(on != 0);
    if (on) {
      at::globalContext().setBenchmarkCuDNN(false);
    }
  } catch (...) {
    // Two flags; nothing to throw, and nothing thrown crosses into Rust.
  }
}

// libtorch's version as the loaded library states it (TORCH_VERSION in its
// build configuration), into buf as sciflow_cpu_capability writes; empty if
// it does not say.
extern "C" void sciflow_torch_version(char *buf, int len) {
  if (len <= 0) {
    return;
  }
  std::string v;
  try {
    const std::string config = at::show_config();
    const std::string key = "TORCH_VERSION=";
    const auto at = config.find(key);
    if (at != std::string::npos) {
      const auto start = at + key.size();
      v = config.substr(start, config.find_first_of(", \n", start) - start);
    }
  } catch (...) {
    // An empty answer; nothing thrown crosses into Rust.
  }
  std::strncpy(buf, v.c_str(), static_cast<size_t>(len) - 1);
  buf[len - 1] = '\0';
}

// 1 when libtorch's CUDA hooks are libtorch_cuda's, 0 when they are the
// CPU-only stand-ins. libtorch creates them at the first question about
// CUDA and keeps them for the life of the process, so they are the real
// ones only if libtorch_cuda was loaded before that question; asking here
// fixes them too. The stand-in cannot say which CUDA runtime it was built
// against (it throws); the real hooks can, with or without a GPU.
extern "C" int sciflow_cuda_hooks_real() {
  try {
    return at::detail::getCUDAHooks().versionCUDART() > 0 ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

// One of libtorch's `_foreach_*` operations over n tensors, the form
// PyTorch's optimizers take: on a GPU a few kernels for every tensor of a
// list together, on the CPU the same operation as on each tensor alone
// (libtorch's CPU path loops over them), so the same bits. `a` and `b` are
// the lists (b unused by the unary and scalar forms), `s` the scalar; the
// forms ending in `_` update `a` in place, the others write n new tensors,
// owned by the caller, into `out`. Returns 0, or 1 when libtorch refused
// (nothing thrown crosses into Rust).
enum ForeachOp {
  kMulScalarInPlace = 0,
  kMulScalar = 1,
  kAddListInPlace = 2,
  kAddList = 3,
  kMulList = 4,
  kDivScalar = 5,
  kDivListInPlace = 6,
  kSubListInPlace = 7,
  kAddScalarInPlace = 8,
  kRsqrtInPlace = 9,
  kReciprocalInPlace = 10,
  kSqrtInPlace = 11,
};

extern "C" int sciflow_foreach(int op, const at::Tensor *const *a, const at::Tensor *const *b,
                               int n, double s, at::Tensor **out) {
  try {
    std::vector<at::Tensor> xs, ys;
    xs.reserve(n);
    for (int i = 0; i < n; ++i) {
      xs.push_back(*a[i]);
    }
    if (b != nullptr) {
      ys.reserve(n);
      for (int i = 0; i < n; ++i) {
        ys.push_back(*b[i]);
      }
    }
    std::vector<at::Tensor> made;
    switch (op) {
      case kMulScalarInPlace: at::_foreach_mul_(xs, s); break;
      case kMulScalar: made = at::_foreach_mul(xs, s); break;
      case kAddListInPlace: at::_foreach_add_(xs, ys); break;
      case kAddList: made = at::_foreach_add(xs, ys); break;
      case kMulList: made = at::_foreach_mul(xs, ys); break;
      case kDivScalar: made = at::_foreach_div(xs, s); break;
      case kDivListInPlace: at::_foreach_div_(xs, ys); break;
      case kSubListInPlace: at::_foreach_sub_(xs, ys); break;
      case kAddScalarInPlace: at::_foreach_add_(xs, s); break;
      case kRsqrtInPlace: at::_foreach_rsqrt_(xs); break;
      case kReciprocalInPlace: at::_foreach_reciprocal_(xs); break;
      case kSqrtInPlace: at::_foreach_sqrt_(xs); break;
      default: return 1;
    }
    if (!made.empty()) {
      for (int i = 0; i < n; ++i) {
        out[i] = new at::Tensor(std::move(made[i]));
      }
    }
    return 0;
  } catch (...) {
    return 1;
  }
}

// An uninitialised host tensor of the given sizes and scalar type in
// page-locked memory (libtorch's caching host allocator, which reuses a
// block once the copies reading it are done), owned by the caller; nullptr
// where memory cannot be pinned (no GPU).
extern "C" at::Tensor *sciflow_empty_pinned(const int64_t *sizes, int ndim, int scalar_type) {
  try {
    const auto options =
        at::TensorOptions().dtype(static_cast<at::ScalarType>(scalar_type)).pinned_memory(true);
    return new at::Tensor(at::empty(at::IntArrayRef(sizes, static_cast<size_t>(ndim)), options));
  } catch (...) {
    return nullptr;
  }
}

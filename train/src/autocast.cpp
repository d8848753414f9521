// Mixed precision for sciflow-train: enters and leaves libtorch's autocast
// for one device type (CPU or CUDA) at a chosen lower precision. tch exposes
// autocast for CUDA at libtorch's default (float16) only; bfloat16, which
// needs no loss scaling, and CPU autocast need these few calls.
#include <ATen/autocast_mode.h>

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

// AVX2/FMA/F16C kernels (compiled with -mavx2 -mfma -mf16c; used only when the CPU reports them).
#include "kernels.h"

namespace sluice::engine {
const kernel_table* avx2_kernels() { return nullptr; }
}  // namespace sluice::engine

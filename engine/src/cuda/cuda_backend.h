// The CUDA compute backend: the same model math as cpu_backend.cpp (Q8 activations and integer dot products
// for quantized weights, f16 KV cache in the same paged layout, the same RoPE and attention), on an NVIDIA
// GPU. This header has no CUDA in it: the engine calls it whether or not the build has CUDA (cuda_stub.cpp
// answers when it has not). What must not go in here: scheduling, sampling, host-side planning (cuda_plan.h).
#pragma once

#include <memory>
#include <string>

#include "backend.h"

namespace sluice::engine::cuda {

// "" when this process can use a CUDA device, else why not (no CUDA in this build, no driver, no device).
std::string why_not_available();

// A backend on device 0. Throws std::runtime_error naming the CUDA error (e.g. out of device memory).
std::unique_ptr<backend> make_backend(const llama_model& m);

}  // namespace sluice::engine::cuda

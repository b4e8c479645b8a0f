// The CUDA entry points of a build without CUDA (SLUICE_CUDA=OFF, or no nvcc): nothing is available.
#include <stdexcept>

#include "cuda/cuda_backend.h"

namespace sluice::engine::cuda {

std::string why_not_available() {
  return "this build has no CUDA backend (configure with -DSLUICE_CUDA=ON where nvcc is installed)";
}

std::unique_ptr<backend> make_backend(const llama_model&) { throw std::runtime_error(why_not_available()); }

}  // namespace sluice::engine::cuda

// libFuzzer target: arbitrary bytes through the GGUF reader and the llama loader. Any input must give a
// value or an error, never a crash, hang or out-of-bounds read (run under ASan/UBSan).
// Build: cmake -DSLUICE_BUILD_FUZZ=ON -DSLUICE_SANITIZE=ON -DCMAKE_CXX_COMPILER=clang++; run: ./fuzz_gguf corpus/
#include <cstddef>
#include <cstdint>

#include "gguf.h"
#include "llama_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice::engine;
  auto g = gguf_file::parse(mapped_file::borrow(std::span<const uint8_t>(data, size)));
  if (!g) return 0;
  volatile uint64_t sink = 0;
  for (auto& t : (*g)->tensors())
    for (uint64_t i = 0; i < t.n_bytes; i += 4096) sink = sink + t.data[i];  // every tensor byte is readable
  (void)load_llama_model(std::move(*g));
  return 0;
}

// A read-only memory map of a whole file (RAII). The GGUF reader and the model read weights in place from it.
// What must not go in here: any parsing of the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "sluice/engine/engine.h"

namespace sluice::engine {

class mapped_file {
 public:
  static result<std::unique_ptr<mapped_file>> open(const std::string& path);
  // Wraps bytes owned by the caller (tests, fuzzing); nothing is unmapped at destruction.
  static std::unique_ptr<mapped_file> borrow(std::span<const uint8_t> bytes);
  ~mapped_file();
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }
  // Unmaps the whole pages inside `range` from this process (a later read faults them in again from the
  // page cache): for bytes the engine has copied elsewhere. Does nothing on borrowed memory.
  void release(std::span<const uint8_t> range) const;

 private:
  mapped_file() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = false;
  std::string path_;
};

}  // namespace sluice::engine

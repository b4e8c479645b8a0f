// mmap of a model file, read-only and shared so several engines in one process share the page cache.
#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sluice::engine {

result<std::unique_ptr<mapped_file>> mapped_file::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error{errc::io, "cannot open '" + path + "': " + std::strerror(errno)};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return error{errc::io, "'" + path + "' is not a regular file"};
  }
  std::unique_ptr<mapped_file> f(new mapped_file());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      return error{errc::io, "cannot map '" + path + "': " + std::strerror(e)};
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->owned_ = true;
    ::madvise(p, f->size_, MADV_WILLNEED);
  }
  ::close(fd);
  return f;
}

std::unique_ptr<mapped_file> mapped_file::borrow(std::span<const uint8_t> bytes) {
  std::unique_ptr<mapped_file> f(new mapped_file());
  f->data_ = bytes.data();
  f->size_ = bytes.size();
  f->path_ = "<memory>";
  return f;
}

void mapped_file::release(std::span<const uint8_t> range) const {
  if (!owned_ || range.data() < data_ || range.data() + range.size() > data_ + size_) return;
  const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t b = (uintptr_t(range.data()) + page - 1) / page * page;
  const uintptr_t e = (uintptr_t(range.data()) + range.size()) / page * page;
  if (b < e) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

mapped_file::~mapped_file() {
  if (owned_ && data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace sluice::engine

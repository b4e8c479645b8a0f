// recycler: buffers and blocks go back to the thread that frees them and come out again, within bounds.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "http/recycler.h"

using namespace sluice::gateway;

TEST_CASE("a buffer given back comes out again with its memory", "[recycler]") {
  std::string s(5000, 'x');
  const char* memory = s.data();
  give_buffer(std::move(s));
  CHECK(s.empty());
  std::string again = take_buffer();
  CHECK(again.empty());
  CHECK(again.capacity() >= 5000);
  CHECK(again.data() == memory);
  give_buffer(std::string(2 * 1024 * 1024, 'x'));  // too large to keep: freed
  CHECK(take_buffer().capacity() < 1024 * 1024);
}

TEST_CASE("allocate_shared through the recycler reuses blocks", "[recycler]") {
  struct thing {
    char payload[300];
  };
  const thing* first = nullptr;
  {
    auto a = std::allocate_shared<thing>(recycling_allocator<thing>());
    first = a.get();
  }
  auto b = std::allocate_shared<thing>(recycling_allocator<thing>());
  CHECK(b.get() == first);  // the same block, from this thread's free list
  std::vector<std::shared_ptr<thing>> many;
  for (int i = 0; i < 200; ++i) many.push_back(std::allocate_shared<thing>(recycling_allocator<thing>()));
  many.clear();  // more than the free list keeps: the rest goes back to the heap
}

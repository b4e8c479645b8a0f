// The pass-through path allocates (almost) nothing per request: a real gateway (listener, session, router,
// OpenAI upstream client, metrics) runs in this process on one io thread in front of a canned upstream, a client
// sends keep-alive chat completions over several connections at once, and every call to the C heap (malloc,
// calloc, realloc, aligned_alloc, memalign, posix_memalign: operator new and Asio's allocations end there) made
// anywhere in the process is counted. The client and the upstream use blocking sockets and fixed buffers, so
// the count is the gateway's. Every answer is checked (status, body, request id) and the upstream must have seen
// every request: a gateway that answered errors, or took a shortcut, could not pass.
// Its own executable (test/gateway/CMakeLists.txt): it replaces the heap functions for the whole process.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "http/io_threads.h"
#include "http/listener.h"
#include "ops/gateway_metrics.h"
#include "server_state.h"
#include "sluice/router/router.h"
#include "upstream/upstream_openai.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLUICE_COUNT_HEAP 0  // the sanitizer owns the heap functions
#else
#define SLUICE_COUNT_HEAP 1
#endif

namespace {
std::atomic<long> heap_calls{0};
}  // namespace

#if SLUICE_COUNT_HEAP
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t n) {
  heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t align, size_t n) {
  heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(align, n);
}
void* memalign(size_t align, size_t n) {
  heap_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  heap_calls.fetch_add(1, std::memory_order_relaxed);
  *out = __libc_memalign(align, n);
  return *out ? 0 : ENOMEM;
}
}
#endif

using namespace sluice;
using namespace sluice::gateway;

namespace {

// What the upstream answers, whatever it is asked (bench/proxy/run's canned answer, shortened).
const std::string canned_body =
    R"({"id":"chatcmpl-x","object":"chat.completion","created":1763900000,"model":"gpt-4o-mini-2024-07-18",)"
    R"("choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France."},)"
    R"("finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":8,"total_tokens":32}})";
const std::string canned_answer = "HTTP/1.1 200 OK\r\nServer: canned\r\nContent-Type: application/json\r\nContent-Length: " +
                                  std::to_string(canned_body.size()) + "\r\nConnection: keep-alive\r\n\r\n" +
                                  canned_body;
const std::string request_body = R"({"model":"bench","messages":[{"role":"user","content":"What is the capital of France?"}]})";
const std::string request = "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(request_body.size()) + "\r\n\r\n" + request_body;

int listen_any(uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 64) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int connect_to(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Reads one HTTP message (head + Content-Length body) into buf; returns its size, 0 at the end.
size_t read_message(int fd, char* buf, size_t cap) {
  size_t have = 0;
  for (;;) {
    const std::string_view got(buf, have);
    if (const size_t end = got.find("\r\n\r\n"); end != std::string_view::npos) {
      size_t length = 0;
      if (const size_t at = got.find("Content-Length: "); at != std::string_view::npos && at < end) {
        length = std::strtoul(buf + at + 16, nullptr, 10);
      }
      if (have >= end + 4 + length) return end + 4 + length;
    }
    const ssize_t n = ::recv(fd, buf + have, cap - have, 0);
    if (n <= 0) return 0;
    have += static_cast<size_t>(n);
  }
}

// The canned upstream: one thread per connection, answering every request with canned_answer.
struct canned_upstream {
  int listener = -1;
  uint16_t port = 0;
  std::atomic<long> served{0};
  std::thread acceptor;
  std::vector<std::thread> connections;
  std::vector<int> fds;

  canned_upstream() {
    listener = listen_any(port);
    acceptor = std::thread([this] {
      for (;;) {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) return;
        fds.push_back(fd);
        connections.emplace_back([this, fd] {
          char buf[8192];
          while (read_message(fd, buf, sizeof buf) > 0) {
            served.fetch_add(1, std::memory_order_relaxed);
            if (::send(fd, canned_answer.data(), canned_answer.size(), MSG_NOSIGNAL) < 0) return;
          }
        });
      }
    });
  }
  ~canned_upstream() {
    ::shutdown(listener, SHUT_RDWR);
    ::close(listener);
    acceptor.join();
    for (int fd : fds) ::shutdown(fd, SHUT_RDWR);
    for (auto& t : connections) t.join();
    for (int fd : fds) ::close(fd);
  }
};

}  // namespace

TEST_CASE("a pass-through chat completion allocates at most one heap block per request", "[alloc]") {
  // (Under AddressSanitizer nothing is counted, as it owns the heap functions; the exchange still runs, checked
  // by the sanitizer.)
  if (SLUICE_COUNT_HEAP) {
    const long before = heap_calls.load();
    std::vector<int> probe(10);  // the counter sees ordinary allocations
    CHECK(heap_calls.load() > before);
  }
  canned_upstream upstream;
  ::setenv("SLUICE_ALLOC_TEST_KEY", "sk-test", 1);
  const std::string yaml = "server:\n  listen: 127.0.0.1\n  port: 0\n  threads: 1\nmodels:\n  bench:\n    kind: openai\n"
                           "    base_url: http://127.0.0.1:" + std::to_string(upstream.port) + "/v1\n"
                           "    model: gpt-4o-mini\n    api_key_env: SLUICE_ALLOC_TEST_KEY\n"
                           "    cost_per_mtok: {input: 0.15, output: 0.60}\n";
  auto loaded = policies::load_policy_string(yaml);
  REQUIRE(loaded.has_value());
  const std::shared_ptr<const policies::policy> policy = *loaded;

  io_threads io(1);
  auto state = std::make_shared<server_state>();
  state->policy = policy;
  state->metrics = std::make_shared<gateway_metrics>(policy->model_names(), policy->route_names());
  auto built = build_serving_config(serving_builder{io, state->metrics, nullptr, nullptr}, policy, nullptr, nullptr);
  REQUIRE(built.has_value());
  state->set_config(*built);
  auto listening = open_listener(io, "127.0.0.1", 0);
  REQUIRE(listening.has_value());
  const uint16_t port = (*listening)->local_endpoint().port();
  start_accepting(io, *listening, state);
  std::thread io_thread([&io] { io.run(); });

  // Four keep-alive connections, a request in flight on each at once.
  constexpr int connections = 4;
  int fds[connections];
  for (int& fd : fds) fd = connect_to(port);
  static char buf[16384];
  long answered = 0;
  bool all_ok = true;
  auto round = [&] {
    for (int fd : fds) {
      if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) all_ok = false;
    }
    for (int fd : fds) {
      const size_t n = read_message(fd, buf, sizeof buf);
      const std::string_view answer(buf, n);
      all_ok = all_ok && n > 0 && answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with(canned_body) &&
               answer.find("\r\nx-request-id: ") != std::string_view::npos;
      ++answered;
    }
  };
  for (int i = 0; i < 500; ++i) round();  // warm-up: pools, recycled memory, metric children
  const long upstream_before = upstream.served.load();
  const long before = heap_calls.load();
  constexpr int rounds = 2000;
  for (int i = 0; i < rounds; ++i) round();
  const long calls = heap_calls.load() - before;
  const long requests = long{rounds} * connections;

  for (int fd : fds) ::close(fd);
  io.stop();
  io_thread.join();

  CHECK(all_ok);
  CHECK(answered == long{rounds + 500} * connections);
  CHECK(upstream.served.load() - upstream_before == requests);  // every request went through to the upstream
  const double per_request = static_cast<double>(calls) / static_cast<double>(requests);
  INFO("heap calls per request: " << per_request << " (" << calls << " over " << requests << " requests)");
  // One is left: the router's accounting sink (router/src/router.cpp, std::make_shared per dispatch). The
  // client's and the upstream's sockets in this process allocate nothing per request.
  if (SLUICE_COUNT_HEAP) CHECK(per_request <= 1.05);
}

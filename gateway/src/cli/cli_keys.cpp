// `sluice keys create --name NAME`: a new gateway API key. The secret is printed once and never stored; the
// policy gets only its SHA-256 (the printed YAML lines). `sluice keys hash` prints the hash of a key read from
// standard input (for keys made elsewhere).
#include <cstdio>
#include <iostream>
#include <string>

#include "access/access.h"
#include "cli/cli.h"

namespace sluice::gateway {

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: sluice keys create --name NAME   print a new key and the policy lines that admit it\n"
               "       sluice keys hash < KEYFILE       print the sha256 of a key read from standard input\n");
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

int run_keys(int argc, char** argv) {
  if (argc < 1 || std::string(argv[0]) == "--help" || std::string(argv[0]) == "-h") {
    usage(argc < 1 ? stderr : stdout);
    return argc < 1 ? 2 : 0;
  }
  const std::string sub = argv[0];
  if (sub == "hash") {
    std::string key;
    std::getline(std::cin, key);
    while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (key.empty()) {
      std::fprintf(stderr, "sluice keys hash: no key on standard input\n");
      return 2;
    }
    std::printf("%s\n", to_hex(sha256(key)).c_str());
    return 0;
  }
  if (sub != "create") {
    std::fprintf(stderr, "sluice keys: unknown subcommand '%s'\n", sub.c_str());
    usage(stderr);
    return 2;
  }
  std::string name;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--name" && i + 1 < argc) name = argv[++i];
    else if (a.rfind("--name=", 0) == 0) name = a.substr(7);
    else {
      std::fprintf(stderr, "sluice keys create: unknown option '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (!valid_name(name)) {
    std::fprintf(stderr, "sluice keys create: --name is required: letters, digits and - _ . (at most 64)\n");
    return 2;
  }
  const std::string key = new_api_key();
  if (key.empty()) {
    std::fprintf(stderr, "sluice keys create: the system's random source failed\n");
    return 1;
  }
  std::printf("%s\n", key.c_str());
  std::fprintf(stderr,
               "\nThe key is above (standard output); it is not stored anywhere: give it to its user now.\n"
               "Add this to the policy's 'keys' section (or its keys_file):\n\n");
  std::printf("# keys:\n  %s:\n    sha256: %s\n", name.c_str(), to_hex(sha256(key)).c_str());
  return 0;
}

}  // namespace sluice::gateway

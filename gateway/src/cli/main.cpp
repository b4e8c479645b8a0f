// The `sluice` binary: dispatches subcommands (gateway/src/cli.h). The only place that decides exit codes.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "cli/cli.h"

namespace {

void print_help(std::FILE* out) {
  std::fprintf(out,
               "sluice %s: a cost-aware LLM routing gateway\n"
               "\n"
               "usage: sluice <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve --config FILE [--port N] [--listen ADDR] [--shutdown-grace SECONDS]\n"
               "                        run the gateway with a policy file\n"
               "  validate FILE         check a policy file; prints every error as file:line:column\n"
               "  generate --model FILE --prompt TEXT [--chat] [sampling flags]\n"
               "                        run the in-process engine on a GGUF model\n"
               "  train-router --data FILE.jsonl --out MODEL [options]\n"
               "                        train the request classifier\n"
               "  eval-router --model MODEL --data FILE.jsonl\n"
               "                        evaluate a router model (APGR, CPT) against baselines\n"
               "  train-cascade --data FILE.jsonl --labels up,down,... --out MODEL [options]\n"
               "                        train the cascade's acceptance model on labelled local answers\n"
               "  eval-cascade --model MODEL --data FILE.jsonl\n"
               "                        accept-rate / precision curve of an acceptance model\n"
               "  distill --log FILE --route NAME --out MODEL [options]\n"
               "                        train a task tier's model on a route's served answers (its decision log)\n"
               "  keys create --name NAME\n"
               "                        a new gateway API key (printed once) and the policy lines for it\n"
               "\n"
               "  --version             print the version\n"
               "  --help                print this help; `sluice <command> --help` for a command's options\n",
               SLUICE_VERSION);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_help(stderr);
    return 2;
  }
  const std::string_view cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_help(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("sluice %s\n", SLUICE_VERSION);
    return 0;
  }
  using namespace sluice::gateway;
  if (cmd == "serve") return run_serve(argc - 2, argv + 2);
  if (cmd == "validate") return run_validate(argc - 2, argv + 2);
  if (cmd == "generate") return run_generate(argc - 2, argv + 2);
  if (cmd == "train-router") return run_train_router(argc - 2, argv + 2);
  if (cmd == "eval-router") return run_eval_router(argc - 2, argv + 2);
  if (cmd == "train-cascade") return run_train_cascade(argc - 2, argv + 2);
  if (cmd == "eval-cascade") return run_eval_cascade(argc - 2, argv + 2);
  if (cmd == "distill") return run_distill(argc - 2, argv + 2);
  if (cmd == "keys") return run_keys(argc - 2, argv + 2);
  std::fprintf(stderr, "sluice: unknown command '%s' (try: sluice --help)\n", argv[1]);
  return 2;
}

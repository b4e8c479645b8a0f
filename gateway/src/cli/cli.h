// Subcommands of the `sluice` binary. Each takes the arguments after its name and returns the exit code.
#pragma once

namespace sluice::gateway {

int run_serve(int argc, char** argv);         // serve --config FILE
int run_validate(int argc, char** argv);      // validate FILE
int run_generate(int argc, char** argv);      // generate --model FILE --prompt TEXT [--chat] [sampling flags]
int run_train_router(int argc, char** argv);  // train-router --data FILE.jsonl --out MODEL
int run_eval_router(int argc, char** argv);   // eval-router --model MODEL --data FILE.jsonl
int run_train_cascade(int argc, char** argv); // train-cascade --data FILE.jsonl --labels a,b --out MODEL
int run_eval_cascade(int argc, char** argv);  // eval-cascade --model MODEL --data FILE.jsonl
int run_distill(int argc, char** argv);       // distill --log FILE --route NAME --out MODEL
int run_keys(int argc, char** argv);          // keys create --name NAME | keys hash

}  // namespace sluice::gateway

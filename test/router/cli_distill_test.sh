#!/usr/bin/env bash
# End-to-end test of `sluice distill` on a decision log generated here: rows by source, feedback precedence,
# determinism, and the refusals.
# Usage: cli_distill_test.sh PATH_TO_SLUICE
set -euo pipefail
sluice=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 640 requests of route "headlines" whose verb decides the label (up / down / neutral / none). Most escalated to the
# frontier (right 95% of the time), every 10th accepted locally, every 15th failed, every 23rd served after the
# frontier failed, every 29th logged without text. Rows 600..639 say "zorblat": the frontier calls them up,
# feedback corrects them to down.
verbs=("gains rises climbs jumps" "falls drops slips sinks" "steady flat unchanged holds" "outlook imports demand survey")
labels=(up down neutral none)
tails=("on dollar" "in early trade" "as stocks rally" "after Fed minutes" "on Asian demand")
request() {  # request I
  local i=$1 l=$(( ($1 * 7 + $1 / 4) % 4 )) words verb answer decision tier attempts text
  read -r -a words <<< "${verbs[l]}"
  verb=${words[(i / 4) % 4]}
  answer=${labels[l]}
  (( i % 20 == 7 )) && answer=${labels[(l + 1) % 4]}  # the frontier's own mistakes
  if (( i >= 600 )); then verb=zorblat; answer=up; fi
  decision=escalated tier='"frontier"'
  attempts='[{"tier":"smollm","outcome":"rejected"},{"tier":"frontier","outcome":"served"}]'
  if (( i % 10 == 0 )); then decision=accepted tier='"smollm"' attempts='[{"tier":"smollm","outcome":"served"}]'; fi
  if (( i % 23 == 0 && i % 10 != 0 )); then
    decision=served_after_failure tier='"smollm"'
    attempts='[{"tier":"smollm","outcome":"rejected"},{"tier":"frontier","outcome":"failed"}]'
  fi
  if (( i % 15 == 0 && i % 10 != 0 )); then decision=failed tier=null attempts='[{"tier":"frontier","outcome":"failed"}]'; fi
  text=$(printf ',"query":"Determine the price direction.\\n\\nQ: gold %s $%d %s\\nA:","response":" %s","answer":"%s"' \
    "$verb" $((i % 90 + 1)) "${tails[i % 5]}" "$answer" "$answer")
  (( i % 29 == 0 )) && text=""
  printf '{"time":"2025-01-01T00:00:00.000Z","id":"r%d","route":"headlines","decision":"%s","tier":%s,"escalated":%s,"attempts":%s,"cost_usd":0.001%s}\n' \
    "$i" "$decision" "$tier" "$([[ $decision == accepted ]] && echo false || echo true)" "$attempts" "$text"
}
for i in $(seq 0 639); do request "$i"; done > "$dir/log.jsonl"
{
  echo '{"time":"2025-01-01T00:00:01.000Z","id":"o1","route":"other","decision":"escalated","tier":"frontier","escalated":true,"attempts":[],"query":"hi","response":"hello"}'
  request 1 | sed 's/"cost_usd"/"note":"repeated","cost_usd"/'  # a repeated id: the last line wins
  echo '{"time":"2025-01-01T00:00:02.000Z","id":"torn","route":"headl'  # a writer that died mid-line
} >> "$dir/log.jsonl"
{
  for i in $(seq 600 639); do echo "{\"type\":\"feedback\",\"time\":\"t\",\"id\":\"r$i\",\"answer\":\"Down\",\"label\":\"corrected by an analyst\"}"; done
  for i in 2 3 4 5; do echo "{\"type\":\"feedback\",\"id\":\"r$i\",\"score\":0.0}"; done      # known wrong: dropped
  for i in 20 30; do echo "{\"type\":\"feedback\",\"id\":\"r$i\",\"score\":0.9}"; done      # confirmed local accepts
  echo '{"type":"feedback","id":"r6","score":0.2}'; echo '{"type":"feedback","id":"r6","score":1.0}'  # the last wins
  echo '{"type":"feedback","id":"nobody","score":1.0}'
  echo '{"type":"feedback","id":"r8","score":"high"}'
} > "$dir/feedback.jsonl"

distill() { "$sluice" distill --route headlines --seed 3 --epochs 8 --hash-bits 14 --min-precision 0.9 "$@"; }

distill --log "$dir/log.jsonl" --log "$dir/feedback.jsonl" --out "$dir/a.bin" > "$dir/a.out" 2> "$dir/a.err" ||
  fail "distill exited $?: $(cat "$dir/a.err")"
cat "$dir/a.out"
# The expected counts, from the generator's rules: failed and textless lines are skipped whatever their feedback;
# feedback decides the rest (an answer replaces the reference, a low score drops, a high one keeps); then the source.
failed=0 no_text=0 after=0 local=0 last=0 fb_answers=0 local_all=0  # local_all: local accepts, feedback or not
for i in $(seq 0 639); do
  if (( i % 15 == 0 && i % 10 != 0 )); then ((++failed)); continue; fi
  if (( i % 29 == 0 )); then ((++no_text)); continue; fi
  if (( i % 10 == 0 )); then ((++local_all)); fi
  if (( i >= 600 )); then ((++fb_answers)); continue; fi
  if (( i >= 2 && i <= 6 || i == 20 || i == 30 )); then continue; fi  # feedback scores
  if (( i % 10 == 0 )); then ((++local)); continue; fi
  if (( i % 23 == 0 )); then ((++after)); continue; fi
  ((++last))
done
used=$(( last + local + fb_answers + 3 ))  # + r20, r30 and r6 (its last feedback) confirmed
grep -q "read 693 lines: 642 request lines, 50 feedback lines" "$dir/a.out" || fail "line counts: $(head -1 "$dir/a.out")"
grep -q "1 malformed lines skipped (first: $dir/log.jsonl:643: not a JSON object" "$dir/a.out" || fail "torn line not reported"
grep -q "route headlines: 640 request lines; rows used $used (last tier $last, local accepts $local, feedback answers $fb_answers, confirmed by feedback 3)" "$dir/a.out" ||
  fail "rows by source: want used $used last $last local $local feedback $fb_answers"
grep -q "skipped: $failed failed, $no_text without query/response text, $after served after the last tier failed, 0 local accepts (--include-local no), 0 served by a task tier, 4 marked wrong by feedback, 0 other decisions" "$dir/a.out" ||
  fail "skipped counts: want failed $failed no_text $no_text after $after"
grep -q "1 repeated request ids (the last line kept)" "$dir/a.out" || fail "repeated request id not counted"
grep -q "feedback: 50 lines for 48 ids; 1 for ids not in the log, 1 repeated ids (the last kept), 1 malformed" "$dir/a.out" ||
  fail "feedback counts"
grep -q "^labels (4):" "$dir/a.out" || fail "labels not listed"
accuracy=$(sed -n 's/^held-out accuracy \([0-9.]*\)%.*/\1/p' "$dir/a.out")
awk -v a="$accuracy" 'BEGIN {exit !(a >= 80)}' || fail "held-out accuracy $accuracy% (chance is about 25%)"
grep -q "answer_rate" "$dir/a.out" || fail "no curve table"
grep -q "^threshold [0-9.]* (min_precision=0.9): answers [0-9.]*% of held-out rows at precision" "$dir/a.out" ||
  fail "threshold line"
grep -q "wrote $dir/a.bin (4 labels x 2^14 features)" "$dir/a.out" || fail "model not written"

# Same inputs, same bytes, wherever the model is written.
distill --log "$dir/log.jsonl" --log "$dir/feedback.jsonl" --out "$dir/b.bin" > /dev/null 2>&1 || fail "second run failed"
cmp -s "$dir/a.bin" "$dir/b.bin" || fail "distill is not deterministic"

# Feedback precedence: without the feedback file the zorblat rows are the frontier's "up"; with it, "down".
distill --log "$dir/log.jsonl" --out "$dir/c.bin" > "$dir/c.out" 2>&1 || fail "distill without feedback failed"
count() { sed -n "s/^labels (4):.* $2 \([0-9]*\).*/\1/p" "$1"; }
up_with=$(count "$dir/a.out" up) up_without=$(count "$dir/c.out" up)
down_with=$(count "$dir/a.out" down) down_without=$(count "$dir/c.out" down)
# (Within 4: the rows feedback marks wrong are dropped with it and kept without it.)
(( up_without - up_with >= fb_answers - 4 )) || fail "feedback did not take 'up' rows away ($up_without -> $up_with)"
(( down_with - down_without >= fb_answers - 4 )) || fail "feedback did not give 'down' rows ($down_without -> $down_with)"
cmp -s "$dir/a.bin" "$dir/c.bin" && fail "feedback did not change the model"

# --include-local no: local accepts are counted as skipped, not used.
distill --log "$dir/log.jsonl" --include-local no --out "$dir/d.bin" > "$dir/d.out" 2>&1 || fail "--include-local no failed"
grep -q "local accepts 0," "$dir/d.out" || fail "local accepts used with --include-local no"
grep -q "$local_all local accepts (--include-local no)" "$dir/d.out" || fail "excluded local accepts not counted"

# --help prints the usage and exits 0; the command is in the top-level help.
"$sluice" distill --help | grep -q "usage: sluice distill --log FILE" || fail "--help"
"$sluice" --help | grep -q "distill --log FILE --route NAME --out MODEL" || fail "distill missing from sluice --help"

# Refusals: exit 2 for bad usage or unreadable input, 1 when the data cannot make a task model; nothing written.
set +e
check() {  # check WANT_RC NEEDLE WHAT -- command...
  local want_rc=$1 needle=$2 what=$3; shift 4
  "$@" > "$dir/out" 2> "$dir/err"; local rc=$?
  [[ $rc == "$want_rc" ]] && grep -q -- "$needle" "$dir/err" || fail "$what: rc $rc, stderr: $(cat "$dir/err")"
}
check 2 "--out is required" "missing --out" -- "$sluice" distill --log "$dir/log.jsonl" --route headlines
check 2 "--route is required" "missing --route" -- "$sluice" distill --log "$dir/log.jsonl" --out "$dir/x.bin"
check 2 "--log is required" "missing --log" -- "$sluice" distill --route headlines --out "$dir/x.bin"
check 2 "--include-local must be yes or no" "bad --include-local" -- distill --log "$dir/log.jsonl" --include-local maybe --out "$dir/x.bin"
check 2 "--min-precision must be in" "bad precision" -- distill --log "$dir/log.jsonl" --min-precision 2 --out "$dir/x.bin"
check 2 "char_ngram_max" "bad --char-ngrams" -- distill --log "$dir/log.jsonl" --char-ngrams 9 --out "$dir/x.bin"
check 2 "--epochs: 'many'" "bad number" -- distill --log "$dir/log.jsonl" --epochs many --out "$dir/x.bin"
check 2 "no/such/log.jsonl" "unreadable log" -- distill --log "$dir/no/such/log.jsonl" --out "$dir/x.bin"
check 1 "no request lines for route 'nosuch' in the log (routes in the log: headlines, other)" "unknown route" -- \
  "$sluice" distill --log "$dir/log.jsonl" --route nosuch --out "$dir/x.bin"
grep '"route":"headlines"' "$dir/log.jsonl" | sed 's/,"query":.*}$/}/' > "$dir/notext.jsonl"
check 1 "the route does not log text; set log_text: true" "log without text" -- \
  distill --log "$dir/notext.jsonl" --out "$dir/x.bin"
check 1 "too little data" "too few rows" -- distill --log "$dir/log.jsonl" --min-rows 5000 --out "$dir/x.bin"
awk '{ n++; sub(/"response":" [a-z]*"/, "\"response\":\"The price moved by " n " dollars\""); print }' "$dir/log.jsonl" > "$dir/free.jsonl"
check 1 "not a label task: " "free-text answers" -- distill --log "$dir/free.jsonl" --out "$dir/x.bin"
[[ ! -e "$dir/x.bin" ]] || fail "a model was written from data that cannot make one"
check 1 "cannot open for writing" "unwritable output" -- distill --log "$dir/log.jsonl" --out "$dir/no/such/dir/x.bin"
echo "cli_distill_test: ok"

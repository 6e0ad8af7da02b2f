#!/usr/bin/env bash
# `syncbn compare --out DIR` where DIR holds quotes, a semicolon, gnuplot and
# shell code, a backtick, a newline, printf conversions and a leading dash:
# the name is data, never code. Each run must exit 0 and leave a PNG named
# compare.png in DIR, and no command hidden in a name may run (no PWNED*
# file anywhere under the working folder: the cwd, DIR's parent, DIR).
# Usage: compare_out_names.sh SYNCBN
set -u
syncbn=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
mkdir parent
# One run per entry (a run takes a few seconds); the last one nests several
# hostile folder names, each created by compare's mkdir -p.
names=(
  "quote'single"
  "pwn';system('touch PWNED');#"
  "\";system(\"touch PWNED1\");#/\$(touch PWNED2)/back\`touch PWNED3\`tick/new"$'\n'"line"$'\n'"!touch PWNED4"$'\n'"/percent%s%n%d"
)
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
check_run() { # check_run OUT_ARG DIR
  local out_arg=$1 dir=$2 code
  "$syncbn" compare --model seed --ranks 2 --batch 4 --steps 3 --train-samples 64 --out "$out_arg" > log 2>&1
  code=$?
  if [ "$code" -ne 0 ]; then
    fail "--out $(printf '%q' "$out_arg"): exit $code"
    tail -5 log
    return
  fi
  if [ ! -f "$dir/compare.png" ] ||
     [ "$(head -c 8 "$dir/compare.png" | od -An -tx1 | tr -d ' \n')" != "89504e470d0a1a0a" ]; then
    fail "--out $(printf '%q' "$out_arg"): no PNG at $(printf '%q' "$dir/compare.png")"
    grep -i "gnuplot\|line" log | head -5
    return
  fi
  echo "ok: --out $(printf '%q' "$out_arg")"
}
for name in "${names[@]}"; do
  check_run "$work/parent/$name" "$work/parent/$name"
done
check_run "-dash" "$work/-dash" # relative, with a leading dash
check_run "x';system('touch PWNED5');'" "$work/x';system('touch PWNED5');'" # relative: set output 'x' would work
pwned=$(find "$work" -name 'PWNED*')
if [ -n "$pwned" ]; then
  fail "a command hidden in --out ran: $pwned"
fi
echo "$failures failed"
[ "$failures" -eq 0 ]

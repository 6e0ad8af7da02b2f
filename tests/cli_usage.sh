#!/usr/bin/env bash
# The CLI's usage errors: exit code 2 and a usage message; --help exits 0;
# a runtime failure exits 1 with a message naming the problem.
set -u
syncbn=$1
failures=0
expect() { # expect CODE PATTERN -- ARGS...
  local want=$1 pattern=$2
  shift 3
  local output code
  output=$("$syncbn" "$@" 2>&1)
  code=$?
  if [ "$code" -ne "$want" ] || ! grep -q -- "$pattern" <<< "$output"; then
    echo "FAIL: syncbn $* -> exit $code (want $want), output lacks '$pattern':"
    echo "$output" | head -5
    failures=$((failures + 1))
  else
    echo "ok: syncbn $* -> $code"
  fi
}
expect 2 "usage: syncbn" --
expect 2 "unknown command" -- bogus
expect 0 "usage: syncbn" -- --help
expect 0 "--norm bn|sync|none" -- train --help
expect 0 "--ranks P" -- compare --help
expect 2 "usage:" -- train --bogus
expect 2 "must be bn, sync or none" -- train --norm foo
expect 2 "needs a non-negative integer" -- train --batch abc
expect 2 "needs a number" -- train --lr fast
expect 2 "must be seed or convnet" -- train --model resnet
expect 2 "unexpected argument" -- train extra
expect 2 "need --ranks >= 2 dividing --batch" -- compare --ranks 3 --batch 32
expect 2 "usage:" -- compare --bogus
expect 1 "/nonexistent/train-images-idx3-ubyte.gz" -- train --data /nonexistent --steps 1
expect 1 "group size 4 does not divide the 1 ranks" -- train --steps 1 --train-samples 64 --model seed --group-size 4
echo "$failures failed"
[ "$failures" -eq 0 ]

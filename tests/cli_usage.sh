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
expect 2 "--batch: 'abc' is not an integer" -- train --batch abc
expect 2 "--lr: 'fast' is not a number" -- train --lr fast
expect 2 "must be seed or convnet" -- train --model resnet
expect 2 "unexpected argument" -- train extra
expect 2 "need --ranks >= 2 dividing --batch" -- compare --ranks 3 --batch 32
expect 2 "usage:" -- compare --bogus
# Every numeric flag is parsed whole and range-checked: exit 2, naming the flag.
# (Each of these used to run, with the value truncated, wrapped or defaulted.)
expect 2 "--group-size: 'x' is not an integer" -- train --group-size x
expect 2 "--group-size: '0' is out of range" -- train --group-size 0
expect 2 "--timeout: '5abc' is not a number" -- train --timeout 5abc
expect 2 "--timeout: '-5' is out of range" -- train --timeout -5
expect 2 "--timeout: 'inf' is not a finite number" -- train --timeout inf
expect 2 "--ranks: '4abc' is not an integer" -- compare --ranks 4abc
expect 2 "--ranks: '4294967298' is out of range" -- compare --ranks 4294967298 --batch 2
expect 2 "--threads: '4294967297' is out of range" -- train --threads 4294967297
expect 2 "--threads: '0' is out of range" -- train --threads 0
expect 2 "--threads: '2x' is not an integer" -- compare --threads 2x
expect 2 "--lr: 'inf' is not a finite number" -- train --lr inf
expect 2 "--lr: 'nan' is not a finite number" -- train --lr nan
expect 2 "--lr: '0' is out of range" -- compare --lr 0
expect 2 "--lr: '1e999' is out of range" -- train --lr 1e999
expect 2 "--weight-decay: 'inf' is not a finite number" -- train --weight-decay inf
expect 2 "--weight-decay: '-1e-4' is out of range" -- train --weight-decay -1e-4
expect 2 "--momentum: '1' is out of range" -- train --momentum 1
expect 2 "--momentum: '0.9.1' is not a number" -- compare --momentum 0.9.1
expect 2 "--epochs: '9223372036854775807' is out of range" -- train --epochs 9223372036854775807 --steps 2
expect 2 "--epochs: '0' is out of range" -- train --epochs 0
expect 2 "--batch: '0' is out of range" -- train --batch 0
expect 2 "--batch: '-5' is out of range" -- train --batch -5
expect 2 "--batch: '99999999999999999999' is out of range" -- compare --batch 99999999999999999999
expect 2 "--batch: ' 8' is not an integer" -- train --batch " 8"
expect 2 "--steps: '' is not an integer" -- train --steps ""
expect 2 "--steps: '0' is out of range" -- train --steps 0
expect 2 "--train-samples: '1e3' is not an integer" -- compare --train-samples 1e3
expect 2 "--seed: '-1' is out of range" -- train --seed -1
expect 2 "--out: the value is empty" -- compare --out ""
expect 1 "/nonexistent/train-images-idx3-ubyte.gz" -- train --data /nonexistent --steps 1
expect 1 "group size 4 does not divide the 1 ranks" -- train --steps 1 --train-samples 64 --model seed --group-size 4
echo "$failures failed"
[ "$failures" -eq 0 ]

# The fuzz harnesses, one line each: syncbn_fuzzer(<name> <library sources it needs besides src/core/status.c>)
# for tests/fuzz/fuzz_<name>.c and its seed corpus tests/fuzz/corpus/<name>/. Read by tests/fuzz/CMakeLists.txt
# (libFuzzer runs, `make fuzz`) and by tests/fuzz/replay.cmake (corpus replay in the normal builds' ctest).
syncbn_fuzzer(idx src/data/idx.c)
syncbn_fuzzer(safetensors src/io/safetensors.c src/io/file.c src/core/element.c)

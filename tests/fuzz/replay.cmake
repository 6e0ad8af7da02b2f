# Included by tests/CMakeLists.txt: each harness of fuzzers.cmake, linked with a plain main() (replay.c) instead of
# libFuzzer, replays its committed corpus as the ctest fuzz_corpus_<name>, so every seed (crash regressions
# included) runs in the release and ASan builds too.
set(SYNCBN_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
function(syncbn_fuzzer name)
  add_executable(replay_${name} ${SYNCBN_FUZZ_DIR}/fuzz_${name}.c ${SYNCBN_FUZZ_DIR}/replay.c)
  target_link_libraries(replay_${name} PRIVATE syncbn_train_static)
  target_include_directories(replay_${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(replay_${name} PRIVATE ${SYNCBN_WARNINGS})
  add_test(NAME fuzz_corpus_${name} COMMAND replay_${name} ${SYNCBN_FUZZ_DIR}/corpus/${name})
endfunction()
include(${SYNCBN_FUZZ_DIR}/fuzzers.cmake)

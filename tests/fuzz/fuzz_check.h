#ifndef CHAT_TESTS_FUZZ_FUZZ_CHECK_H_
#define CHAT_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

// An invariant of the code under test; a violation is a finding, so abort
// (libFuzzer saves the input) rather than throw or return.
#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

#endif  // CHAT_TESTS_FUZZ_FUZZ_CHECK_H_

#ifndef CHAT_COMMON_SIGNALS_H_
#define CHAT_COMMON_SIGNALS_H_

#include <csignal>

namespace chat {

// Call first thing in main(), before any thread starts, so every thread
// inherits the mask and only WaitForTerminationSignal() sees SIGTERM/SIGINT.
inline void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

inline int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace chat

#endif  // CHAT_COMMON_SIGNALS_H_

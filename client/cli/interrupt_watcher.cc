// InterruptWatcher: Ctrl-C for long-running commands (events --follow). gRPC calls are not
// async-signal-safe, so no signal handler: the signals stay blocked and a thread takes them
// with sigwait, then cancels through ordinary thread-safe calls.
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <utility>

#include "cli.h"

namespace connectbroker::cli {

InterruptWatcher::InterruptWatcher(std::function<void()> on_interrupt)
    : on_interrupt_(std::move(on_interrupt)) {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  thread_ = std::thread([this] { Wait(); });
}

InterruptWatcher::~InterruptWatcher() {
  stopping_ = true;
  // Directed at the waiting thread: it wakes, sees stopping_ and returns.
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void InterruptWatcher::Wait() {
  bool interrupted = false;
  while (true) {
    int signal = 0;
    if (sigwait(&signals_, &signal) != 0 || stopping_) {
      return;
    }
    if (interrupted) {
      std::_Exit(128 + SIGINT);  // a second Ctrl-C: the user does not want to wait
    }
    interrupted = true;
    on_interrupt_();
  }
}

}  // namespace connectbroker::cli

// BROKER_CHECK(cond): an invariant of our own code. Logs and aborts when false. Never use it on
// anything the environment controls (input, files, the network).
#pragma once

#include <cstdlib>

#include "daemon/common/log.h"

#define BROKER_CHECK(cond)                                                        \
  do {                                                                            \
    if (!(cond)) {                                                                \
      CB_LOG(ERROR) << "invariant failed at " << __FILE__ << ":" << __LINE__      \
                    << ": " #cond;                                                \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status(Or), which Debian's abseil (20220623)
// lacks. Same shapes as upstream's, so they can be swapped out later.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CB_CONCAT_INNER_(a, b) a##b
#define CB_CONCAT_(a, b) CB_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status cb_status_ = (expr);        \
    if (!cb_status_.ok()) return cb_status_;   \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  CB_ASSIGN_OR_RETURN_IMPL_(CB_CONCAT_(cb_statusor_, __LINE__), lhs, expr)

#define CB_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

// Coroutine flavours (co_return instead of return).
#define CO_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::absl::Status cb_status_ = (expr);           \
    if (!cb_status_.ok()) co_return cb_status_;   \
  } while (0)

#define CO_ASSIGN_OR_RETURN(lhs, expr) \
  CB_CO_ASSIGN_OR_RETURN_IMPL_(CB_CONCAT_(cb_statusor_, __LINE__), lhs, expr)

#define CB_CO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)     \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) co_return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define OMNI_CONCAT_INNER_(a, b) a##b
#define OMNI_CONCAT_(a, b) OMNI_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::absl::Status omni_status_ = (expr);     \
    if (!omni_status_.ok()) return omni_status_; \
  } while (0)

// Assigns the value of a StatusOr expression to `lhs`, or returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(OMNI_CONCAT_(omni_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#pragma once

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace omniroute {

// Completion of an asynchronous service call. In-process implementations may call it
// before returning; gRPC client adapters call it on a gRPC thread, so a caller with an
// event loop posts the result back to its own executor.
template <typename T>
using Callback = absl::AnyInvocable<void(absl::StatusOr<T>)>;

}  // namespace omniroute

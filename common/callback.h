#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"

namespace omniroute {

// Completion of an asynchronous service call. In-process implementations may call it
// before returning; gRPC client adapters call it on a gRPC thread, so a caller with an
// event loop posts the result back to its own executor.
template <typename T>
using Callback = absl::AnyInvocable<void(absl::StatusOr<T>)>;

// Calls `start` with a Callback<T> and waits up to `timeout` for its result
// (DeadlineExceeded after that; a late result is dropped). Only for threads that may block,
// never an event loop.
template <typename T, typename Start>
absl::StatusOr<T> AwaitCallback(Start&& start, std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<T>>>();
  std::future<absl::StatusOr<T>> result = promise->get_future();
  std::forward<Start>(start)(
      Callback<T>([promise](absl::StatusOr<T> r) { promise->set_value(std::move(r)); }));
  if (result.wait_for(timeout) != std::future_status::ready) {
    return absl::DeadlineExceededError("no answer in time");
  }
  return result.get();
}

}  // namespace omniroute

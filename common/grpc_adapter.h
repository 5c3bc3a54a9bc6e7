#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "absl/functional/function_ref.h"
#include "common/callback.h"
#include "common/grpc_util.h"

// Helpers shared by the gRPC adapters of the services (callback API on both sides).
namespace omniroute::grpc_adapter {

// Finishes a unary server call exactly once: with the implementation's result, with
// INTERNAL when the implementation throws, or with INTERNAL when it drops its callback.
template <typename Response>
class UnaryCompletion {
 public:
  UnaryCompletion(grpc::ServerUnaryReactor* reactor, Response* response)
      : reactor_(reactor), response_(response) {}
  UnaryCompletion(const UnaryCompletion&) = delete;
  UnaryCompletion& operator=(const UnaryCompletion&) = delete;

  ~UnaryCompletion() {
    Finish(grpc::Status(grpc::StatusCode::INTERNAL, "the call was dropped without an answer"));
  }

  void Complete(absl::StatusOr<Response> result) {
    if (finished_.exchange(true)) {
      return;
    }
    if (result.ok()) {
      *response_ = std::move(result).value();
      reactor_->Finish(grpc::Status::OK);
    } else {
      reactor_->Finish(ToGrpcStatus(result.status()));
    }
  }

  void Finish(const grpc::Status& status) {
    if (!finished_.exchange(true)) {
      reactor_->Finish(status);
    }
  }

 private:
  grpc::ServerUnaryReactor* reactor_;
  Response* response_;
  std::atomic<bool> finished_{false};
};

// Serves a unary call whose implementation answers through a Callback: `start` receives the
// callback to hand to the implementation. Returns the reactor to give back to gRPC.
template <typename Response>
grpc::ServerUnaryReactor* ServeUnary(grpc::CallbackServerContext* context, Response* response,
                                     absl::FunctionRef<void(Callback<Response>)> start) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto completion = std::make_shared<UnaryCompletion<Response>>(reactor, response);
  try {
    start(
        [completion](absl::StatusOr<Response> result) { completion->Complete(std::move(result)); });
  } catch (const std::exception& e) {
    completion->Finish(grpc::Status(grpc::StatusCode::INTERNAL, e.what()));
  } catch (...) {
    completion->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "unknown exception"));
  }
  return reactor;
}

// Serves a unary call whose implementation answers at once.
inline grpc::ServerUnaryReactor* ServeNow(grpc::CallbackServerContext* context,
                                          absl::FunctionRef<void()> body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  try {
    body();
    reactor->Finish(grpc::Status::OK);
  } catch (const std::exception& e) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, e.what()));
  } catch (...) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "unknown exception"));
  }
  return reactor;
}

// How long a client adapter's destructor lets its calls in flight finish before cancelling.
inline constexpr std::chrono::milliseconds kClientDrainGrace{2000};

// The calls a client adapter has in flight, so that its destructor can wait for them: a
// process must not exit while gRPC still runs callbacks of its calls.
class InFlightCalls {
 public:
  void Begin(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    contexts_.insert(context);
  }

  // Called after the call's completion ran; the context may be destroyed afterwards.
  void End(grpc::ClientContext* context) {
    std::lock_guard<std::mutex> lock(mu_);
    contexts_.erase(context);
    if (contexts_.empty()) {
      idle_.notify_all();
    }
  }

  // Waits up to `grace` for the calls in flight to complete, then cancels the rest and waits
  // up to `grace` again for their completions. Returns whether none is left.
  bool Drain(std::chrono::milliseconds grace) {
    std::unique_lock<std::mutex> lock(mu_);
    if (idle_.wait_for(lock, grace, [&] { return contexts_.empty(); })) {
      return true;
    }
    for (grpc::ClientContext* context : contexts_) {
      context->TryCancel();
    }
    return idle_.wait_for(lock, grace, [&] { return contexts_.empty(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  std::unordered_set<grpc::ClientContext*> contexts_;
};

// The state of one client call; lives on the heap until its completion runs.
template <typename Request, typename Response>
struct UnaryCall {
  grpc::ClientContext context;
  Request request;
  Response response;
  Callback<Response> done;
  std::shared_ptr<InFlightCalls> in_flight;
};

// Sets the deadline and the request id (when not empty) of an outgoing call.
inline void PrepareContext(grpc::ClientContext& context, std::chrono::milliseconds timeout,
                           std::string_view request_id) {
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  if (!request_id.empty()) {
    context.AddMetadata(kRequestIdMetadata, std::string(request_id));
  }
}

// Starts an asynchronous unary call: `method(context, request, response, on_done)` is the
// stub's async() method, e.g.
//   [&](auto... a) { stub_->async()->Plan(a...); }
// `done` runs on a gRPC thread with the response or the call's status. The call counts in
// `in_flight` until `done` has returned.
template <typename Response, typename Request, typename Method>
void CallUnary(const std::shared_ptr<InFlightCalls>& in_flight, Method&& method, Request request,
               Callback<Response> done, std::chrono::milliseconds timeout,
               std::string_view request_id = {}) {
  auto* call = new UnaryCall<Request, Response>();
  PrepareContext(call->context, timeout, request_id);
  call->request = std::move(request);
  call->done = std::move(done);
  call->in_flight = in_flight;
  in_flight->Begin(&call->context);
  method(&call->context, &call->request, &call->response, [call](grpc::Status status) {
    std::unique_ptr<UnaryCall<Request, Response>> owned(call);
    if (status.ok()) {
      owned->done(std::move(owned->response));
    } else {
      owned->done(FromGrpcStatus(status));
    }
    owned->in_flight->End(&owned->context);
  });
}

}  // namespace omniroute::grpc_adapter

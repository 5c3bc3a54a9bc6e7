#include "grpc_translator.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <utility>

#include "common/grpc_adapter.h"
#include "omniroute/translator/v1/translator.grpc.pb.h"

namespace omniroute::translator {
namespace grpc_translator_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

constexpr auto kTranslateTimeout = 30s;

// Server side of one TranslateStream call: reads a chunk, pushes it through the translation,
// writes one answer, reads the next. Deletes itself when the call is done.
class ServerStream final : public grpc::ServerBidiReactor<v1::StreamChunk, v1::StreamChunk> {
 public:
  explicit ServerStream(Translator* impl) : impl_(impl) { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client closed its side (or went away) before a chunk marked last.
      Finish(grpc::Status::OK);
      return;
    }
    try {
      if (translation_ == nullptr) {
        if (in_.from() == common::v1::FORMAT_UNSPECIFIED ||
            in_.to() == common::v1::FORMAT_UNSPECIFIED) {
          Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              "the first stream chunk must carry from and to"));
          return;
        }
        translation_ = impl_->OpenStream(in_.from(), in_.to(), in_.model());
        if (translation_ == nullptr) {
          Finish(grpc::Status(grpc::StatusCode::INTERNAL, "no stream translation"));
          return;
        }
      }
      last_ = in_.last();
      answered_.store(false);
      translation_->Push(std::move(*in_.mutable_data()), last_,
                         [this](absl::StatusOr<std::string> out) { Answer(std::move(out)); });
    } catch (const std::exception& e) {
      FailUnanswered(e.what());
    } catch (...) {
      FailUnanswered("unknown exception");
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    StartRead(&in_);
  }

  void OnDone() override { delete this; }

 private:
  void Answer(absl::StatusOr<std::string> out) {
    if (answered_.exchange(true)) {
      return;
    }
    if (!out.ok()) {
      Finish(ToGrpcStatus(out.status()));
      return;
    }
    out_.Clear();
    out_.set_data(std::move(out).value());
    out_.set_last(last_);
    if (last_) {
      StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(&out_);
    }
  }

  void FailUnanswered(const char* what) {
    if (!answered_.exchange(true)) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, what));
    }
  }

  Translator* impl_;
  StreamTranslationPtr translation_;
  v1::StreamChunk in_;
  v1::StreamChunk out_;
  bool last_ = false;
  std::atomic<bool> answered_{false};
};

class TranslatorGrpcService final : public v1::Translator::CallbackService {
 public:
  explicit TranslatorGrpcService(TranslatorPtr impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* TranslateRequest(grpc::CallbackServerContext* context,
                                             const v1::TranslateRequestIn* request,
                                             v1::TranslateRequestOut* response) override {
    return ServeUnary<v1::TranslateRequestOut>(context, response,
                                               [&](Callback<v1::TranslateRequestOut> done) {
                                                 impl_->TranslateRequest(*request, std::move(done));
                                               });
  }

  grpc::ServerUnaryReactor* TranslateResponse(grpc::CallbackServerContext* context,
                                              const v1::TranslateResponseIn* request,
                                              v1::TranslateResponseOut* response) override {
    return ServeUnary<v1::TranslateResponseOut>(
        context, response, [&](Callback<v1::TranslateResponseOut> done) {
          impl_->TranslateResponse(*request, std::move(done));
        });
  }

  grpc::ServerBidiReactor<v1::StreamChunk, v1::StreamChunk>* TranslateStream(
      grpc::CallbackServerContext* context) override {
    return new ServerStream(impl_.get());
  }

 private:
  TranslatorPtr impl_;
};

// Client side of one TranslateStream call. Owns itself until OnDone; the StreamTranslation
// handed to the caller shares ownership so that it can cancel the call at any time.
//
// A hold keeps the call open between pushes; it is released after the last chunk is written,
// when the stream breaks, or when the caller abandons the stream. At most one write and one
// read are outstanding; a write requested while another is in flight waits in `writes_`.
class ClientStream final : public grpc::ClientBidiReactor<v1::StreamChunk, v1::StreamChunk> {
 public:
  static std::shared_ptr<ClientStream> Start(v1::Translator::Stub* stub,
                                             std::shared_ptr<grpc_adapter::InFlightCalls> in_flight,
                                             Format from, Format to, const std::string& model) {
    std::shared_ptr<ClientStream> call(new ClientStream(std::move(in_flight), from, to, model));
    call->self_ = call;
    call->in_flight_->Begin(&call->context_);
    stub->async()->TranslateStream(&call->context_, call.get());
    call->AddHold();
    call->StartCall();
    return call;
  }

  void Push(std::string data, bool last, Callback<std::string> done) {
    bool write = false;
    bool release_hold = false;
    absl::Status refused;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (pending_) {
        refused = absl::FailedPreconditionError("a push is still pending on this stream");
      } else if (!holding_) {
        refused = !final_status_.ok()
                      ? final_status_
                      : absl::FailedPreconditionError("the translation stream is closed");
      } else {
        v1::StreamChunk chunk;
        if (!sent_first_) {
          sent_first_ = true;
          chunk.set_from(from_);
          chunk.set_to(to_);
          chunk.set_model(model_);
        }
        chunk.set_data(std::move(data));
        chunk.set_last(last);
        pending_ = std::move(done);
        if (writing_) {
          writes_.push_back(std::move(chunk));
        } else {
          writing_ = true;
          out_ = std::move(chunk);
          write = true;
        }
        if (last) {
          last_pushed_ = true;
          holding_ = false;
          release_hold = true;
        }
      }
    }
    if (!refused.ok()) {
      done(refused);
      return;
    }
    if (write) {
      StartWrite(&out_, WriteOptionsFor(out_));
    }
    StartRead(&in_);
    if (release_hold) {
      RemoveHold();
    }
  }

  // The caller no longer wants the stream: cancels it unless it completed, and lets the call
  // finish. A pending push is still answered (with CANCELLED).
  void Abandon() {
    bool release_hold = false;
    bool cancel = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (holding_) {
        holding_ = false;
        release_hold = true;
      }
      cancel = !finished_ && (!last_pushed_ || pending_);
    }
    if (cancel) {
      context_.TryCancel();
    }
    if (release_hold) {
      RemoveHold();
    }
  }

  void OnWriteDone(bool ok) override {
    bool write = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!ok || writes_.empty()) {
        // A failed write means the stream broke: the outstanding read fails as well.
        writes_.clear();
        writing_ = false;
      } else {
        out_ = std::move(writes_.front());
        writes_.pop_front();
        write = true;
      }
    }
    if (write) {
      StartWrite(&out_, WriteOptionsFor(out_));
    }
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      Callback<std::string> done;
      std::string data;
      {
        std::lock_guard<std::mutex> lock(mu_);
        done = std::move(pending_);
        pending_ = nullptr;
        data = std::move(*in_.mutable_data());
      }
      if (done) {
        done(std::move(data));
      }
      return;
    }
    // The server finished or the call broke; OnDone delivers the status to a pending push.
    bool release_hold = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (holding_) {
        holding_ = false;
        release_hold = true;
      }
    }
    if (release_hold) {
      RemoveHold();
    }
  }

  void OnDone(const grpc::Status& status) override {
    Callback<std::string> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished_ = true;
      final_status_ = status.ok() ? absl::FailedPreconditionError("the translation stream ended")
                                  : FromGrpcStatus(status);
      done = std::move(pending_);
      pending_ = nullptr;
    }
    if (done) {
      done(status.ok() ? absl::InternalError("the translator ended the stream without an answer")
                       : FromGrpcStatus(status));
    }
    in_flight_->End(&context_);
    // Releases this call's own reference last; the object may be deleted here.
    std::shared_ptr<ClientStream> self = std::move(self_);
  }

 private:
  ClientStream(std::shared_ptr<grpc_adapter::InFlightCalls> in_flight, Format from, Format to,
               const std::string& model)
      : in_flight_(std::move(in_flight)), from_(from), to_(to), model_(model) {}

  static grpc::WriteOptions WriteOptionsFor(const v1::StreamChunk& chunk) {
    grpc::WriteOptions options;
    if (chunk.last()) {
      options.set_last_message();
    }
    return options;
  }

  const std::shared_ptr<grpc_adapter::InFlightCalls> in_flight_;
  const Format from_;
  const Format to_;
  const std::string model_;
  grpc::ClientContext context_;
  std::shared_ptr<ClientStream> self_;

  std::mutex mu_;
  v1::StreamChunk out_;  // the write in flight
  v1::StreamChunk in_;   // the read in flight
  std::deque<v1::StreamChunk> writes_;
  Callback<std::string> pending_;
  absl::Status final_status_;
  bool sent_first_ = false;
  bool writing_ = false;
  bool holding_ = true;
  bool last_pushed_ = false;
  bool finished_ = false;
};

class GrpcStreamTranslation final : public StreamTranslation {
 public:
  explicit GrpcStreamTranslation(std::shared_ptr<ClientStream> call) : call_(std::move(call)) {}
  ~GrpcStreamTranslation() override { call_->Abandon(); }

  // Interface
  void Push(std::string data, bool last, Callback<std::string> done) override {
    call_->Push(std::move(data), last, std::move(done));
  }

 private:
  std::shared_ptr<ClientStream> call_;
};

class TranslatorGrpcClient final : public Translator {
 public:
  explicit TranslatorGrpcClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Translator::NewStub(std::move(channel))) {}

  ~TranslatorGrpcClient() override { in_flight_->Drain(grpc_adapter::kClientDrainGrace); }

  // Interface
  void TranslateRequest(const v1::TranslateRequestIn& in,
                        Callback<v1::TranslateRequestOut> done) override {
    CallUnary<v1::TranslateRequestOut>(
        in_flight_, [this](auto... a) { stub_->async()->TranslateRequest(a...); }, in,
        std::move(done), kTranslateTimeout);
  }

  void TranslateResponse(const v1::TranslateResponseIn& in,
                         Callback<v1::TranslateResponseOut> done) override {
    CallUnary<v1::TranslateResponseOut>(
        in_flight_, [this](auto... a) { stub_->async()->TranslateResponse(a...); }, in,
        std::move(done), kTranslateTimeout);
  }

  StreamTranslationPtr OpenStream(Format from, Format to, const std::string& model) override {
    return std::make_unique<GrpcStreamTranslation>(
        ClientStream::Start(stub_.get(), in_flight_, from, to, model));
  }

 private:
  std::unique_ptr<v1::Translator::Stub> stub_;
  std::shared_ptr<grpc_adapter::InFlightCalls> in_flight_ =
      std::make_shared<grpc_adapter::InFlightCalls>();
};

}  // namespace
}  // namespace grpc_translator_impl

std::unique_ptr<grpc::Service> MakeTranslatorGrpcService(TranslatorPtr impl) {
  return std::make_unique<grpc_translator_impl::TranslatorGrpcService>(std::move(impl));
}

TranslatorPtr MakeTranslatorGrpcClient(std::shared_ptr<grpc::Channel> channel) {
  return std::make_shared<grpc_translator_impl::TranslatorGrpcClient>(std::move(channel));
}

}  // namespace omniroute::translator

#include "grpc_translator.h"

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"

namespace omniroute::translator {
namespace {

using namespace std::chrono_literals;

std::atomic<int> g_open_streams{0};

// Upper-cases each chunk, prefixed by the stream's model; "fail" fails the stream.
class FakeStream final : public StreamTranslation {
 public:
  explicit FakeStream(std::string model) : model_(std::move(model)) { ++g_open_streams; }
  ~FakeStream() override { --g_open_streams; }

  void Push(std::string data, bool last, Callback<std::string> done) override {
    if (data == "fail") {
      done(absl::InvalidArgumentError("bad chunk"));
      return;
    }
    if (data.empty() && !last) {
      done(std::string());
      return;
    }
    std::string out = absl::StrCat(model_, ":", absl::AsciiStrToUpper(data));
    if (last) {
      out += "[end]";
    }
    done(std::move(out));
  }

 private:
  std::string model_;
};

class FakeTranslator final : public Translator {
 public:
  void TranslateRequest(const v1::TranslateRequestIn& in,
                        Callback<v1::TranslateRequestOut> done) override {
    if (in.body() == "boom") {
      done(absl::NotFoundError("no such thing"));
      return;
    }
    v1::TranslateRequestOut out;
    out.set_body(absl::StrCat("req:", in.body(), ":", in.upstream_model(), ":", in.from(), ">",
                              in.to(), in.stream() ? ":stream" : ""));
    out.set_path("/messages");
    done(std::move(out));
  }

  void TranslateResponse(const v1::TranslateResponseIn& in,
                         Callback<v1::TranslateResponseOut> done) override {
    if (in.body() == "throw") {
      throw std::runtime_error("translator bug");
    }
    v1::TranslateResponseOut out;
    out.set_body(absl::StrCat("resp:", in.body(), ":", in.model()));
    done(std::move(out));
  }

  StreamTranslationPtr OpenStream(Format from, Format to, const std::string& model) override {
    last_from_ = from;
    last_to_ = to;
    return std::make_unique<FakeStream>(model);
  }

  std::atomic<Format> last_from_{common::v1::FORMAT_UNSPECIFIED};
  std::atomic<Format> last_to_{common::v1::FORMAT_UNSPECIFIED};
};

class GrpcTranslatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = std::make_shared<FakeTranslator>();
    service_ = MakeTranslatorGrpcService(fake_);
    int port = 0;
    server_ = StartGrpcServer("127.0.0.1:0", {service_.get()}, &port);
    ASSERT_NE(server_, nullptr);
    client_ = MakeTranslatorGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));
  }

  void TearDown() override {
    client_.reset();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + 2s);
    }
  }

  static absl::StatusOr<std::string> PushAndWait(StreamTranslation& s, std::string data,
                                                 bool last) {
    std::promise<absl::StatusOr<std::string>> p;
    s.Push(std::move(data), last,
           [&](absl::StatusOr<std::string> r) { p.set_value(std::move(r)); });
    auto f = p.get_future();
    if (f.wait_for(10s) != std::future_status::ready) {
      return absl::DeadlineExceededError("test timeout");
    }
    return f.get();
  }

  static bool WaitForNoOpenStreams() {
    for (int i = 0; i < 200; ++i) {
      if (g_open_streams.load() == 0) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::shared_ptr<FakeTranslator> fake_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  TranslatorPtr client_;
};

TEST_F(GrpcTranslatorTest, TranslatesRequestsAndResponses) {
  v1::TranslateRequestIn in;
  in.set_from(common::v1::FORMAT_OPENAI_CHAT);
  in.set_to(common::v1::FORMAT_ANTHROPIC);
  in.set_body("{}");
  in.set_upstream_model("claude");
  in.set_stream(true);
  std::promise<absl::StatusOr<v1::TranslateRequestOut>> p1;
  client_->TranslateRequest(in, [&](auto r) { p1.set_value(std::move(r)); });
  absl::StatusOr<v1::TranslateRequestOut> out = p1.get_future().get();
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->body(), "req:{}:claude:1>3:stream");
  EXPECT_EQ(out->path(), "/messages");

  v1::TranslateResponseIn rin;
  rin.set_body("x");
  rin.set_model("m");
  std::promise<absl::StatusOr<v1::TranslateResponseOut>> p2;
  client_->TranslateResponse(rin, [&](auto r) { p2.set_value(std::move(r)); });
  absl::StatusOr<v1::TranslateResponseOut> rout = p2.get_future().get();
  ASSERT_TRUE(rout.ok()) << rout.status();
  EXPECT_EQ(rout->body(), "resp:x:m");
}

TEST_F(GrpcTranslatorTest, CarriesErrorsAndContainsExceptions) {
  v1::TranslateRequestIn in;
  in.set_body("boom");
  std::promise<absl::StatusOr<v1::TranslateRequestOut>> p1;
  client_->TranslateRequest(in, [&](auto r) { p1.set_value(std::move(r)); });
  absl::StatusOr<v1::TranslateRequestOut> out = p1.get_future().get();
  EXPECT_EQ(out.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(out.status().message(), "no such thing");

  v1::TranslateResponseIn rin;
  rin.set_body("throw");
  std::promise<absl::StatusOr<v1::TranslateResponseOut>> p2;
  client_->TranslateResponse(rin, [&](auto r) { p2.set_value(std::move(r)); });
  EXPECT_EQ(p2.get_future().get().status().code(), absl::StatusCode::kInternal);
}

TEST_F(GrpcTranslatorTest, StreamsOneAnswerPerChunk) {
  StreamTranslationPtr s =
      client_->OpenStream(common::v1::FORMAT_ANTHROPIC, common::v1::FORMAT_OPENAI_CHAT, "m1");
  absl::StatusOr<std::string> a = PushAndWait(*s, "abc", false);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "m1:ABC");
  EXPECT_EQ(fake_->last_from_.load(), common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ(fake_->last_to_.load(), common::v1::FORMAT_OPENAI_CHAT);
  a = PushAndWait(*s, "", false);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "");
  a = PushAndWait(*s, "def", false);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "m1:DEF");
  a = PushAndWait(*s, "", true);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "m1:[end]");
  // The stream is over.
  EXPECT_FALSE(PushAndWait(*s, "more", false).ok());
  s.reset();
  EXPECT_TRUE(WaitForNoOpenStreams());
}

TEST_F(GrpcTranslatorTest, StreamErrorsReachThePendingPush) {
  StreamTranslationPtr s =
      client_->OpenStream(common::v1::FORMAT_GEMINI, common::v1::FORMAT_OPENAI_CHAT, "g");
  ASSERT_TRUE(PushAndWait(*s, "ok", false).ok());
  absl::StatusOr<std::string> a = PushAndWait(*s, "fail", false);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.status().message(), "bad chunk");
  a = PushAndWait(*s, "after", false);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  s.reset();
  EXPECT_TRUE(WaitForNoOpenStreams());
}

TEST_F(GrpcTranslatorTest, FirstChunkMustNameTheFormats) {
  StreamTranslationPtr s =
      client_->OpenStream(common::v1::FORMAT_UNSPECIFIED, common::v1::FORMAT_OPENAI_CHAT, "m");
  EXPECT_EQ(PushAndWait(*s, "x", false).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(GrpcTranslatorTest, AbandoningAStreamCancelsIt) {
  StreamTranslationPtr s =
      client_->OpenStream(common::v1::FORMAT_ANTHROPIC, common::v1::FORMAT_OPENAI_CHAT, "m");
  ASSERT_TRUE(PushAndWait(*s, "a", false).ok());
  EXPECT_EQ(g_open_streams.load(), 1);
  s.reset();
  EXPECT_TRUE(WaitForNoOpenStreams());
  // Never pushed at all.
  s = client_->OpenStream(common::v1::FORMAT_ANTHROPIC, common::v1::FORMAT_OPENAI_CHAT, "m");
  s.reset();
}

TEST_F(GrpcTranslatorTest, PushesFromCallbacksAndDestroysInTheLastOne) {
  StreamTranslationPtr s =
      client_->OpenStream(common::v1::FORMAT_ANTHROPIC, common::v1::FORMAT_OPENAI_CHAT, "m");
  std::promise<std::string> result;
  std::string collected;
  std::function<void(int)> push = [&](int i) {
    const bool last = i == 4;
    s->Push(std::to_string(i), last, [&, i, last](absl::StatusOr<std::string> r) {
      if (!r.ok()) {
        result.set_value(std::string(r.status().message()));
        return;
      }
      collected += *r + ";";
      if (last) {
        s.reset();  // from inside the callback
        result.set_value(collected);
      } else {
        push(i + 1);
      }
    });
  };
  push(0);
  auto f = result.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), "m:0;m:1;m:2;m:3;m:4[end];");
  EXPECT_TRUE(WaitForNoOpenStreams());
}

TEST_F(GrpcTranslatorTest, ManyConcurrentStreams) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 5; ++k) {
        const std::string model = absl::StrCat("s", t, "_", k);
        StreamTranslationPtr s = client_->OpenStream(common::v1::FORMAT_ANTHROPIC,
                                                     common::v1::FORMAT_OPENAI_CHAT, model);
        for (int i = 0; i < 20; ++i) {
          absl::StatusOr<std::string> r = PushAndWait(*s, "x", i == 19);
          const std::string want = absl::StrCat(model, ":X", i == 19 ? "[end]" : "");
          if (!r.ok() || *r != want) {
            ++failures;
          }
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(WaitForNoOpenStreams());
}

}  // namespace
}  // namespace omniroute::translator

#include "grpc_usage.h"

#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"

namespace omniroute::usage {
namespace {

using namespace std::chrono_literals;

class FakeUsage final : public Usage {
 public:
  void Record(v1::UsageRecord record) override {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.push_back(record.request_id());
  }

  void CheckBudget(const v1::CheckBudgetRequest& request,
                   Callback<v1::BudgetDecision> done) override {
    v1::BudgetDecision d;
    d.set_allowed(request.estimated_cost_usd() < 1.0);
    d.set_message(request.client_key_id());
    done(std::move(d));
  }

  void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) override {
    if (request.limit() < 0) {
      done(absl::InvalidArgumentError("negative limit"));
      return;
    }
    v1::QueryResponse r;
    r.set_total_requests(static_cast<int64_t>(ids().size()));
    done(std::move(r));
  }

  size_t Flush(std::chrono::milliseconds) override { return 0; }

  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> ids_;
};

v1::UsageRecord MakeRecord(int i) {
  v1::UsageRecord r;
  r.set_request_id(absl::StrCat("r", i));
  r.set_input_tokens(i);
  return r;
}

std::vector<std::string> Ids(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) {
    out.push_back(absl::StrCat("r", i));
  }
  return out;
}

class GrpcUsageTest : public ::testing::Test {
 protected:
  void SetUp() override { fake_ = std::make_shared<FakeUsage>(); }

  void TearDown() override { Stop(); }

  // Serves the fake on `port` (0 = any); returns the bound port.
  int Serve(int port = 0) {
    service_ = MakeUsageGrpcService(fake_);
    int bound = 0;
    server_ = StartGrpcServer(absl::StrCat("127.0.0.1:", port), {service_.get()}, &bound);
    EXPECT_NE(server_, nullptr);
    return bound;
  }

  void Stop() {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + 1s);
      server_.reset();
    }
  }

  UsagePtr Client(int port, UsageClientOptions options = {}) {
    return MakeUsageGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)), options);
  }

  std::shared_ptr<FakeUsage> fake_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(GrpcUsageTest, DeliversEveryRecordInOrder) {
  UsagePtr client = Client(Serve());
  for (int i = 0; i < 1234; ++i) {
    client->Record(MakeRecord(i));
  }
  EXPECT_EQ(client->Flush(10s), 0u);
  EXPECT_EQ(fake_->ids(), Ids(0, 1234));
}

TEST_F(GrpcUsageTest, APartialBatchLeavesAfterTheBatchDelay) {
  UsageClientOptions options;
  options.batch_delay = 20ms;
  UsagePtr client = Client(Serve(), options);
  client->Record(MakeRecord(1));
  for (int i = 0; i < 200 && fake_->ids().empty(); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(fake_->ids(), Ids(1, 2));
}

TEST_F(GrpcUsageTest, RetriesWhileTheServiceIsDownAndKeepsOrder) {
  const int port = Serve();
  Stop();
  UsageClientOptions options;
  options.retry_max = 200ms;
  UsagePtr client = Client(port, options);
  for (int i = 0; i < 700; ++i) {
    client->Record(MakeRecord(i));
  }
  EXPECT_EQ(client->Flush(300ms), 700u);
  ASSERT_EQ(Serve(port), port);
  for (int i = 700; i < 800; ++i) {
    client->Record(MakeRecord(i));
  }
  EXPECT_EQ(client->Flush(10s), 0u);
  EXPECT_EQ(fake_->ids(), Ids(0, 800));
}

TEST_F(GrpcUsageTest, DropsTheOldestWhenTheQueueIsFull) {
  const int port = Serve();
  Stop();
  UsageClientOptions options;
  options.max_queued = 10;
  options.batch_size = 5;
  options.retry_max = 100ms;
  UsagePtr client = Client(port, options);
  for (int i = 0; i < 25; ++i) {
    client->Record(MakeRecord(i));
  }
  // One batch of 5 may already be in flight (retrying) besides the 10 queued.
  const size_t pending = client->Flush(200ms);
  EXPECT_GE(pending, 10u);
  EXPECT_LE(pending, 15u);
  ASSERT_EQ(Serve(port), port);
  EXPECT_EQ(client->Flush(10s), 0u);
  const std::vector<std::string> got = fake_->ids();
  ASSERT_GE(got.size(), 10u);
  // The newest ten always survive, in order.
  EXPECT_EQ(std::vector<std::string>(got.end() - 10, got.end()), Ids(15, 25));
}

TEST_F(GrpcUsageTest, DestructionDoesNotHangWhileUnreachable) {
  const int port = Serve();
  Stop();
  UsageClientOptions options;
  options.flush_on_destroy = 100ms;
  UsagePtr client = Client(port, options);
  client->Record(MakeRecord(1));
  const auto start = std::chrono::steady_clock::now();
  client.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(GrpcUsageTest, ChecksBudgetsAndQueries) {
  UsagePtr client = Client(Serve());
  v1::CheckBudgetRequest req;
  req.set_client_key_id("k1");
  req.set_estimated_cost_usd(0.5);
  std::promise<absl::StatusOr<v1::BudgetDecision>> p;
  client->CheckBudget(req, [&](auto r) { p.set_value(std::move(r)); });
  absl::StatusOr<v1::BudgetDecision> d = p.get_future().get();
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->allowed());
  EXPECT_EQ(d->message(), "k1");

  client->Record(MakeRecord(7));
  client->Flush(5s);
  v1::QueryRequest q;
  std::promise<absl::StatusOr<v1::QueryResponse>> p2;
  client->Query(q, [&](auto r) { p2.set_value(std::move(r)); });
  absl::StatusOr<v1::QueryResponse> r = p2.get_future().get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->total_requests(), 1);

  q.set_limit(-1);
  std::promise<absl::StatusOr<v1::QueryResponse>> p3;
  client->Query(q, [&](auto r) { p3.set_value(std::move(r)); });
  EXPECT_EQ(p3.get_future().get().status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omniroute::usage

#include "grpc_usage.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
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

  void Reserve(const v1::ReserveRequest& request, Callback<v1::Reservation> done) override {
    v1::Reservation r;
    r.set_allowed(request.estimated_input_tokens() < 1000);
    r.set_message(request.client_key_id());
    r.set_id("res-" + request.request_id());
    done(std::move(r));
  }

  void Settle(const v1::SettleRequest& request, Callback<v1::SettleResponse> done) override {
    v1::SettleResponse r;
    r.set_found(request.reservation_id().rfind("res-", 0) == 0);
    done(std::move(r));
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

  void Stats(const v1::StatsRequest&, Callback<v1::StatsResponse> done) override {
    done(v1::StatsResponse());
  }
  void ListPricing(Callback<v1::PricingList> done) override { done(v1::PricingList()); }
  void UpsertPricing(const v1::PricingEntry& e, Callback<v1::PricingEntry> done) override {
    done(e);
  }
  void DeletePricing(const v1::DeletePricingRequest&, Callback<v1::Ack> done) override {
    done(absl::NotFoundError("no such entry"));
  }
  void ListBudgets(const v1::ListBudgetsRequest&, Callback<v1::BudgetList> done) override {
    done(v1::BudgetList());
  }
  void SetBudget(const v1::Budget& b, Callback<v1::BudgetStatus> done) override {
    v1::BudgetStatus s;
    *s.mutable_budget() = b;
    done(std::move(s));
  }
  void DeleteBudget(const v1::DeleteBudgetRequest&, Callback<v1::Ack> done) override {
    done(v1::Ack());
  }
  void Metrics(Callback<v1::MetricsResponse> done) override {
    v1::MetricsResponse m;
    m.set_text("omniroute_usage_fake 1\n");
    done(std::move(m));
  }
  void ExportDatabase(const std::string& kind, Callback<v1::DataChunk> done) override {
    v1::DataChunk c;
    c.set_data(big_);
    c.set_filename(kind + ".bin");
    c.set_content_type("application/octet-stream");
    done(std::move(c));
  }
  void ImportDatabase(std::string data, Callback<v1::ImportResult> done) override {
    v1::ImportResult r;
    r.set_ok(data == big_);
    r.set_records(static_cast<int64_t>(data.size()));
    done(std::move(r));
  }

  size_t Flush(std::chrono::milliseconds) override { return 0; }

  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }

  // Larger than one chunk, so that transfers take several calls.
  const std::string big_ = std::string(2500000, 'z') + "end";

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

TEST_F(GrpcUsageTest, ReservesSettlesAndQueries) {
  UsagePtr client = Client(Serve());
  v1::ReserveRequest req;
  req.set_client_key_id("k1");
  req.set_request_id("q");
  req.set_estimated_input_tokens(10);
  std::promise<absl::StatusOr<v1::Reservation>> p;
  client->Reserve(req, [&](auto r) { p.set_value(std::move(r)); });
  absl::StatusOr<v1::Reservation> d = p.get_future().get();
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->allowed());
  EXPECT_EQ(d->message(), "k1");
  v1::SettleRequest s;
  s.set_reservation_id(d->id());
  std::promise<absl::StatusOr<v1::SettleResponse>> ps;
  client->Settle(s, [&](auto r) { ps.set_value(std::move(r)); });
  EXPECT_TRUE(ps.get_future().get()->found());

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

  v1::DeletePricingRequest del;
  std::promise<absl::StatusOr<v1::Ack>> p4;
  client->DeletePricing(del, [&](auto r) { p4.set_value(std::move(r)); });
  EXPECT_EQ(p4.get_future().get().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GrpcUsageTest, TransfersDatabasesInChunks) {
  UsagePtr client = Client(Serve());
  std::promise<absl::StatusOr<v1::DataChunk>> p;
  client->ExportDatabase("all", [&](auto r) { p.set_value(std::move(r)); });
  absl::StatusOr<v1::DataChunk> file = p.get_future().get();
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->data(), fake_->big_);
  EXPECT_EQ(file->filename(), "all.bin");
  std::promise<absl::StatusOr<v1::ImportResult>> p2;
  client->ImportDatabase(fake_->big_, [&](auto r) { p2.set_value(std::move(r)); });
  absl::StatusOr<v1::ImportResult> result = p2.get_future().get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->ok());
  EXPECT_EQ(result->records(), static_cast<int64_t>(fake_->big_.size()));
}

TEST_F(GrpcUsageTest, MetricsIncludeTheClientsOwnEvenWhenTheServiceIsDown) {
  const int port = Serve();
  UsagePtr client = Client(port);
  std::promise<absl::StatusOr<v1::MetricsResponse>> p;
  client->Metrics([&](auto r) { p.set_value(std::move(r)); });
  absl::StatusOr<v1::MetricsResponse> m = p.get_future().get();
  ASSERT_TRUE(m.ok());
  EXPECT_NE(m->text().find("omniroute_usage_fake 1"), std::string::npos);
  EXPECT_NE(m->text().find("omniroute_usage_service_up 1"), std::string::npos);
  Stop();
  std::promise<absl::StatusOr<v1::MetricsResponse>> p2;
  client->Metrics([&](auto r) { p2.set_value(std::move(r)); });
  m = p2.get_future().get();
  ASSERT_TRUE(m.ok());
  EXPECT_NE(m->text().find("omniroute_usage_client_spool_depth 0"), std::string::npos);
  EXPECT_NE(m->text().find("omniroute_usage_service_up 0"), std::string::npos);
}

class GrpcUsageSpoolTest : public GrpcUsageTest {
 protected:
  void SetUp() override {
    GrpcUsageTest::SetUp();
    char tmpl[] = "/tmp/omni-edge-spool-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    GrpcUsageTest::TearDown();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  UsageClientOptions SpoolOptions() {
    UsageClientOptions o;
    o.spool_dir = dir_ + "/spool";
    o.retry_min = 20ms;
    o.retry_max = 100ms;
    o.flush_on_destroy = 200ms;
    return o;
  }
  std::string dir_;
};

TEST_F(GrpcUsageSpoolTest, SpoolsWhileUnreachableAndReplaysInOrder) {
  const int port = Serve();
  Stop();
  UsagePtr client = Client(port, SpoolOptions());
  for (int i = 0; i < 700; ++i) {
    client->Record(MakeRecord(i));
  }
  // Not delivered, but on disk.
  EXPECT_EQ(client->Flush(300ms), 700u);
  ASSERT_EQ(Serve(port), port);
  for (int i = 700; i < 800; ++i) {
    client->Record(MakeRecord(i));
  }
  EXPECT_EQ(client->Flush(10s), 0u);
  EXPECT_EQ(fake_->ids(), Ids(0, 800));
}

TEST_F(GrpcUsageSpoolTest, RecordsOfAStoppedClientAreSentByTheNextOne) {
  const int port = Serve();
  Stop();
  {
    UsagePtr client = Client(port, SpoolOptions());
    for (int i = 0; i < 50; ++i) {
      client->Record(MakeRecord(i));
    }
    client.reset();  // SIGTERM while the service is down: spooled
  }
  ASSERT_EQ(Serve(port), port);
  UsagePtr client = Client(port, SpoolOptions());
  client->Record(MakeRecord(50));
  EXPECT_EQ(client->Flush(10s), 0u);
  EXPECT_EQ(fake_->ids(), Ids(0, 51));
}

}  // namespace
}  // namespace omniroute::usage

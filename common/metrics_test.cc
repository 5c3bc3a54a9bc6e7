#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"
#include "omniroute/translator/v1/translator.grpc.pb.h"

namespace omniroute {
namespace {

// The value of `name`{labels ⊇ `want`} in MetricsRegistry(), or -1 when absent.
double Value(const std::string& name, const std::map<std::string, std::string>& want) {
  for (const prometheus::MetricFamily& family : MetricsRegistry()->Collect()) {
    for (const prometheus::ClientMetric& m : family.metric) {
      size_t matched = 0;
      for (const auto& label : m.label) {
        auto it = want.find(label.name);
        if (it != want.end() && it->second == label.value) ++matched;
      }
      if (matched != want.size()) continue;
      if (family.name == name) return m.counter.value;
      if (family.name + "_count" == name) return static_cast<double>(m.histogram.sample_count);
    }
  }
  return -1;
}

// Answers TranslateRequest: NOT_FOUND for the body "missing", else OK.
class FakeTranslator final : public translator::v1::Translator::CallbackService {
 public:
  grpc::ServerUnaryReactor* TranslateRequest(grpc::CallbackServerContext* context,
                                             const translator::v1::TranslateRequestIn* in,
                                             translator::v1::TranslateRequestOut*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(in->body() == "missing" ? grpc::Status(grpc::StatusCode::NOT_FOUND, "no")
                                            : grpc::Status::OK);
    return reactor;
  }
};

grpc::Status Translate(translator::v1::Translator::Stub& stub, const std::string& body) {
  translator::v1::TranslateRequestIn in;
  in.set_body(body);
  translator::v1::TranslateRequestOut out;
  grpc::ClientContext context;
  return stub.TranslateRequest(&context, in, &out);
}

// GET `path` from 127.0.0.1:`port`; the whole HTTP answer.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: x\r\n\r\n");
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

TEST(GrpcServerMetricsTest, CountsEachCallByServiceMethodAndCode) {
  FakeTranslator service;
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpcServer("127.0.0.1:0", {&service}, &port);
  ASSERT_NE(server, nullptr);
  auto stub =
      translator::v1::Translator::NewStub(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));
  const std::map<std::string, std::string> method = {
      {"grpc_service", "omniroute.translator.v1.Translator"}, {"grpc_method", "TranslateRequest"}};
  std::map<std::string, std::string> ok = method;
  ok.insert({{"grpc_type", "unary"}, {"grpc_code", "OK"}});
  auto not_found = ok;
  not_found["grpc_code"] = "NotFound";

  EXPECT_TRUE(Translate(*stub, "a").ok());
  EXPECT_TRUE(Translate(*stub, "b").ok());
  EXPECT_EQ(Translate(*stub, "missing").error_code(), grpc::StatusCode::NOT_FOUND);
  server->Shutdown();
  server->Wait();

  EXPECT_EQ(Value("grpc_server_handled_total", ok), 2);
  EXPECT_EQ(Value("grpc_server_handled_total", not_found), 1);
  EXPECT_EQ(Value("grpc_server_started_total", method), 3);
  EXPECT_EQ(Value("grpc_server_handling_seconds_count", method), 3);
}

TEST(GrpcServerMetricsTest, NamesCodesAsGoGrpcPrometheusDoes) {
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::CANCELLED), "Canceled");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::RESOURCE_EXHAUSTED), "ResourceExhausted");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::UNAVAILABLE), "Unavailable");
}

TEST(MetricsServerTest, ServesMetricsAndHealthz) {
  auto server = MetricsServer::Start(
      "127.0.0.1:0", {[] { return std::string("# TYPE extra_total counter\nextra_total 7"); }});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);

  const std::string metrics = HttpGet((*server)->port(), "/metrics");
  EXPECT_NE(metrics.find("HTTP/1.1 200"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("text/plain; version=0.0.4"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nprocess_resident_memory_bytes "), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nprocess_cpu_seconds_total "), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nextra_total 7\n"), std::string::npos) << metrics;

  const std::string health = HttpGet((*server)->port(), "/healthz");
  EXPECT_NE(health.find("HTTP/1.1 200"), std::string::npos) << health;
  EXPECT_NE(health.find("\r\n\r\nok\n"), std::string::npos) << health;
  EXPECT_NE(HttpGet((*server)->port(), "/other").find("HTTP/1.1 404"), std::string::npos);
}

TEST(MetricsServerTest, FailsOnAPortInUse) {
  auto first = MetricsServer::Start("127.0.0.1:0", {});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = MetricsServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), {});
  EXPECT_FALSE(second.ok());
}

}  // namespace
}  // namespace omniroute

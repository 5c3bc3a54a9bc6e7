#include <signal.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/config_reload.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/retry_hint.h"
#include "common/strings.h"
#include "common/secrets.h"
#include "common/sse.h"
#include "edge.h"
#include "gateway.h"
#include "metrics.h"
#include "upstream.h"
#include "usage_admin.h"

namespace omniroute::edge {

namespace beast = boost::beast;
namespace json = boost::json;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;
constexpr Format kOpenAi = common::v1::FORMAT_OPENAI_CHAT;
constexpr size_t kMaxUpstreamBody = 64 * 1024 * 1024;
constexpr int kMaxAttempts = 10;
// How often the edge asks accounts whether the access settings changed.
constexpr std::chrono::seconds kCatalogPollInterval{2};
// Credentials without an expiry are cached this long (a rotated API key reaches the edge).
constexpr std::chrono::seconds kCredentialCacheTtl{30};
// How long a key found without budget skips the reservation call (distributed edge).
constexpr std::chrono::seconds kUnbudgetedTtl{5};

// Note for every coroutine here: g++ 12 destroys twice a temporary made by a conditional
// expression (a ? std::string : "...") inside a co_await statement. Build such values in a
// statement of their own first.

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A small thread-safe cache of service answers, for the distributed edge.
template <typename T>
class TtlCache {
 public:
  std::optional<T> Get(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    if (it->second.second < Clock::now()) {
      map_.erase(it);
      return std::nullopt;
    }
    return it->second.first;
  }
  void Put(const std::string& key, T value, std::chrono::milliseconds ttl) {
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() > 10000) map_.clear();
    map_[key] = {std::move(value), Clock::now() + ttl};
  }
  void Erase(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    map_.erase(key);
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::pair<T, Clock::time_point>> map_;
};

// Per-request facts that end up in the access log, the metrics and the usage record.
struct RequestLog {
  std::string request_id;
  std::string route;
  int status = 0;
  std::string error_code;
  std::string client_key_id;
  std::string team;        // the client key's team label
  std::string session_id;  // the client's sticky session, echoed as X-OmniRoute-Session-Id
  std::string provider;
  std::string connection_id;
  std::string requested_model;
  std::string upstream_model;
  Format upstream_format = common::v1::FORMAT_UNSPECIFIED;
  bool stream = false;
  int64_t ttft_ms = 0;
  double upstream_seconds = 0;  // spent waiting for upstreams, over every attempt
  TokenUsage tokens;
  bool record_usage = false;
};

}  // namespace

struct Worker {
  net::io_context ioc{1};
  std::optional<UpstreamPool> pool;
  std::thread thread;
};

// The client end of a connection, read once when it is accepted.
struct Peer {
  std::string ip;                     // as text, for the admin API's login limiter
  std::optional<IpAddress> address;   // for the access rules; nullopt when unknown
};

// One client request being served.
struct Exchange {
  beast::tcp_stream& stream;
  Worker& worker;
  Request& req;
  const Peer& peer;
  RequestLog log;
  std::optional<accounts::v1::ClientKey> key;  // the client key, once authenticated
  Format format = kOpenAi;  // the client's API: answers and errors take its shape
  Clock::time_point start = Clock::now();
  std::string path;  // normalised, without the query (which may carry a key)
  std::string reservation_id;  // budget hold to settle when the request ends
  std::string traceparent;     // W3C trace context sent upstream (the client's trace)
  bool legacy_completions = false;  // /v1/completions: chat inside, text_completion outside
  bool attempted = false;      // an upstream was called
  ChatRequestInfo* chat = nullptr;  // the parsed body of a request for an upstream

  // Once a stream's first bytes reached the client no other candidate will be tried: the
  // request body (raw and parsed: for a coding agent, the whole conversation) is not needed
  // for the rest of the stream.
  void ReleaseRequestBody() {
    std::string().swap(req.body());
    if (chat) chat->body = nullptr;
  }
};

// A service answer that arrives while the coroutine does something else (the budget
// reservation runs in parallel with the plan). Lives on the request's executor.
template <typename T>
struct Pending {
  explicit Pending(net::any_io_executor ex) : executor(std::move(ex)) {}
  net::any_io_executor executor;
  std::optional<absl::StatusOr<T>> result;
  std::optional<net::steady_timer> timer;  // made only when the answer is awaited before it came
  bool starting = true;  // the call is being started on the caller's thread
};

// Starts `start(callback)` now; the result lands in the returned Pending on `ex`: at once
// when the call answers before returning (an in-process service), else posted there.
template <typename T, typename Start>
std::shared_ptr<Pending<T>> StartCall(net::any_io_executor ex, Start start) {
  auto pending = std::make_shared<Pending<T>>(ex);
  const std::thread::id caller = std::this_thread::get_id();
  start([pending, caller](absl::StatusOr<T> r) mutable {
    // Another thread never reads `starting` (the thread test comes first).
    if (std::this_thread::get_id() == caller && pending->starting) {
      pending->result = std::move(r);
      return;
    }
    net::post(pending->executor, [pending, r = std::move(r)]() mutable {
      pending->result = std::move(r);
      if (pending->timer) pending->timer->cancel();
    });
  });
  pending->starting = false;
  return pending;
}

// Waits for a call started with StartCall.
template <typename T>
net::awaitable<absl::StatusOr<T>> AwaitPending(std::shared_ptr<Pending<T>> pending) {
  if (!pending->result) {
    pending->timer.emplace(pending->executor, net::steady_timer::time_point::max());
    co_await pending->timer->async_wait(kAwait);
  }
  if (!pending->result) co_return absl::CancelledError("the call did not complete");
  co_return std::move(*pending->result);
}

// Runs a service call that may complete before returning (in-process) or later on another
// thread (gRPC, or an in-process service working on its own pool), and resumes on the
// caller's executor (one thread per event loop): an answer given inline is taken directly,
// a later one is posted back.
template <typename T, typename Start>
net::awaitable<absl::StatusOr<T>> AwaitCall(Start start) {
  net::any_io_executor ex = co_await net::this_coro::executor;
  std::shared_ptr<Pending<T>> pending = StartCall<T>(std::move(ex), std::move(start));
  co_return co_await AwaitPending(std::move(pending));
}

// Runs a service call: an in-process service completes before returning and its result is
// taken directly (no allocation); any other goes through AwaitCall.
template <typename T, typename Start>
net::awaitable<absl::StatusOr<T>> Await(bool in_process, Start start) {
  if (in_process) {
    std::optional<absl::StatusOr<T>> result;
    start([&result](absl::StatusOr<T> r) { result.emplace(std::move(r)); });
    if (result) co_return std::move(*result);
    co_return absl::InternalError("in-process call did not complete");
  }
  co_return co_await AwaitCall<T>(std::move(start));
}

// How one upstream attempt ended.
struct AttemptResult {
  enum Kind {
    kAnswered,  // the client got an answer (or went away)
    kNext,      // failed in a way another candidate may not: try the next one
    kStop,      // failed in a way no candidate can fix: answer the client with `error`
  };
  Kind kind = kNext;
  bool alive = true;  // kAnswered: whether the client connection can be reused
  absl::Status error;
  int status = 502;  // what the client gets when nothing answers
};

struct EdgeServer::Impl {
  ConfigPtr config;
  EdgeServices services;
  std::string mode;
  Metrics metrics;
  net::ssl::context tls{net::ssl::context::tls_client};
  std::vector<std::unique_ptr<Worker>> workers;
  std::optional<tcp::acceptor> acceptor;
  std::atomic<size_t> next_worker{0};
  std::atomic<int> in_flight{0};
  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  // Server settings a config reload changes while serving (the rest of `config` is the
  // start-up one).
  std::atomic<bool> require_api_key{false};
  std::atomic<int64_t> body_limit_bytes{0};
  int bound_port = 0;
  TtlCache<accounts::v1::ClientKey> key_cache;
  TtlCache<accounts::v1::Credential> credential_cache;
  TtlCache<bool> unbudgeted;  // client key + team without budget (see Proxy)
  std::mutex endpoints_mu;
  std::unordered_map<std::string, UpstreamEndpoint> endpoints;

  // The client IP rules of the latest access settings (null: none), read per request. The
  // catalog poll runs on workers[0] and alone touches the catalog_* members after Start.
  std::atomic<bool> has_access_rules{false};
  std::atomic<std::shared_ptr<const IpAccessRules>> access_rules;
  int64_t catalog_version = 0;
  bool catalog_failing = false;
  std::optional<net::steady_timer> catalog_timer;
  // Lets a late catalog answer find out that the event loops are gone.
  struct CatalogGuard {
    std::mutex mu;
    bool stopped = false;
  };
  std::shared_ptr<CatalogGuard> catalog_guard = std::make_shared<CatalogGuard>();
  // The quota last sent to accounts, per connection (reports are throttled per edge).
  std::mutex quota_mu;
  std::unordered_map<std::string, accounts::v1::QuotaReport> quota_sent;

  Impl(ConfigPtr c, EdgeServices s, std::string m)
      : config(std::move(c)), services(std::move(s)), mode(std::move(m)) {
    require_api_key = config->server.require_api_key;
    body_limit_bytes = config->server.body_limit_bytes;
    tls.set_default_verify_paths();
    tls.set_verify_mode(net::ssl::verify_peer);
  }

  net::awaitable<void> Accept();
  net::awaitable<void> Session(tcp::socket socket, Worker& worker);
  net::awaitable<bool> Handle(beast::tcp_stream& stream, Worker& worker, Request& req,
                              const Peer& peer);
  // Answers every request but one for an upstream; for that one it parses the body into
  // *chat and returns without answering, so that its frame is gone while the (possibly
  // hours-long) upstream exchange runs.
  net::awaitable<bool> Route(Exchange& x, const std::string& path,
                             std::optional<ChatRequestInfo>* chat);
  net::awaitable<bool> Admin(Exchange& x, const std::string& path, const std::string& actor);
  net::awaitable<bool> AccountsAdmin(Exchange& x, const std::string& path,
                                     const std::string& actor);
  net::awaitable<bool> Models(Exchange& x, bool gemini_shape);
  net::awaitable<std::optional<bool>> Authenticate(Exchange& x, bool required);
  net::awaitable<bool> UsageAdmin(Exchange& x, const std::string& path, bool is_admin);
  bool AdminKeyPresented(const Request& req) const;
  std::string AdminActor(const Request& req) const;
  bool ClientIpAllowed(const Peer& peer) const;
  void ApplyCatalog(const absl::StatusOr<accounts::v1::Catalog>& catalog);
  void PollCatalog();
  void ScheduleCatalogPoll();
  net::awaitable<absl::StatusOr<accounts::v1::Credential>> FetchCredential(
      const std::string& connection_id, const accounts::v1::Credential* refused);
  net::awaitable<bool> Proxy(Exchange& x, ChatRequestInfo& info);
  // The answer when a plan has no candidate (kept out of Proxy's frame, which a stream holds).
  net::awaitable<bool> ReplyUnavailable(Exchange& x, const router::v1::RoutePlan& plan,
                                        const std::string& model);
  net::awaitable<AttemptResult> Attempt(Exchange& x, ChatRequestInfo& info,
                                        const router::v1::Candidate& cand, bool last_candidate);
  net::awaitable<AttemptResult> RelayStream(Exchange& x, UpstreamExchange& ex,
                                            const router::v1::Candidate& cand,
                                            const std::string& client_model,
                                            const std::function<void(int, bool)>& report);
  // The parsed endpoint of a base URL reached through `proxy` ("" = direct), cached.
  absl::StatusOr<UpstreamEndpoint> Endpoint(const std::string& base_url, const std::string& proxy);
  // Sends a connection's quota to accounts when it moved enough (fire and forget).
  void ReportQuota(accounts::v1::QuotaReport report);
  void Finish(Exchange& x);
};


namespace {

// Writes a whole response. Returns false when the client is gone.
net::awaitable<bool> Reply(beast::tcp_stream& stream, const Request& req, RequestLog& log,
                           int status, std::string body,
                           std::string_view content_type = "application/json",
                           std::string_view extra_name = {}, std::string extra_value = {}) {
  http::response<http::string_body> res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, content_type);
  res.set("x-request-id", log.request_id);
  if (!log.session_id.empty()) res.set("x-omniroute-session-id", log.session_id);
  if (!extra_name.empty()) res.set(extra_name, extra_value);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  log.status = status;
  const std::string head = HeaderBytes(res.base());
  auto [ec, n] = co_await net::async_write(stream, WholeMessage(head, res.body()), kAwait);
  co_return !ec;
}

// Sends `data` as one chunk of a chunked body (nothing when empty), after `head` (the
// response header, until it went out: cleared then) and followed by the last chunk when
// `last`, in one write. Returns false when the client is gone.
net::awaitable<bool> WriteChunk(beast::tcp_stream& stream, std::string& head,
                                std::string_view data, bool last) {
  static constexpr std::string_view kCrlf = "\r\n";
  static constexpr std::string_view kLastChunk = "0\r\n\r\n";
  char size_line[24];
  const int size_len =
      data.empty() ? 0 : std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  const std::array<net::const_buffer, 5> buffers{
      net::buffer(head),
      net::buffer(size_line, static_cast<size_t>(size_len)),
      net::buffer(data.data(), data.size()),
      net::buffer(kCrlf.data(), data.empty() ? 0 : kCrlf.size()),
      net::buffer(kLastChunk.data(), last ? kLastChunk.size() : 0),
  };
  auto [ec, n] = co_await net::async_write(stream, buffers, kAwait);
  if (ec) co_return false;
  head.clear();
  co_return true;
}

net::awaitable<bool> ReplyError(beast::tcp_stream& stream, const Request& req, RequestLog& log,
                                Format format, int status, std::string_view message,
                                std::string_view code = {}) {
  HttpError err = MakeHttpError(format, status, message, code);
  log.error_code = code.empty() ? std::to_string(status) : std::string(code);
  co_return co_await Reply(stream, req, log, err.status, std::move(err.body));
}

// Answers a request that could not be read whole (in OpenAI's error shape: nothing told
// the client's API yet) and closes. `head`: the request's header when it was read. Kept
// out of the connection's coroutine, whose frame holds every local of its body for as long
// as the connection lives.
net::awaitable<void> ReplyUnreadable(beast::tcp_stream& stream,
                                     const http::request_header<>* head, int status,
                                     std::string message, std::string_view code = {}) {
  Request req;
  if (head) req = Request(*head);
  req.keep_alive(false);
  RequestLog log;
  log.request_id = NewRequestId();
  log.route = "other";
  co_await ReplyError(stream, req, log, kOpenAi, status, message, code);
}

std::string_view Header(const Request& req, std::string_view name) {
  auto it = req.find(name);
  return it == req.end() ? std::string_view() : std::string_view(it->value());
}

// Upstream failures that another account or provider may not have.
bool Retryable(int status) {
  return status == 408 || status == 429 || status == 401 || status == 402 || status == 403 ||
         status >= 500;
}

// Whether a refreshed credential is still the one the upstream refused.
bool SameCredential(const accounts::v1::Credential& a, const accounts::v1::Credential& b) {
  if (!a.token_sha256().empty() || !b.token_sha256().empty()) {
    return a.token_sha256() == b.token_sha256() && a.base_url() == b.base_url() &&
           a.proxy() == b.proxy();
  }
  if (a.base_url() != b.base_url() || a.proxy() != b.proxy() ||
      a.headers_size() != b.headers_size()) {
    return false;
  }
  for (int i = 0; i < a.headers_size(); ++i) {
    if (a.headers(i).name() != b.headers(i).name() ||
        a.headers(i).value() != b.headers(i).value()) {
      return false;
    }
  }
  return true;
}

std::string ErrorCodeFor(int status) {
  switch (status) {
    case 401:
      return "invalid_api_key";
    case 404:
      return "model_not_found";
    case 429:
      return "rate_limit_exceeded";
    default:
      return {};
  }
}

}  // namespace

EdgeServer::EdgeServer(ConfigPtr config, EdgeServices services, std::string mode)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(services), std::move(mode))) {}

EdgeServer::~EdgeServer() { Shutdown(); }

int EdgeServer::port() const { return impl_->bound_port; }

absl::Status EdgeServer::Start() {
  Impl& s = *impl_;
  int threads = s.config->server.threads;
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  UpstreamTimeouts timeouts{std::chrono::milliseconds(s.config->server.upstream_connect_timeout_ms),
                            std::chrono::milliseconds(s.config->server.upstream_timeout_ms)};
  for (int i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->pool.emplace(w->ioc.get_executor(), &s.tls, timeouts);
    s.workers.push_back(std::move(w));
  }
  beast::error_code ec;
  auto address = net::ip::make_address(s.config->server.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("server.host: ", ec.message()));
  tcp::endpoint endpoint(address, static_cast<unsigned short>(s.config->server.port));
  s.acceptor.emplace(s.workers[0]->ioc);
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", s.config->server.host, ":", s.config->server.port,
                     ": ", ec.message()));
  }
  s.bound_port = s.acceptor->local_endpoint().port();
  if (s.services.accounts) {
    // The access settings apply from the first request: wait briefly for them here (not an
    // event loop), then poll them from workers[0].
    auto first = std::make_shared<std::promise<absl::StatusOr<accounts::v1::Catalog>>>();
    std::future<absl::StatusOr<accounts::v1::Catalog>> answer = first->get_future();
    s.services.accounts->GetCatalog(
        0, [first](absl::StatusOr<accounts::v1::Catalog> r) { first->set_value(std::move(r)); });
    if (answer.wait_for(std::chrono::seconds(2)) == std::future_status::ready) {
      s.ApplyCatalog(answer.get());
    } else {
      s.ApplyCatalog(absl::DeadlineExceededError("no answer from accounts within 2 s"));
    }
    s.catalog_timer.emplace(s.workers[0]->ioc);
    s.ScheduleCatalogPoll();
  }
  net::co_spawn(s.workers[0]->ioc, s.Accept(), net::detached);
  for (auto& w : s.workers) {
    Worker* raw = w.get();
    raw->thread = std::thread([raw] {
      auto guard = net::make_work_guard(raw->ioc);
      raw->ioc.run();
    });
  }
  LogInfo("listening", {{"service", "edge"},
                        {"mode", s.mode},
                        {"addr", absl::StrCat(s.config->server.host, ":", s.bound_port)},
                        {"threads", std::to_string(threads)}});
  return absl::OkStatus();
}

void EdgeServer::ReloadConfig(const ConfigPtr& config) {
  Impl& s = *impl_;
  s.require_api_key = config->server.require_api_key;
  s.body_limit_bytes = config->server.body_limit_bytes;
  const UpstreamTimeouts timeouts{
      std::chrono::milliseconds(config->server.upstream_connect_timeout_ms),
      std::chrono::milliseconds(config->server.upstream_timeout_ms)};
  // Each pool belongs to its event loop: the change is made there.
  for (auto& w : s.workers) {
    Worker* worker = w.get();
    net::post(worker->ioc, [worker, timeouts] {
      if (worker->pool) worker->pool->SetTimeouts(timeouts);
    });
  }
}

void EdgeServer::CountConfigReload(std::string_view result) { impl_->metrics.ConfigReload(result); }

void EdgeServer::Shutdown() {
  Impl& s = *impl_;
  if (s.stopped.exchange(true) || s.workers.empty()) return;
  s.draining = true;
  {
    std::lock_guard<std::mutex> lock(s.catalog_guard->mu);
    s.catalog_guard->stopped = true;
  }
  if (s.acceptor) {
    net::post(s.workers[0]->ioc, [&s] {
      beast::error_code ec;
      s.acceptor->close(ec);
    });
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(s.config->server.drain_timeout_ms);
  while (s.in_flight.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const int left = s.in_flight.load();
  if (s.services.usage) {
    const size_t pending = s.services.usage->Flush(std::chrono::seconds(10));
    LogInfo("drained", {{"in_flight_abandoned", std::to_string(left)},
                        {"usage_pending", std::to_string(pending)}});
  }
  for (auto& w : s.workers) w->ioc.stop();
  for (auto& w : s.workers) {
    if (w->thread.joinable()) w->thread.join();
  }
  for (auto& w : s.workers) w->pool.reset();
  s.catalog_timer.reset();
  s.acceptor.reset();
  s.workers.clear();
}

net::awaitable<void> EdgeServer::Impl::Accept() {
  while (!draining) {
    Worker& w = *workers[next_worker++ % workers.size()];
    auto [ec, socket] = co_await acceptor->async_accept(w.ioc, kAwait);
    if (ec) {
      if (draining || ec == net::error::operation_aborted) break;
      LogWarn("accept failed", {{"error", ec.message()}});
      continue;
    }
    net::co_spawn(w.ioc, Session(std::move(socket), w), net::detached);
  }
}

net::awaitable<void> EdgeServer::Impl::Session(tcp::socket socket, Worker& worker) {
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  Peer peer;
  if (const tcp::endpoint remote = socket.remote_endpoint(ignored); !ignored) {
    peer.ip = remote.address().to_string();
    peer.address = ParseIpAddress(peer.ip);
  }
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  while (!draining) {
    http::request_parser<http::string_body> parser;
    const int64_t body_limit = body_limit_bytes.load(std::memory_order_relaxed);
    parser.body_limit(static_cast<uint64_t>(body_limit));
    parser.header_limit(64 * 1024);
    stream.expires_after(std::chrono::seconds(120));  // idle keep-alive
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kAwait);
    bool too_large = ec == http::error::body_limit;
    if (ec && !too_large) {
      if (ec == http::error::header_limit) {
        co_await ReplyUnreadable(stream, nullptr, 431, "Request headers are too large");
      } else if (ec != http::error::end_of_stream && ec != beast::error::timeout &&
                 ec != net::error::eof && ec != net::error::connection_reset) {
        co_await ReplyUnreadable(stream, nullptr, 400, "Malformed HTTP request");
      }
      break;
    }
    if (!too_large && !parser.is_done()) {
      if (absl::EqualsIgnoreCase(AV(parser.get()[http::field::expect]), "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        auto [wec, wn] = co_await net::async_write(stream, net::buffer(kContinue), kAwait);
        if (wec) break;
      }
      // The longer deadline for a body still on its way (moving a deadline is a system call;
      // a small body came with its header).
      const auto length = parser.content_length();
      if (!length || buffer.size() < *length) stream.expires_after(std::chrono::seconds(300));
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, kAwait);
      too_large = ec == http::error::body_limit;
      if (ec && !too_large) break;
    }
    if (too_large) {
      co_await ReplyUnreadable(stream, &parser.get().base(), 413,
                               absl::StrCat("Request body exceeds the limit of ", body_limit,
                                            " bytes"),
                               "request_too_large");
      metrics.Request("other", 413, "", 0);
      break;
    }
    stream.expires_never();
    Request req = parser.release();
    const bool keep = co_await Handle(stream, worker, req, peer);
    if (!keep || !req.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

// A bug: answers 500 when nothing was sent yet (a blocking write: the connection closes
// after it), and keeps serving other connections.
void ReplyInternalError(Exchange& x, const char* what) {
  LogError("request handler failed", {{"request_id", x.log.request_id}, {"error", what}});
  if (x.log.status != 0) return;
  HttpError err = MakeHttpError(x.format, 500, "Internal error", "internal_error");
  http::response<http::string_body> res{http::status::internal_server_error, x.req.version()};
  res.set(http::field::content_type, "application/json");
  res.set("x-request-id", x.log.request_id);
  res.keep_alive(false);
  res.body() = err.body;
  res.prepare_payload();
  x.log.status = 500;
  beast::error_code ec;
  x.stream.expires_after(std::chrono::seconds(5));
  http::write(x.stream, res, ec);
}

// Serves one request; returns false when the connection must close.
net::awaitable<bool> EdgeServer::Impl::Handle(beast::tcp_stream& stream, Worker& worker,
                                              Request& req, const Peer& peer) {
  in_flight++;
  metrics.InFlight(1);
  Exchange x{stream, worker, req, peer};
  x.log.request_id = NewRequestId();
  x.path = NormalizePath(req.target());
  x.traceparent = ChildTraceparent(Header(req, "traceparent"));
  bool alive = true;
  try {
    std::optional<ChatRequestInfo> chat;
    alive = co_await Route(x, x.path, &chat);
    if (chat) {
      x.chat = &*chat;
      alive = co_await Proxy(x, *chat);
    }
  } catch (const std::exception& e) {
    ReplyInternalError(x, e.what());
    alive = false;
  }
  if (x.log.route.empty()) x.log.route = "other";
  Finish(x);
  metrics.InFlight(-1);
  in_flight--;
  co_return alive;
}

net::awaitable<bool> EdgeServer::Impl::Route(Exchange& x, const std::string& path,
                                             std::optional<ChatRequestInfo>* chat) {
  Request& req = x.req;
  RequestLog& log = x.log;
  if (path == "/healthz" || path == "/livez") {
    log.route = "healthz";
    co_return co_await Reply(x.stream, req, log, 200, R"({"status":"ok"})");
  }
  if (path == "/readyz") {
    log.route = "readyz";
    const bool ready = !draining && (!services.ready || services.ready());
    std::string body = R"({"status":"ready"})";
    if (!ready) {
      body = draining ? R"({"status":"draining"})" : R"({"status":"services unavailable"})";
    } else {
      // Still ready without Redis (the router routes on local state), but say so.
      router::v1::HealthRequest hreq;
      hreq.set_brief(true);
      auto health = co_await Await<router::v1::HealthResponse>(
          services.in_process, [&](auto cb) { services.router->Health(hreq, std::move(cb)); });
      if (health.ok()) {
        metrics.RouterHealth(*health);
        const char* routing_state = health->store_healthy() ? "shared" : "local";
        body = json::serialize(json::object{{"status", "ready"},
                                            {"routing_state", routing_state},
                                            {"state_store", health->store()},
                                            {"state_store_healthy", health->store_healthy()},
                                            {"detail", health->store_detail()}});
      }
    }
    const int status = ready ? 200 : 503;
    co_return co_await Reply(x.stream, req, log, status, std::move(body));
  }
  if (!ClientIpAllowed(x.peer)) {
    log.route = "ip_denied";
    x.format = FormatForPath(path, !Header(req, "anthropic-version").empty());
    co_return co_await ReplyError(x.stream, req, log, x.format, 403,
                                  "Your IP address is not allowed", "ip_not_allowed");
  }
  if (path == "/metrics") {
    log.route = "metrics";
    router::v1::HealthRequest hreq;
    hreq.set_brief(true);
    auto health = co_await Await<router::v1::HealthResponse>(
        services.in_process, [&](auto cb) { services.router->Health(hreq, std::move(cb)); });
    if (health.ok()) metrics.RouterHealth(*health);
    std::string text = metrics.Serialize();
    // The usage service's counters (tokens and cost by key, spool depth, ...) follow.
    auto usage_metrics = co_await Await<usage::v1::MetricsResponse>(
        false, [&](auto cb) { services.usage->Metrics(std::move(cb)); });
    if (usage_metrics.ok()) text += usage_metrics->text();
    co_return co_await Reply(x.stream, req, log, 200, std::move(text),
                             "text/plain; version=0.0.4; charset=utf-8");
  }
  if (absl::StartsWith(path, "/api/") || path == "/api") {
    log.route = "admin";
    const std::string actor = AdminActor(req);
    if (path == "/api/usage/self" && actor.empty()) {
      // The one /api route a client key opens: its own usage and budget. The answer is
      // about one key, so a key is demanded even when /v1 does not require one.
      if (auto refused = co_await Authenticate(x, /*required=*/true)) co_return *refused;
      co_return co_await UsageAdmin(x, path, /*is_admin=*/false);
    }
    co_return co_await Admin(x, path, actor);
  }

  // The client APIs.
  std::string gemini_model;
  std::string gemini_method;
  bool models = false;
  bool count_tokens = false;
  if (path == "/v1/chat/completions") {
    log.route = "chat_completions";
  } else if (path == "/v1/completions") {
    log.route = "completions";
    x.legacy_completions = true;
  } else if (path == "/v1/responses") {
    log.route = "responses";
    x.format = common::v1::FORMAT_OPENAI_RESPONSES;
  } else if (path == "/v1/messages") {
    log.route = "messages";
    x.format = common::v1::FORMAT_ANTHROPIC;
  } else if (path == "/v1/messages/count_tokens") {
    log.route = "count_tokens";
    x.format = common::v1::FORMAT_ANTHROPIC;
    count_tokens = true;
  } else if (path == "/v1/models") {
    log.route = "models";
    models = true;
  } else if (path == "/v1beta/models") {
    log.route = "models";
    x.format = common::v1::FORMAT_GEMINI;
    models = true;
  } else if (ParseGeminiPath(path, &gemini_model, &gemini_method)) {
    log.route = "gemini";
    x.format = common::v1::FORMAT_GEMINI;
    if (gemini_method == "countTokens") {
      count_tokens = true;
    } else if (gemini_method != "generateContent" && gemini_method != "streamGenerateContent") {
      co_return co_await ReplyError(x.stream, req, log, x.format, 404,
                                    absl::StrCat("Method '", gemini_method, "' is not supported"),
                                    "not_found");
    }
  } else {
    log.route = "other";
    // Answer in the shape the caller's SDK reads.
    if (absl::StartsWith(path, "/v1beta")) {
      x.format = common::v1::FORMAT_GEMINI;
    } else if (!Header(req, "anthropic-version").empty()) {
      x.format = common::v1::FORMAT_ANTHROPIC;
    }
    const std::string message =
        absl::StrCat("Unknown route: ", AV(req.method_string()), " ", path);
    co_return co_await ReplyError(x.stream, req, log, x.format, 404, message, "unknown_url");
  }
  const http::verb wanted = models ? http::verb::get : http::verb::post;
  if (req.method() != wanted) {
    const std::string message = absl::StrCat("Method ", AV(req.method_string()),
                                             " is not allowed on ", path);
    co_return co_await ReplyError(x.stream, req, log, x.format, 405, message,
                                  "method_not_allowed");
  }
  if (auto refused =
          co_await Authenticate(x, require_api_key.load(std::memory_order_relaxed))) {
    co_return *refused;
  }
  if (models) co_return co_await Models(x, x.format == common::v1::FORMAT_GEMINI);

  if (x.legacy_completions) {
    auto chat = CompletionsRequestToChat(req.body());
    if (!chat.ok()) {
      co_return co_await ReplyError(x.stream, req, log, x.format, 400,
                                    SV(chat.status().message()), "invalid_request_error");
    }
    req.body() = std::move(chat).value();
  }
  absl::StatusOr<ChatRequestInfo> parsed =
      x.format == common::v1::FORMAT_GEMINI
          ? ParseGeminiRequest(req.body(), gemini_model, gemini_method == "streamGenerateContent")
          : ParseChatRequest(req.body());
  if (!parsed.ok()) {
    co_return co_await ReplyError(x.stream, req, log, x.format, 400,
                                  SV(parsed.status().message()), "invalid_request_error");
  }
  if (x.key && !ModelAllowed(x.key->allowed_models(), parsed->model)) {
    log.requested_model = parsed->model;
    const std::string message =
        absl::StrCat("The model '", parsed->model, "' is not allowed for this API key");
    co_return co_await ReplyError(x.stream, req, log, x.format, 403, message,
                                  "model_not_allowed");
  }
  if (count_tokens) {
    // An estimate (about four bytes a token), as no provider call is made.
    const size_t tokens = (req.body().size() + 3) / 4;
    std::string body = x.format == common::v1::FORMAT_GEMINI
                           ? absl::StrCat("{\"totalTokens\":", tokens, "}")
                           : absl::StrCat("{\"input_tokens\":", tokens, "}");
    co_return co_await Reply(x.stream, req, log, 200, std::move(body));
  }
  chat->emplace(std::move(parsed).value());
  co_return true;
}

// nullopt when the request may go on; otherwise the client was answered (value: keep-alive).
net::awaitable<std::optional<bool>> EdgeServer::Impl::Authenticate(Exchange& x, bool required) {
  if (!required) co_return std::nullopt;
  const std::string key(PresentedKey(Header(x.req, "authorization"), Header(x.req, "x-api-key"),
                                     Header(x.req, "x-goog-api-key"), x.req.target()));
  if (key.empty()) {
    co_return co_await ReplyError(
        x.stream, x.req, x.log, x.format, 401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in x-api-key.",
        "missing_api_key");
  }
  std::optional<accounts::v1::ClientKey> cached;
  if (!services.in_process) cached = key_cache.Get(key);
  if (!cached) {
    auto resolved = co_await AwaitCall<accounts::v1::ClientKey>(
        [&](auto cb) { services.accounts->ResolveClientKey(key, std::move(cb)); });
    if (!resolved.ok()) {
      const bool unknown = resolved.status().code() == absl::StatusCode::kNotFound;
      std::string message = "Incorrect API key provided.";
      if (!unknown) {
        message = absl::StrCat("Cannot check the API key: ", resolved.status().message());
      }
      co_return co_await ReplyError(x.stream, x.req, x.log, x.format, unknown ? 401 : 503,
                                    message, unknown ? "invalid_api_key" : "service_unavailable");
    }
    if (!services.in_process) {
      key_cache.Put(key, *resolved, std::chrono::seconds(std::max(1, resolved->cache_ttl_s())));
    }
    cached = std::move(resolved).value();
  }
  // A cached answer may outlive the key's expiry: check it on every request.
  if (cached->expires_at_ms() > 0 && cached->expires_at_ms() < NowMs()) {
    co_return co_await ReplyError(x.stream, x.req, x.log, x.format, 401,
                                  "The API key provided has expired.", "invalid_api_key");
  }
  x.log.client_key_id = cached->id();
  x.log.team = cached->team();
  x.key = std::move(cached);
  co_return std::nullopt;
}

net::awaitable<bool> EdgeServer::Impl::Models(Exchange& x, bool gemini_shape) {
  auto models = co_await Await<router::v1::ListModelsResponse>(
      services.in_process, [&](auto cb) { services.router->ListModels(std::move(cb)); });
  if (!models.ok()) {
    HttpError err = ToHttpError(x.format, models.status());
    co_return co_await Reply(x.stream, x.req, x.log, err.status, std::move(err.body));
  }
  json::object root;
  if (gemini_shape) {
    json::array list;
    for (const auto& m : models->models()) {
      if (x.key && !ModelAllowed(x.key->allowed_models(), m.id())) continue;
      list.push_back(json::object{
          {"name", absl::StrCat("models/", m.id())},
          {"displayName", m.id()},
          {"supportedGenerationMethods",
           json::array{"generateContent", "streamGenerateContent", "countTokens"}}});
    }
    root["models"] = std::move(list);
  } else {
    json::array data;
    for (const auto& m : models->models()) {
      if (x.key && !ModelAllowed(x.key->allowed_models(), m.id())) continue;
      data.push_back(json::object{
          {"id", m.id()}, {"object", "model"}, {"created", 0}, {"owned_by", m.owned_by()}});
    }
    root["object"] = "list";
    root["data"] = std::move(data);
  }
  std::string body = json::serialize(root);
  co_return co_await Reply(x.stream, x.req, x.log, 200, std::move(body));
}

bool EdgeServer::Impl::AdminKeyPresented(const Request& req) const {
  const std::string_view presented =
      PresentedKey(Header(req, "authorization"), Header(req, "x-api-key"), {}, {});
  return !presented.empty() && SecureEquals(presented, config->admin_key);
}

std::string EdgeServer::Impl::AdminActor(const Request& req) const {
  if (AdminKeyPresented(req)) return "admin-key";
  if (config->jwt_secret.empty()) return {};
  // A dashboard session: the auth_token cookie (a browser may send several Cookie headers).
  const int64_t now_s = NowMs() / 1000;
  const auto [first, last] = req.equal_range(http::field::cookie);
  for (auto field = first; field != last; ++field) {
    const std::string_view token = CookieValue(std::string_view(field->value()), "auth_token");
    if (token.empty()) continue;
    absl::StatusOr<std::string> claims = crypto::VerifyJwt(token, config->jwt_secret, now_s);
    if (!claims.ok()) continue;
    std::string subject = JwtSubject(*claims);
    if (!subject.empty()) return absl::StrCat("session:", subject);
  }
  return {};
}

bool EdgeServer::Impl::ClientIpAllowed(const Peer& peer) const {
  if (!has_access_rules.load(std::memory_order_acquire)) return true;
  const std::shared_ptr<const IpAccessRules> rules = access_rules.load(std::memory_order_acquire);
  return !rules || rules->Allowed(peer.address);
}

void EdgeServer::Impl::ApplyCatalog(const absl::StatusOr<accounts::v1::Catalog>& catalog) {
  if (!catalog.ok()) {
    // The last settings stay in force; say so once per outage.
    if (!catalog_failing) {
      LogWarn("access settings not refreshed", {{"error", SV(catalog.status().message())}});
      catalog_failing = true;
    }
    return;
  }
  if (catalog_failing) {
    LogInfo("access settings refreshed");
    catalog_failing = false;
  }
  if (catalog->not_modified()) return;
  catalog_version = catalog->version();
  const accounts::v1::AccessSettings& access = catalog->access();
  const std::vector<std::string> allow(access.ip_allowlist().begin(), access.ip_allowlist().end());
  const std::vector<std::string> deny(access.ip_denylist().begin(), access.ip_denylist().end());
  std::vector<std::string> invalid;
  auto rules = std::make_shared<const IpAccessRules>(IpAccessRules::Parse(allow, deny, &invalid));
  for (const std::string& entry : invalid) {
    LogWarn("ignoring an invalid IP access rule",
            {{"entry", entry}, {"version", std::to_string(catalog_version)}});
  }
  if (rules->empty()) {
    has_access_rules.store(false, std::memory_order_release);
    access_rules.store(nullptr, std::memory_order_release);
  } else {
    access_rules.store(std::move(rules), std::memory_order_release);
    has_access_rules.store(true, std::memory_order_release);
  }
}

void EdgeServer::Impl::ScheduleCatalogPoll() {
  catalog_timer->expires_after(kCatalogPollInterval);
  catalog_timer->async_wait([this](beast::error_code ec) {
    if (!ec && !draining) PollCatalog();
  });
}

// On workers[0]. The answer comes inline (in-process) or on a gRPC thread: either way it is
// posted back, so the poll never blocks the event loop and never runs re-entrantly.
void EdgeServer::Impl::PollCatalog() {
  net::any_io_executor ex = workers[0]->ioc.get_executor();
  services.accounts->GetCatalog(
      catalog_version,
      [this, ex, guard = catalog_guard](absl::StatusOr<accounts::v1::Catalog> r) mutable {
        std::lock_guard<std::mutex> lock(guard->mu);
        if (guard->stopped) return;
        net::post(ex, [this, r = std::move(r)]() {
          ApplyCatalog(r);
          if (!draining) ScheduleCatalogPoll();
        });
      });
}

net::awaitable<bool> EdgeServer::Impl::Admin(Exchange& x, const std::string& path,
                                             const std::string& actor) {
  const bool open_route =
      IsUnauthenticatedAdminRoute(std::string_view(x.req.method_string()), path);
  if (actor.empty() && !open_route) {
    co_return co_await ReplyError(
        x.stream, x.req, x.log, x.format, 401,
        "Admin credentials required: Authorization: Bearer <OMNIROUTE_ADMIN_KEY>, or a "
        "dashboard session",
        "unauthorized");
  }
  if (IsAccountsAdminPath(path)) co_return co_await AccountsAdmin(x, path, actor);
  if (actor.empty()) {
    // Only accounts serves the open routes.
    co_return co_await ReplyError(x.stream, x.req, x.log, x.format, 401,
                                  "Admin credentials required", "unauthorized");
  }
  // The routing admin API is the router's: combos, aliases, fallback chains, routing and
  // resilience settings, health, resets.
  if (IsRouterAdminPath(path)) {
    router::v1::AdminRequest areq;
    areq.set_method(std::string(x.req.method_string()));
    areq.set_path(path);
    areq.set_body(x.req.body());
    auto answer = co_await Await<router::v1::AdminResponse>(
        services.in_process, [&](auto cb) { services.router->Admin(areq, std::move(cb)); });
    if (!answer.ok()) {
      const int status = HttpStatusFromStatus(answer.status());
      co_return co_await ReplyError(x.stream, x.req, x.log, x.format, status,
                                    SV(answer.status().message()));
    }
    const int status = answer->status();
    std::string body = std::move(*answer->mutable_body());
    co_return co_await Reply(x.stream, x.req, x.log, status, std::move(body));
  }
  if (usage::IsUsageAdminPath(path)) co_return co_await UsageAdmin(x, path, true);
  const std::string message = absl::StrCat("Unknown admin route ", path);
  co_return co_await ReplyError(x.stream, x.req, x.log, x.format, 404, message, "not_found");
}

// The accounts admin API: keys, providers, nodes, models, OAuth flows, login, security.
// `actor` is empty on the open routes (login, OAuth callback).
net::awaitable<bool> EdgeServer::Impl::AccountsAdmin(Exchange& x, const std::string& path,
                                                     const std::string& actor) {
  accounts::v1::AdminRequest areq;
  areq.set_method(std::string(x.req.method_string()));
  areq.set_path(path);
  if (const size_t q = x.req.target().find('?'); q != std::string_view::npos) {
    areq.set_query(std::string(x.req.target().substr(q + 1)));
  }
  areq.set_body(x.req.body());
  areq.set_client_ip(x.peer.ip);
  areq.set_actor(actor);
  auto answer = co_await AwaitCall<accounts::v1::AdminResponse>(
      [&](auto cb) { services.accounts->Admin(areq, std::move(cb)); });
  if (!answer.ok()) {
    const int status = HttpStatusFromStatus(answer.status());
    co_return co_await ReplyError(x.stream, x.req, x.log, x.format, status,
                                  SV(answer.status().message()));
  }
  const int status = answer->status() > 0 ? answer->status() : 200;
  http::response<http::string_body> res{static_cast<http::status>(status), x.req.version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.set("x-request-id", x.log.request_id);
  for (const auto& h : answer->headers()) {
    // Several Set-Cookie headers may come; the content type replaces the default.
    if (absl::EqualsIgnoreCase(h.name(), "content-type")) {
      res.set(http::field::content_type, h.value());
    } else {
      res.insert(h.name(), h.value());
    }
  }
  res.keep_alive(x.req.keep_alive());
  res.body() = std::move(*answer->mutable_body());
  res.prepare_payload();
  x.log.status = status;
  const std::string head = HeaderBytes(res.base());
  auto [ec, n] = co_await net::async_write(x.stream, WholeMessage(head, res.body()), kAwait);
  co_return !ec;
}

// The usage service's admin API: usage, budgets, pricing, database backups. A client key
// may call GET /api/usage/self only.
net::awaitable<bool> EdgeServer::Impl::UsageAdmin(Exchange& x, const std::string& path,
                                                  bool is_admin) {
  usage::AdminRequest areq;
  areq.method = std::string(x.req.method_string());
  areq.path = path;
  if (const size_t q = x.req.target().find('?'); q != std::string_view::npos) {
    areq.query = std::string(x.req.target().substr(q + 1));
  }
  areq.body = x.req.body();
  areq.content_type = std::string(Header(x.req, "content-type"));
  areq.client_key_id = x.log.client_key_id;
  areq.is_admin = is_admin;
  auto answer = co_await Await<usage::AdminResponse>(false, [&](auto cb) {
    usage::HandleUsageAdmin(services.usage, areq, std::move(cb));
  });
  if (!answer.ok()) {
    co_return co_await ReplyError(x.stream, x.req, x.log, x.format,
                                  HttpStatusFromStatus(answer.status()),
                                  SV(answer.status().message()));
  }
  http::response<http::string_body> res{static_cast<http::status>(answer->status),
                                        x.req.version()};
  res.set(http::field::content_type, answer->content_type);
  res.set("x-request-id", x.log.request_id);
  for (const auto& [name, value] : answer->headers) res.set(name, value);
  res.keep_alive(x.req.keep_alive());
  res.body() = std::move(answer->body);
  res.prepare_payload();
  x.log.status = answer->status;
  const std::string head = HeaderBytes(res.base());
  auto [ec, n] = co_await net::async_write(x.stream, WholeMessage(head, res.body()), kAwait);
  co_return !ec;
}

// A connection's credential: the cached copy (distributed edge) or a fresh answer. With
// `refused`, the upstream refused that credential (401): accounts refreshes it unless
// another caller already did, and the cached copy goes.
net::awaitable<absl::StatusOr<accounts::v1::Credential>> EdgeServer::Impl::FetchCredential(
    const std::string& connection_id, const accounts::v1::Credential* refused) {
  const bool cache = !services.in_process;
  if (refused == nullptr && cache) {
    if (std::optional<accounts::v1::Credential> cached = credential_cache.Get(connection_id)) {
      co_return std::move(*cached);
    }
  }
  accounts::v1::GetCredentialRequest creq;
  creq.set_connection_id(connection_id);
  if (refused != nullptr) {
    creq.set_refresh(true);
    creq.set_failed_token_sha256(refused->token_sha256());
    if (cache) credential_cache.Erase(connection_id);
  }
  auto got = co_await AwaitCall<accounts::v1::Credential>(
      [&](auto cb) { services.accounts->GetCredential(creq, std::move(cb)); });
  if (got.ok() && cache) {
    // An expiring token is used until a minute before its expiry, then fetched again.
    const std::chrono::milliseconds ttl =
        CredentialCacheTtl(got->expires_at_ms(), NowMs(), kCredentialCacheTtl);
    if (ttl.count() > 0) credential_cache.Put(connection_id, *got, ttl);
  }
  co_return got;
}

absl::StatusOr<UpstreamEndpoint> EdgeServer::Impl::Endpoint(const std::string& base_url,
                                                             const std::string& proxy) {
  const std::string key = proxy.empty() ? base_url : absl::StrCat(base_url, "\n", proxy);
  std::lock_guard<std::mutex> lock(endpoints_mu);
  auto it = endpoints.find(key);
  if (it == endpoints.end()) {
    auto ep = ParseBaseUrl(base_url);
    if (!ep.ok()) return ep.status();
    if (absl::Status s = ApplyProxy(*ep, proxy); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("connection proxy: ", s.message()));
    }
    it = endpoints.emplace(key, std::move(ep).value()).first;
  }
  return it->second;
}

net::awaitable<bool> EdgeServer::Impl::Proxy(Exchange& x, ChatRequestInfo& info) {
  RequestLog& log = x.log;
  log.requested_model = info.model;
  log.stream = info.stream;
  log.record_usage = true;

  router::v1::PlanRequest plan_req;
  plan_req.set_request_id(log.request_id);
  plan_req.set_model(info.model);
  plan_req.set_client_key_id(log.client_key_id);
  plan_req.set_client_format(x.format);
  plan_req.set_stream(info.stream);
  std::string_view session = Header(x.req, "x-session-id");
  if (session.empty()) session = Header(x.req, "x_session_id");
  plan_req.set_session_id(std::string(session));
  log.session_id = std::string(session);

  // The budget reservation runs while the router plans.
  usage::v1::ReserveRequest reserve_req;
  reserve_req.set_request_id(log.request_id);
  reserve_req.set_client_key_id(log.client_key_id);
  reserve_req.set_team(log.team);
  reserve_req.set_model(info.model);
  reserve_req.set_estimated_input_tokens(static_cast<int64_t>(x.req.body().size() / 4));
  reserve_req.set_max_output_tokens(MaxOutputTokens(info));
  if (x.key) {
    // Counted by the usage service, so the limits hold across every edge replica.
    reserve_req.set_rpm_limit(x.key->rpm_limit());
    reserve_req.set_tpm_limit(x.key->tpm_limit());
  }
  // A key with no budget and no limits is remembered for a few seconds (distributed mode),
  // so that its requests skip the reservation call: a budget set through the admin API then
  // applies within kUnbudgetedTtl.
  const bool limited = x.key && (x.key->rpm_limit() > 0 || x.key->tpm_limit() > 0);
  const std::string budget_key = absl::StrCat(log.client_key_id, "\x1f", log.team);
  std::shared_ptr<Pending<usage::v1::Reservation>> reservation;
  if (services.in_process || limited || !unbudgeted.Get(budget_key)) {
    reservation = StartCall<usage::v1::Reservation>(
        x.stream.get_executor(),
        [&](auto cb) { services.usage->Reserve(reserve_req, std::move(cb)); });
  }

  // When every candidate is cooling down the router may ask us to wait for the earliest and
  // plan again (wait-for-cooldown), a bounded number of times.
  absl::StatusOr<router::v1::RoutePlan> plan;
  for (int waits = 0;; ++waits) {
    plan = co_await Await<router::v1::RoutePlan>(
        services.in_process, [&](auto cb) { services.router->Plan(plan_req, std::move(cb)); });
    if (!plan.ok() || plan->candidates_size() > 0 || plan->wait_ms() <= 0 ||
        waits >= plan->max_wait_retries() || draining) {
      break;
    }
    metrics.CooldownWait();
    net::steady_timer timer(x.worker.ioc);
    timer.expires_after(std::chrono::milliseconds(plan->wait_ms()));
    auto [wec] = co_await timer.async_wait(kAwait);
    if (wec) break;
  }
  // The reservation ran alongside; from here on, the request's end settles it.
  absl::StatusOr<usage::v1::Reservation> reserved = usage::v1::Reservation();
  if (reservation) {
    reserved = co_await AwaitPending(reservation);
  } else {
    reserved->set_allowed(true);
  }
  if (reserved.ok()) {
    x.reservation_id = reserved->id();
    if (reservation && !services.in_process && !limited && reserved->allowed() &&
        reserved->id().empty() && reserved->remaining_usd() < 0) {
      unbudgeted.Put(budget_key, true, kUnbudgetedTtl);
    }
  } else {
    // Budgets fail open when the usage service cannot answer; the record still counts.
    LogWarn("budget reservation failed",
            {{"request_id", log.request_id}, {"error", SV(reserved.status().message())}});
  }
  if (!plan.ok()) {
    const int status = HttpStatusFromStatus(plan.status());
    const char* code = status == 404 ? "model_not_found" : "invalid_request_error";
    co_return co_await ReplyError(x.stream, x.req, log, x.format, status,
                                  SV(plan.status().message()), code);
  }
  if (plan->candidates_size() == 0) co_return co_await ReplyUnavailable(x, *plan, info.model);

  if (reserved.ok() && !reserved->allowed()) {
    // Over budget or over the key's rate limits: 429 in the client's format, naming the
    // limit and when to retry.
    std::string code = "budget_exceeded";
    if (reserved->code() == "rate_limit_exceeded") code = "rate_limit_exceeded";
    HttpError err = MakeHttpError(x.format, 429, reserved->message(), code);
    log.error_code = code;
    metrics.Unavailable(code);
    std::string retry_after = std::to_string(std::max<int64_t>(1, reserved->retry_after_seconds()));
    co_return co_await Reply(x.stream, x.req, log, err.status, std::move(err.body),
                             "application/json", "retry-after", std::move(retry_after));
  }

  // Try the candidates in order until one answers. A paced candidate after the first needs
  // an in-flight slot first; a busy one is passed over.
  AttemptResult result;
  result.error = absl::UnavailableError("no upstream was tried");
  const int attempts = std::min(plan->candidates_size(), kMaxAttempts);
  int tried = 0;
  for (int i = 0; i < attempts; ++i) {
    const bool last_candidate = i + 1 == attempts;
    router::v1::Candidate cand = plan->candidates(i);
    if (cand.paced() && cand.lease_id().empty()) {
      router::v1::AcquireRequest acquire;
      acquire.set_request_id(log.request_id);
      *acquire.mutable_candidate() = cand;
      auto slot = co_await Await<router::v1::AcquireResponse>(
          services.in_process,
          [&](auto cb) { services.router->Acquire(acquire, std::move(cb)); });
      if (slot.ok() && !slot->granted()) continue;
      if (slot.ok()) cand.set_lease_id(slot->lease_id());
    }
    ++tried;
    result = co_await Attempt(x, info, cand, last_candidate);
    if (result.kind == AttemptResult::kAnswered) {
      metrics.CandidatesTried(tried);
      co_return result.alive;
    }
    if (result.kind == AttemptResult::kStop) break;
    if (!last_candidate) metrics.Fallback(cand.provider());
  }
  metrics.CandidatesTried(tried);
  const int status = result.status == 0 ? 502 : result.status;
  std::string message;
  const char* code = "";
  if (status == 502) {
    message = absl::StrCat("Upstream unreachable: ", result.error.message());
    code = "upstream_unreachable";
  } else {
    message = std::string(result.error.message());
  }
  co_return co_await ReplyError(x.stream, x.req, log, x.format, status, message, code);
}

// Nothing usable: 503 with Retry-After and why (an open breaker says so in a header).
net::awaitable<bool> EdgeServer::Impl::ReplyUnavailable(Exchange& x,
                                                        const router::v1::RoutePlan& plan,
                                                        const std::string& model) {
  RequestLog& log = x.log;
  const int64_t secs = std::max<int64_t>(1, (plan.retry_after_ms() + 999) / 1000);
  const bool breaker = plan.reason() == router::v1::UNAVAILABLE_BREAKER_OPEN;
  std::string code = "all_accounts_cooling_down";
  if (breaker) {
    code = "provider_circuit_open";
  } else if (plan.reason() == router::v1::UNAVAILABLE_PACING) {
    code = "all_accounts_rate_limited";
  }
  std::string message = plan.message();
  if (message.empty()) {
    message = absl::StrCat("Every account for '", model, "' is cooling down; retry in ",
                           secs, " s");
  }
  HttpError err = MakeHttpError(x.format, 503, message, code);
  log.error_code = code;
  log.status = 503;
  metrics.Unavailable(code);
  metrics.CandidatesTried(0);
  http::response<http::string_body> res{http::status::service_unavailable, x.req.version()};
  res.set(http::field::content_type, "application/json");
  res.set("x-request-id", log.request_id);
  if (!log.session_id.empty()) res.set("x-omniroute-session-id", log.session_id);
  res.set(http::field::retry_after, std::to_string(secs));
  if (breaker) res.set("x-omniroute-provider-breaker", "open");
  res.keep_alive(x.req.keep_alive());
  res.body() = std::move(err.body);
  res.prepare_payload();
  const std::string head = HeaderBytes(res.base());
  auto [wec, wn] = co_await net::async_write(x.stream, WholeMessage(head, res.body()), kAwait);
  co_return !wec;
}

net::awaitable<AttemptResult> EdgeServer::Impl::Attempt(Exchange& x, ChatRequestInfo& info,
                                                        const router::v1::Candidate& cand,
                                                        bool last_candidate) {
  RequestLog& log = x.log;
  log.provider = cand.provider();
  log.connection_id = cand.connection_id();
  log.upstream_model = cand.upstream_model();
  log.upstream_format = cand.format();
  const auto attempt_start = Clock::now();
  router::v1::RateLimit rate_limit;  // what the upstream's headers announce, when they do
  bool has_rate_limit = false;
  bool model_scoped = false;
  auto report = [&](int status, bool network, int64_t retry_ms) {
    router::v1::Outcome outcome;
    outcome.set_request_id(log.request_id);
    *outcome.mutable_candidate() = cand;
    outcome.set_http_status(status);
    outcome.set_network_error(network);
    outcome.set_retry_after_ms(retry_ms);
    outcome.set_model_scoped(model_scoped);
    if (has_rate_limit) *outcome.mutable_rate_limit() = rate_limit;
    outcome.set_latency_ms(static_cast<int64_t>(SecondsSince(attempt_start) * 1000));
    outcome.set_ttft_ms(log.ttft_ms);
    services.router->Report(outcome);
    const double attempt_seconds = SecondsSince(attempt_start);
    metrics.Upstream(cand.provider(), status, attempt_seconds);
    log.upstream_seconds += attempt_seconds;
  };
  AttemptResult result;

  // Credential.
  absl::StatusOr<accounts::v1::Credential> cred = co_await FetchCredential(cand.connection_id(),
                                                                           nullptr);
  if (!cred.ok()) {
    // The connection went away (deleted, logged out) after the plan: not an upstream failure.
    result.status = 503;
    result.error = absl::UnavailableError(absl::StrCat(
        "connection '", cand.connection_id(), "' cannot be used: ", cred.status().message()));
    co_return result;
  }

  // Body and path in the provider's format.
  const bool same_format = cand.format() == x.format;
  std::string upstream_body;
  std::string upstream_path;
  if (same_format) {
    if (x.format == common::v1::FORMAT_GEMINI) {
      upstream_body = x.req.body();  // the model is in the path
    } else {
      upstream_body = RewriteModel(info, cand.upstream_model());
    }
    upstream_path = UpstreamPath(cand.format(), cand.upstream_model(), info.stream);
  } else {
    translator::v1::TranslateRequestIn tin;
    tin.set_from(x.format);
    tin.set_to(cand.format());
    tin.set_body(x.req.body());
    tin.set_upstream_model(cand.upstream_model());
    tin.set_stream(info.stream);
    auto tout = co_await Await<translator::v1::TranslateRequestOut>(
        services.in_process,
        [&](auto cb) { services.translator->TranslateRequest(tin, std::move(cb)); });
    if (!tout.ok()) {
      result.error = tout.status();
      result.status = HttpStatusFromStatus(tout.status());
      // A request the translator rejects is the client's to fix.
      if (tout.status().code() == absl::StatusCode::kInvalidArgument) {
        result.kind = AttemptResult::kStop;
      }
      co_return result;
    }
    upstream_body = std::move(*tout->mutable_body());
    upstream_path = tout->path();
  }

  Request up{http::verb::post, "/", 11};
  up.set(http::field::content_type, "application/json");
  up.set(http::field::accept, info.stream ? "text/event-stream" : "application/json");
  up.set(http::field::accept_encoding, "identity");
  up.set(http::field::user_agent, "omniroute/1.0");
  up.set("x-request-id", log.request_id);
  up.set("traceparent", x.traceparent);
  up.body() = std::move(upstream_body);

  x.attempted = true;
  std::unique_ptr<UpstreamExchange> ex;
  int ustatus = 0;
  auto header = [&ex](std::string_view name) -> std::string_view {
    return ex->headers()[name];
  };
  // A 401 first refreshes the connection's credential and tries the same candidate once
  // more with it; only then does the request fail over.
  for (int round = 0;; ++round) {
    // Some credentials (Copilot, Qwen) name their own API host; some connections go through
    // an HTTP proxy.
    const std::string& base_url = cred->base_url().empty() ? cand.base_url() : cred->base_url();
    auto endpoint = Endpoint(base_url, cred->proxy());
    if (!endpoint.ok()) {
      result.error = endpoint.status();
      co_return result;
    }
    up.target(endpoint->base_path + upstream_path);
    for (const auto& h : cred->headers()) up.set(h.name(), h.value());

    auto sent = co_await x.worker.pool->Send(*endpoint, up);
    if (!sent.ok()) {
      report(0, true, 0);
      result.error = sent.status();
      co_return result;
    }
    ex = std::move(sent).value();
    ustatus = ex->status();
    const int64_t seen_ms = NowMs();
    if (services.accounts) {
      // Subscription plans announce their usage windows on every answer, refusals included.
      if (std::optional<accounts::v1::QuotaReport> quota = ExtractQuota(header, seen_ms)) {
        quota->set_connection_id(cand.connection_id());
        ReportQuota(std::move(*quota));
      }
    }
    if (const RateLimitHeaders rl = ReadRateLimitHeaders(header, seen_ms); rl.present()) {
      has_rate_limit = true;
      rate_limit.set_remaining_requests(rl.remaining_requests);
      rate_limit.set_limit_requests(rl.limit_requests);
      rate_limit.set_remaining_tokens(rl.remaining_tokens);
      rate_limit.set_limit_tokens(rl.limit_tokens);
      rate_limit.set_reset_requests_ms(rl.reset_requests_ms);
      rate_limit.set_reset_tokens_ms(rl.reset_tokens_ms);
    }
    if (ustatus >= 200 && ustatus < 300) break;

    std::string ubody;
    auto read = co_await ex->ReadAll(ubody, 1024 * 1024);
    if (ustatus == 401 && round == 0) {
      auto fresh = co_await FetchCredential(cand.connection_id(), &*cred);
      if (fresh.ok() && !SameCredential(*fresh, *cred)) {
        LogInfo("credential refreshed after a 401",
                {{"request_id", log.request_id}, {"connection", cand.connection_id()}});
        for (const auto& h : cred->headers()) up.erase(h.name());
        cred = std::move(fresh);
        continue;
      }
      if (!fresh.ok()) {
        LogWarn("credential refresh failed",
                {{"request_id", log.request_id},
                 {"connection", cand.connection_id()},
                 {"error", SV(fresh.status().message())}});
      }
    }
    const std::string retry_after(ex->headers()[http::field::retry_after]);
    const int64_t hint = RetryHintMs(header, ubody, NowMs());
    model_scoped = IsModelScopedFailure(ustatus, ubody);
    report(ustatus, false, hint);
    // A model-specific 400 (context length, unsupported parameter): another model may take it.
    const bool model_specific = IsModelSpecificError(ustatus, ubody);
    if ((Retryable(ustatus) || model_specific) && !last_candidate) {
      result.status = ustatus;
      result.error = absl::UnavailableError(absl::StrCat("HTTP ", ustatus));
      co_return result;
    }
    // The provider's own error goes through when the client speaks its format.
    log.error_code = std::to_string(ustatus);
    std::string body;
    if (same_format && read.ok() && !ubody.empty() && ubody.front() == '{') {
      body = std::move(ubody);
    } else {
      // The provider's own message, in the client's shape.
      std::string message = absl::StrCat("Upstream ", cand.provider(), " answered HTTP ", ustatus);
      if (read.ok()) {
        if (std::string detail = UpstreamErrorMessage(ubody); !detail.empty()) {
          absl::StrAppend(&message, ": ", detail);
        }
      }
      body = MakeHttpError(x.format, ustatus, message, ErrorCodeFor(ustatus)).body;
    }
    result.kind = AttemptResult::kAnswered;
    if (retry_after.empty()) {
      result.alive = co_await Reply(x.stream, x.req, log, ustatus, std::move(body));
    } else {
      result.alive = co_await Reply(x.stream, x.req, log, ustatus, std::move(body),
                                    "application/json", "retry-after", retry_after);
    }
    co_return result;
  }
  up = Request();  // a copy of the client's request, which a stream would hold for its length

  const std::string content_type(ex->headers()[http::field::content_type]);
  if (ContainsIgnoreCase(content_type, "text/event-stream")) {
    co_return co_await RelayStream(x, *ex, cand, info.model,
                                   [&](int status, bool network) { report(status, network, 0); });
  }

  std::string ubody;
  if (auto read = co_await ex->ReadAll(ubody, kMaxUpstreamBody); !read.ok()) {
    report(0, true, 0);
    result.error = read;
    co_return result;
  }
  log.ttft_ms = static_cast<int64_t>(SecondsSince(x.start) * 1000);
  report(ustatus, false, 0);
  ExtractUsage(cand.format(), ubody, &log.tokens);
  std::string_view reply_type = "application/json";
  if (same_format && !content_type.empty()) reply_type = content_type;
  if (!same_format) {
    translator::v1::TranslateResponseIn tin;
    tin.set_from(cand.format());
    tin.set_to(x.format);
    tin.set_body(std::move(ubody));
    tin.set_model(info.model);
    auto tout = co_await Await<translator::v1::TranslateResponseOut>(
        services.in_process,
        [&](auto cb) { services.translator->TranslateResponse(tin, std::move(cb)); });
    result.kind = AttemptResult::kAnswered;
    if (!tout.ok()) {
      const std::string message =
          absl::StrCat("Cannot translate the provider's answer: ", tout.status().message());
      result.alive = co_await ReplyError(x.stream, x.req, log, x.format, 502, message,
                                         "translation_failed");
      co_return result;
    }
    ubody = std::move(*tout->mutable_body());
  }
  result.kind = AttemptResult::kAnswered;
  if (x.legacy_completions) ubody = ChatResponseToCompletions(ubody);
  result.alive = co_await Reply(x.stream, x.req, log, ustatus, std::move(ubody), reply_type);
  co_return result;
}

void EdgeServer::Impl::ReportQuota(accounts::v1::QuotaReport report) {
  {
    std::lock_guard<std::mutex> lock(quota_mu);
    auto [it, first] = quota_sent.try_emplace(report.connection_id());
    if (!first && !QuotaReportDue(it->second, report)) return;
    it->second = report;
  }
  services.accounts->ReportQuota(report);
}

// Forwards an upstream SSE stream, translated when the formats differ. The client's answer
// starts with the upstream's first bytes, so a stream that dies before them fails over.
net::awaitable<AttemptResult> EdgeServer::Impl::RelayStream(
    Exchange& x, UpstreamExchange& ex, const router::v1::Candidate& cand,
    const std::string& client_model, const std::function<void(int, bool)>& report) {
  RequestLog& log = x.log;
  AttemptResult result;
  translator::StreamTranslationPtr translation;
  if (cand.format() != x.format) {
    translation = services.translator->OpenStream(cand.format(), x.format, client_model);
    if (!translation) {
      report(ex.status(), false);
      result.status = 501;
      result.error = absl::UnimplementedError(
          absl::StrCat("streams from ", AV(FormatName(cand.format())), " to ",
                       AV(FormatName(x.format)), " cannot be translated"));
      co_return result;
    }
  }
  std::string piece;
  bool more = true;
  while (piece.empty() && more) {
    auto r = co_await ex.ReadSome(piece);
    if (!r.ok()) {
      report(0, true);
      result.error = r.status();
      co_return result;
    }
    more = *r;
  }
  if (piece.empty()) {
    report(0, true);
    result.error = absl::UnavailableError("upstream stream ended before its first event");
    co_return result;
  }
  log.ttft_ms = static_cast<int64_t>(SecondsSince(x.start) * 1000);
  result.kind = AttemptResult::kAnswered;

  http::response<http::empty_body> res{http::status::ok, x.req.version()};
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  res.set("x-request-id", log.request_id);
  if (!log.session_id.empty()) res.set("x-omniroute-session-id", log.session_id);
  res.keep_alive(x.req.keep_alive());
  res.chunked(true);
  std::string head = HeaderBytes(res.base());  // goes out with the first chunk
  log.status = 200;
  bool ended = false;  // the last chunk went out
  SseParser sse_parser;
  SseParser legacy_parser;  // the client's chat events, rewritten as text completions
  std::string legacy;
  absl::Status stream_error;
  std::string out;
  while (true) {
    // Usage travels in the provider's events.
    (void)sse_parser.Feed(piece, [&](const SseEvent& ev) {
      if (absl::StrContains(AV(ev.data), "sage")) ExtractUsage(cand.format(), ev.data, &log.tokens);
    });
    std::string_view chunk = piece;
    if (translation) {
      auto t = co_await Await<std::string>(services.in_process, [&](auto cb) {
        translation->Push(std::move(piece), !more, std::move(cb));
      });
      if (!t.ok()) {
        stream_error = t.status();
        break;
      }
      out = std::move(t).value();
      chunk = out;
    }
    if (x.legacy_completions) {
      legacy.clear();
      (void)legacy_parser.Feed(chunk, [&](const SseEvent& ev) {
        absl::StrAppend(&legacy, "data: ",
                        ev.data == "[DONE]" ? std::string("[DONE]") : ChatChunkToCompletions(ev.data),
                        "\n\n");
      });
      chunk = legacy;
    }
    if (!chunk.empty() || !more) {
      const bool last = !more;
      const bool first = !head.empty();
      if (!co_await WriteChunk(x.stream, head, chunk, last)) {
        report(ex.status(), false);
        log.status = 499;
        result.alive = false;
        co_return result;
      }
      if (first) x.ReleaseRequestBody();
      ended = last;
    }
    if (!more) break;
    piece.clear();
    auto r = co_await ex.ReadSome(piece);
    if (!r.ok()) {
      stream_error = r.status();
      break;
    }
    more = *r;
  }
  report(stream_error.ok() ? ex.status() : 0, !stream_error.ok());
  if (!stream_error.ok()) {
    // Bytes already reached the client: the error goes in-stream.
    log.status = 502;
    log.error_code = "stream_interrupted";
    const std::string event = StreamErrorEvent(
        x.format, 502, absl::StrCat("Upstream stream interrupted: ", stream_error.message()),
        "stream_interrupted");
    result.alive = co_await WriteChunk(x.stream, head, event, /*last=*/true);
    co_return result;
  }
  if (!ended) result.alive = co_await WriteChunk(x.stream, head, std::string_view(), /*last=*/true);
  co_return result;
}

// Metrics, the usage record and the access log line of a finished request.
void EdgeServer::Impl::Finish(Exchange& x) {
  const RequestLog& log = x.log;
  if (!x.reservation_id.empty()) {
    // The usage record below carries the real cost; the hold goes when it lands.
    usage::v1::SettleRequest settle;
    settle.set_reservation_id(x.reservation_id);
    settle.set_request_id(log.request_id);
    settle.set_actual_cost_usd(-1);
    settle.set_cancelled(!x.attempted);
    services.usage->Settle(settle, [](absl::StatusOr<usage::v1::SettleResponse>) {});
  }
  const double seconds = SecondsSince(x.start);
  metrics.Request(log.route, log.status, log.provider, seconds);
  if (log.tokens.present) {
    metrics.Tokens(log.provider, "input", log.tokens.input);
    metrics.Tokens(log.provider, "output", log.tokens.output);
  }
  if (log.status >= 200 && log.status < 300 && !log.provider.empty()) {
    metrics.GenAi(log.provider, x.format == common::v1::FORMAT_OPENAI_CHAT ? "chat" : log.route,
                  seconds, log.ttft_ms / 1000.0, log.tokens.input, log.tokens.output,
                  seconds - log.upstream_seconds);
  }
  if (log.record_usage && services.usage) {
    usage::v1::UsageRecord rec;
    rec.set_request_id(log.request_id);
    rec.set_timestamp_ms(NowMs());
    rec.set_client_key_id(log.client_key_id);
    rec.set_team(log.team);
    rec.set_provider(log.provider);
    rec.set_connection_id(log.connection_id);
    rec.set_requested_model(log.requested_model);
    rec.set_upstream_model(log.upstream_model);
    rec.set_client_format(x.format);
    rec.set_upstream_format(log.upstream_format);
    rec.set_status(log.status);
    rec.set_error_code(log.error_code);
    rec.set_latency_ms(static_cast<int64_t>(seconds * 1000));
    rec.set_ttft_ms(log.ttft_ms);
    rec.set_input_tokens(log.tokens.input);
    rec.set_output_tokens(log.tokens.output);
    rec.set_cached_tokens(log.tokens.cached);
    rec.set_cache_creation_tokens(log.tokens.cache_creation);
    rec.set_reasoning_tokens(log.tokens.reasoning);
    rec.set_stream(log.stream);
    services.usage->Record(std::move(rec));
  }
  if (log.route != "healthz" && log.route != "readyz" && log.route != "metrics") {
    const std::string status = std::to_string(log.status);
    const std::string ms = absl::StrCat(static_cast<int64_t>(seconds * 1e6) / 1000.0);
    LogInfo("request", {{"request_id", log.request_id},
                        {"method", std::string_view(x.req.method_string())},
                        {"path", x.path},
                        {"status", status},
                        {"model", log.requested_model},
                        {"provider", log.provider},
                        {"connection", log.connection_id},
                        {"trace_id", std::string_view(x.traceparent).substr(3, 32)},
                        {"ms", ms}});
  }
}

int RunEdgeUntilSignal(ConfigPtr config, EdgeServices services, std::string mode,
                       EdgeReload reload) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // every thread started below inherits it
  signal(SIGPIPE, SIG_IGN);
  const ConfigPtr initial = config;
  EdgeServer server(std::move(config), std::move(services), mode);
  if (absl::Status s = server.Start(); !s.ok()) {
    LogError("cannot start", {{"error", SV(s.message())}});
    return 1;
  }
  ConfigReloaderOptions reload_options;
  reload_options.flag_path = reload.flag_path;
  reload_options.service = mode == "all-in-one" ? "omniroute" : "edge";
  reload_options.on_result = [&server](const char* result) { server.CountConfigReload(result); };
  auto reloader = std::make_unique<ConfigReloader>(
      initial,
      [&server, apply = std::move(reload.apply)](const ConfigPtr& next) -> absl::Status {
        if (apply) {
          if (absl::Status s = apply(next); !s.ok()) return s;
        }
        server.ReloadConfig(next);
        return absl::OkStatus();
      },
      std::move(reload_options));
  reloader->Start();
  int sig = 0;
  for (;;) {
    if (sigwait(&set, &sig) != 0) continue;
    if (sig != SIGHUP) break;
    reloader->RequestReload();
  }
  reloader.reset();  // no reload while shutting down
  LogInfo("shutting down", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  server.Shutdown();
  LogInfo("stopped");
  return 0;
}

}  // namespace omniroute::edge

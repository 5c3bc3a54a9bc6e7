#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::edge {

namespace net = boost::asio;
namespace http = boost::beast::http;

// Completion token: co_await yields (error_code, results...) instead of throwing.
inline constexpr auto kAwait = net::as_tuple(net::use_awaitable);

// Where a provider's API lives, parsed once from its base URL (and the connection's proxy).
struct UpstreamEndpoint {
  bool tls = false;
  std::string host;
  std::string port;
  std::string base_path;  // e.g. "/v1", no trailing slash
  // The HTTP proxy the connection goes through (empty host: direct). https upstreams are
  // tunnelled with CONNECT; plain http requests go to the proxy in absolute form.
  std::string proxy_host;
  std::string proxy_port;
  std::string proxy_authorization;  // "Basic ..." from the proxy URL's user:password, or empty
  // Pool key: scheme://host:port, plus the proxy (connections through different proxies, or
  // as different proxy users, never mix).
  std::string key;
};

absl::StatusOr<UpstreamEndpoint> ParseBaseUrl(std::string_view url);

// The start line and header fields of a message as sent on the wire, ending in the blank
// line. With the body, one gathered write sends a whole message: Beast's serializer walks
// a long buffer sequence on every write, which costs more than the small messages here.
std::string HeaderBytes(const http::request_header<>& header);
std::string HeaderBytes(const http::response_header<>& header);

inline std::array<net::const_buffer, 2> WholeMessage(const std::string& head,
                                                     const std::string& body) {
  return {net::buffer(head), net::buffer(body)};
}

// Routes `endpoint` through the HTTP proxy `proxy_url` ("http://[user:password@]host[:port]",
// port 80 by default; user and password percent-decoded). An empty URL leaves it direct.
// Error messages never contain the user or password.
absl::Status ApplyProxy(UpstreamEndpoint& endpoint, std::string_view proxy_url);

struct UpstreamTimeouts {
  std::chrono::milliseconds connect{10000};
  std::chrono::milliseconds read{600000};  // per read: the longest silence tolerated
};

class UpstreamPool;
struct UpstreamConnection;

// One request/response on a pooled connection. The status and headers are read; the body
// is read piece by piece. The connection goes back to the pool when the body was read to
// its end and both sides keep the connection alive.
class UpstreamExchange {
 public:
  UpstreamExchange(UpstreamPool* pool, std::unique_ptr<UpstreamConnection> conn);
  ~UpstreamExchange();

  int status() const;
  const http::fields& headers() const;

  // Appends the next body bytes (at most `chunk`) to `out`. Returns false once the body is
  // complete. A stream waits with `chunk` bytes reserved, so the default is small: SSE
  // events are, and thousands of open streams should not each hold a large buffer.
  net::awaitable<absl::StatusOr<bool>> ReadSome(std::string& out, size_t chunk = 4096);

  // Reads the rest of the body into `out`, failing past `limit` bytes.
  net::awaitable<absl::Status> ReadAll(std::string& out, size_t limit);

 private:
  UpstreamPool* pool_;
  std::unique_ptr<UpstreamConnection> conn_;
  bool done_ = false;
  bool failed_ = false;
};

// Keep-alive HTTP/1.1 (and HTTPS) connections to upstreams. One pool per event-loop
// thread: it is used from that thread only, so it needs no lock.
class UpstreamPool {
 public:
  UpstreamPool(net::any_io_executor executor, net::ssl::context* tls, UpstreamTimeouts timeouts);
  ~UpstreamPool();

  // Sends `request` (target already set; Host is set here) and reads the response header.
  // A reused connection that turns out closed is replaced once, transparently.
  net::awaitable<absl::StatusOr<std::unique_ptr<UpstreamExchange>>> Send(
      const UpstreamEndpoint& endpoint, http::request<http::string_body>& request);

  // Closes idle connections.
  void Clear();

  // Timeouts of connections opened and reads started from now on.
  void SetTimeouts(UpstreamTimeouts timeouts) { timeouts_ = timeouts; }

 private:
  friend class UpstreamExchange;
  void Return(std::unique_ptr<UpstreamConnection> conn);
  std::unique_ptr<UpstreamConnection> TakeIdle(const std::string& key);
  net::awaitable<absl::StatusOr<std::unique_ptr<UpstreamConnection>>> Connect(
      const UpstreamEndpoint& endpoint);
  // Asks the endpoint's proxy for a tunnel to the upstream (CONNECT host:port); a 2xx answer
  // leaves `stream` connected to the upstream.
  net::awaitable<absl::Status> Tunnel(boost::beast::tcp_stream& stream,
                                      const UpstreamEndpoint& endpoint);

  net::any_io_executor executor_;
  net::ssl::context* tls_;
  UpstreamTimeouts timeouts_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
};

}  // namespace omniroute::edge

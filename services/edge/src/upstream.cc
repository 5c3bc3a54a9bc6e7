#include "upstream.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace omniroute::edge {

namespace beast = boost::beast;
using tcp = net::ip::tcp;
constexpr size_t kMaxIdlePerKey = 256;
constexpr size_t kReadChunk = 16 * 1024;

struct UpstreamConnection {
  std::string key;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::buffer_body>> parser;

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  // Calls fn with whichever stream this connection uses.
  template <typename Fn>
  auto Visit(Fn&& fn) {
    return secure ? fn(*secure) : fn(*plain);
  }
};

absl::StatusOr<UpstreamEndpoint> ParseBaseUrl(std::string_view url) {
  UpstreamEndpoint ep;
  std::string_view rest;
  if (absl::StartsWithIgnoreCase(AV(url), "https://")) {
    ep.tls = true;
    rest = url.substr(8);
  } else if (absl::StartsWithIgnoreCase(AV(url), "http://")) {
    rest = url.substr(7);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("base URL '", AV(url), "' is not http(s)"));
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  ep.base_path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!ep.base_path.empty() && ep.base_path.back() == '/') ep.base_path.pop_back();
  if (authority.empty()) return absl::InvalidArgumentError("base URL has no host");
  if (authority.front() == '[') {  // IPv6 literal
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("bad IPv6 host");
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    ep.port = absl::StartsWith(AV(after), ":") ? std::string(after.substr(1)) : "";
  } else {
    size_t colon = authority.rfind(':');
    ep.host = std::string(authority.substr(0, colon));
    ep.port = colon == std::string_view::npos ? "" : std::string(authority.substr(colon + 1));
  }
  if (ep.port.empty()) ep.port = ep.tls ? "443" : "80";
  ep.key = absl::StrCat(ep.tls ? "https://" : "http://", ep.host, ":", ep.port);
  return ep;
}

UpstreamExchange::UpstreamExchange(UpstreamPool* pool, std::unique_ptr<UpstreamConnection> conn)
    : pool_(pool), conn_(std::move(conn)) {
  done_ = conn_->parser->is_done();
}

UpstreamExchange::~UpstreamExchange() {
  if (conn_ && done_ && !failed_ && conn_->parser->get().keep_alive()) {
    conn_->parser.reset();
    pool_->Return(std::move(conn_));
  }
}

int UpstreamExchange::status() const { return conn_->parser->get().result_int(); }

const http::fields& UpstreamExchange::headers() const { return conn_->parser->get().base(); }

net::awaitable<absl::StatusOr<bool>> UpstreamExchange::ReadSome(std::string& out) {
  if (done_) co_return false;
  auto& parser = *conn_->parser;
  const size_t old = out.size();
  out.resize(old + kReadChunk);
  auto& body = parser.get().body();
  body.data = out.data() + old;
  body.size = kReadChunk;
  beast::error_code ec;
  conn_->lowest().expires_after(pool_->timeouts_.read);
  std::tie(ec, std::ignore) = co_await conn_->Visit([&](auto& s) {
    return http::async_read_some(s, conn_->buffer, parser, kAwait);
  });
  out.resize(old + kReadChunk - body.size);
  if (ec == http::error::need_buffer) ec = {};
  if (ec) {
    failed_ = true;
    co_return absl::UnavailableError(
        ec == beast::error::timeout ? "upstream timed out"
                                    : absl::StrCat("upstream read failed: ", ec.message()));
  }
  done_ = parser.is_done();
  co_return !done_;
}

net::awaitable<absl::Status> UpstreamExchange::ReadAll(std::string& out, size_t limit) {
  while (true) {
    auto more = co_await ReadSome(out);
    if (!more.ok()) co_return more.status();
    if (out.size() > limit) {
      failed_ = true;
      co_return absl::ResourceExhaustedError("upstream answer exceeds the size limit");
    }
    if (!*more) co_return absl::OkStatus();
  }
}

UpstreamPool::UpstreamPool(net::any_io_executor executor, net::ssl::context* tls,
                           UpstreamTimeouts timeouts)
    : executor_(std::move(executor)), tls_(tls), timeouts_(timeouts) {}

UpstreamPool::~UpstreamPool() = default;

void UpstreamPool::Clear() { idle_.clear(); }

void UpstreamPool::Return(std::unique_ptr<UpstreamConnection> conn) {
  auto& list = idle_[conn->key];
  if (list.size() < kMaxIdlePerKey) {
    conn->lowest().expires_never();
    list.push_back(std::move(conn));
  }
}

std::unique_ptr<UpstreamConnection> UpstreamPool::TakeIdle(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  while (!it->second.empty()) {
    auto conn = std::move(it->second.back());
    it->second.pop_back();
    // A connection the server closed while it sat idle reads as end-of-file (or an error)
    // without blocking; a live one has nothing to read. One syscall, no data consumed.
    char byte;
    const ssize_t n = ::recv(conn->lowest().socket().native_handle(), &byte, 1,
                             MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return conn;
  }
  return nullptr;
}

net::awaitable<absl::StatusOr<std::unique_ptr<UpstreamConnection>>> UpstreamPool::Connect(
    const UpstreamEndpoint& ep) {
  tcp::resolver resolver(executor_);
  auto [rec, results] = co_await resolver.async_resolve(ep.host, ep.port, kAwait);
  if (rec) {
    co_return absl::UnavailableError(
        absl::StrCat("cannot resolve upstream host ", ep.host, ": ", rec.message()));
  }
  auto conn = std::make_unique<UpstreamConnection>();
  conn->key = ep.key;
  if (ep.tls) {
    conn->secure.emplace(executor_, *tls_);
  } else {
    conn->plain.emplace(executor_);
  }
  auto& lowest = conn->lowest();
  lowest.expires_after(timeouts_.connect);
  auto [cec, endpoint] = co_await lowest.async_connect(results, kAwait);
  if (cec) {
    co_return absl::UnavailableError(absl::StrCat(
        "cannot connect to upstream ", ep.host, ":", ep.port, ": ",
        cec == beast::error::timeout ? "connect timed out" : cec.message()));
  }
  lowest.socket().set_option(tcp::no_delay(true));
  if (ep.tls) {
    SSL* ssl = conn->secure->native_handle();
    if (!SSL_set_tlsext_host_name(ssl, ep.host.c_str())) {
      co_return absl::UnavailableError("cannot set TLS server name");
    }
    conn->secure->set_verify_callback(net::ssl::host_name_verification(ep.host));
    auto [hec] = co_await conn->secure->async_handshake(net::ssl::stream_base::client, kAwait);
    if (hec) {
      co_return absl::UnavailableError(
          absl::StrCat("TLS handshake with ", ep.host, " failed: ", hec.message()));
    }
  }
  co_return conn;
}

net::awaitable<absl::StatusOr<std::unique_ptr<UpstreamExchange>>> UpstreamPool::Send(
    const UpstreamEndpoint& ep, http::request<http::string_body>& request) {
  request.set(http::field::host, ep.port == (ep.tls ? "443" : "80")
                                     ? ep.host
                                     : absl::StrCat(ep.host, ":", ep.port));
  request.keep_alive(true);
  request.prepare_payload();
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The retry after a reused connection failed always takes a fresh one.
    std::unique_ptr<UpstreamConnection> conn = attempt == 0 ? TakeIdle(ep.key) : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      auto fresh = co_await Connect(ep);
      if (!fresh.ok()) co_return fresh.status();
      conn = std::move(fresh).value();
    }
    conn->lowest().expires_after(timeouts_.read);
    auto [wec, wn] = co_await conn->Visit(
        [&](auto& s) { return http::async_write(s, request, kAwait); });
    if (wec) {
      if (reused) continue;
      co_return absl::UnavailableError(absl::StrCat("upstream write failed: ", wec.message()));
    }
    conn->parser.emplace();
    conn->parser->body_limit(boost::none);
    auto [rec, rn] = co_await conn->Visit([&](auto& s) {
      return http::async_read_header(s, conn->buffer, *conn->parser, kAwait);
    });
    if (rec) {
      // A kept-alive connection the server closed meanwhile: retry once on a fresh one.
      if (reused && (rec == http::error::end_of_stream || rec == net::error::eof ||
                     rec == net::error::connection_reset || rec == net::error::broken_pipe)) {
        continue;
      }
      co_return absl::UnavailableError(
          rec == beast::error::timeout ? "upstream timed out"
                                       : absl::StrCat("upstream read failed: ", rec.message()));
    }
    co_return std::make_unique<UpstreamExchange>(this, std::move(conn));
  }
  co_return absl::UnavailableError("upstream closed the connection");
}

}  // namespace omniroute::edge

#include "upstream.h"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/secrets.h"
#include "common/strings.h"

namespace omniroute::edge {

namespace beast = boost::beast;
using tcp = net::ip::tcp;
constexpr size_t kMaxIdlePerKey = 256;
constexpr size_t kReadChunk = 16 * 1024;
// The largest answer header a proxy may send to CONNECT.
constexpr uint32_t kMaxProxyHeader = 16 * 1024;

struct UpstreamConnection {
  std::string key;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::buffer_body>> parser;

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  // The read deadline: `timeout` from now. Moving a deadline costs a system call, so one set
  // less than a second ago stays (the silence tolerated is then up to a second shorter).
  void ArmRead(std::chrono::milliseconds timeout) {
    const auto now = std::chrono::steady_clock::now();
    if (armed && now - armed_at < std::chrono::seconds(1)) return;
    lowest().expires_after(timeout);
    armed = true;
    armed_at = now;
  }
  void Disarm() {
    lowest().expires_never();
    armed = false;
  }
  bool armed = false;
  std::chrono::steady_clock::time_point armed_at;
  std::chrono::steady_clock::time_point idle_since;  // when it went back to the pool

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

namespace {

// host:port as written in a URL authority (IPv6 literals in brackets).
std::string Authority(const std::string& host, const std::string& port) {
  const bool v6 = host.find(':') != std::string::npos;
  return v6 ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    const int hi = i + 2 < in.size() ? HexDigit(in[i + 1]) : -1;
    const int lo = i + 2 < in.size() ? HexDigit(in[i + 2]) : -1;
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad percent-encoding");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

}  // namespace

absl::Status ApplyProxy(UpstreamEndpoint& ep, std::string_view url) {
  if (url.empty()) return absl::OkStatus();
  if (!absl::StartsWithIgnoreCase(AV(url), "http://")) {
    return absl::InvalidArgumentError("proxy URL must start with http://");
  }
  std::string_view authority = url.substr(7);
  if (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
  if (authority.find_first_of("/?#") != std::string_view::npos) {
    return absl::InvalidArgumentError("proxy URL must be http://host:port (no path)");
  }
  std::string userinfo;
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view raw = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = raw.find(':');
    auto user = PercentDecode(raw.substr(0, colon));
    auto password = PercentDecode(colon == std::string_view::npos ? "" : raw.substr(colon + 1));
    if (!user.ok() || !password.ok()) {
      return absl::InvalidArgumentError("proxy URL has badly encoded credentials");
    }
    userinfo = absl::StrCat(*user, ":", *password);
  }
  std::string host;
  std::string port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("proxy URL: bad IPv6 host");
    host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::StartsWith(AV(after), ":")) {
      return absl::InvalidArgumentError("proxy URL: bad IPv6 host");
    }
    if (!after.empty()) port = std::string(after.substr(1));
  } else {
    const size_t colon = authority.rfind(':');
    host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = std::string(authority.substr(colon + 1));
  }
  if (host.empty()) return absl::InvalidArgumentError("proxy URL has no host");
  if (port.empty()) port = "80";
  int port_number = 0;
  if (!absl::SimpleAtoi(AV(port), &port_number) || port_number <= 0 || port_number > 65535) {
    return absl::InvalidArgumentError("proxy URL has a bad port");
  }
  ep.proxy_host = std::move(host);
  ep.proxy_port = std::move(port);
  ep.proxy_authorization.clear();
  absl::StrAppend(&ep.key, " via ", Authority(ep.proxy_host, ep.proxy_port));
  if (!userinfo.empty()) {
    ep.proxy_authorization = absl::StrCat("Basic ", crypto::Base64Encode(userinfo));
    // Told apart by a digest: the key never holds the password itself.
    absl::StrAppend(&ep.key, " as ", Sha256Hex(userinfo).substr(0, 16));
  }
  return absl::OkStatus();
}

namespace {

void AppendFields(std::string& out, const http::fields& fields) {
  for (const auto& f : fields) {
    const auto name = f.name_string();
    const auto value = f.value();
    out.append(name.data(), name.size());
    out += ": ";
    out.append(value.data(), value.size());
    out += "\r\n";
  }
  out += "\r\n";
}

void AppendVersion(std::string& out, unsigned version) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
}

}  // namespace

std::string HeaderBytes(const http::request_header<>& header) {
  std::string out;
  out.reserve(512);
  const auto method = header.method_string();
  const auto target = header.target();
  out.append(method.data(), method.size());
  out += ' ';
  out.append(target.data(), target.size());
  out += ' ';
  AppendVersion(out, header.version());
  out += "\r\n";
  AppendFields(out, header);
  return out;
}

std::string HeaderBytes(const http::response_header<>& header) {
  std::string out;
  out.reserve(256);
  AppendVersion(out, header.version());
  out += ' ';
  const unsigned status = header.result_int();
  out += static_cast<char>('0' + status / 100 % 10);
  out += static_cast<char>('0' + status / 10 % 10);
  out += static_cast<char>('0' + status % 10);
  out += ' ';
  const auto reason = header.reason();
  out.append(reason.data(), reason.size());
  out += "\r\n";
  AppendFields(out, header);
  return out;
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

net::awaitable<absl::StatusOr<bool>> UpstreamExchange::ReadSome(std::string& out, size_t chunk) {
  if (done_) co_return false;
  auto& parser = *conn_->parser;
  const size_t old = out.size();
  out.resize(old + chunk);
  auto& body = parser.get().body();
  body.data = out.data() + old;
  body.size = chunk;
  beast::error_code ec;
  conn_->ArmRead(pool_->timeouts_.read);
  std::tie(ec, std::ignore) = co_await conn_->Visit([&](auto& s) {
    return http::async_read_some(s, conn_->buffer, parser, kAwait);
  });
  out.resize(old + chunk - body.size);
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
    // A body of known length is read into exactly its size: the string is zero-filled up
    // to the size asked for, which for a 16 KiB chunk costs more than a small answer.
    size_t chunk = kReadChunk;
    if (!done_) {
      if (auto remaining = conn_->parser->content_length_remaining()) {
        chunk = static_cast<size_t>(std::clamp<uint64_t>(*remaining, 1, kReadChunk));
      }
    }
    auto more = co_await ReadSome(out, chunk);
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
    conn->Disarm();
    conn->idle_since = std::chrono::steady_clock::now();
    list.push_back(std::move(conn));
  }
}

std::unique_ptr<UpstreamConnection> UpstreamPool::TakeIdle(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  while (!it->second.empty()) {
    auto conn = std::move(it->second.back());
    it->second.pop_back();
    // Servers close kept-alive connections after seconds of silence, not within one: a
    // connection back for less than that is taken as it is (a send that still fails on it
    // is retried once on a fresh connection).
    if (std::chrono::steady_clock::now() - conn->idle_since < std::chrono::seconds(1)) {
      return conn;
    }
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
  const bool proxied = !ep.proxy_host.empty();
  // The first hop: the proxy, or the upstream itself. Messages name the proxy, never its
  // credentials.
  const std::string& hop_host = proxied ? ep.proxy_host : ep.host;
  const std::string& hop_port = proxied ? ep.proxy_port : ep.port;
  const std::string hop_name =
      proxied ? absl::StrCat("proxy ", Authority(ep.proxy_host, ep.proxy_port))
              : absl::StrCat("upstream ", ep.host, ":", ep.port);
  tcp::resolver resolver(executor_);
  auto [rec, results] = co_await resolver.async_resolve(hop_host, hop_port, kAwait);
  if (rec) {
    co_return absl::UnavailableError(absl::StrCat("cannot resolve ",
                                                  proxied ? "proxy" : "upstream", " host ",
                                                  hop_host, ": ", rec.message()));
  }
  auto conn = std::make_unique<UpstreamConnection>();
  conn->key = ep.key;
  if (ep.tls) {
    conn->secure.emplace(executor_, *tls_);
  } else {
    conn->plain.emplace(executor_);
  }
  auto& lowest = conn->lowest();
  // One deadline for connecting, the proxy's tunnel and the TLS handshake.
  lowest.expires_after(timeouts_.connect);
  auto [cec, endpoint] = co_await lowest.async_connect(results, kAwait);
  if (cec) {
    co_return absl::UnavailableError(absl::StrCat(
        "cannot connect to ", hop_name, ": ",
        cec == beast::error::timeout ? "connect timed out" : cec.message()));
  }
  lowest.socket().set_option(tcp::no_delay(true));
  if (proxied && ep.tls) {
    absl::Status tunnel = co_await Tunnel(lowest, ep);
    if (!tunnel.ok()) co_return tunnel;
  }
  if (ep.tls) {
    SSL* ssl = conn->secure->native_handle();
    if (!SSL_set_tlsext_host_name(ssl, ep.host.c_str())) {
      co_return absl::UnavailableError("cannot set TLS server name");
    }
    conn->secure->set_verify_callback(net::ssl::host_name_verification(ep.host));
    auto [hec] = co_await conn->secure->async_handshake(net::ssl::stream_base::client, kAwait);
    if (hec) {
      const std::string how =
          hec == beast::error::timeout ? std::string("timed out") : hec.message();
      co_return absl::UnavailableError(absl::StrCat("TLS handshake with ", ep.host, " failed: ",
                                                    how));
    }
  }
  co_return conn;
}

net::awaitable<absl::Status> UpstreamPool::Tunnel(beast::tcp_stream& stream,
                                                  const UpstreamEndpoint& ep) {
  const std::string proxy = Authority(ep.proxy_host, ep.proxy_port);
  const std::string target = Authority(ep.host, ep.port);
  http::request<http::empty_body> connect{http::verb::connect, target, 11};
  connect.set(http::field::host, target);
  if (!ep.proxy_authorization.empty()) {
    connect.set(http::field::proxy_authorization, ep.proxy_authorization);
  }
  auto [wec, wn] = co_await http::async_write(stream, connect, kAwait);
  if (wec) {
    const std::string how = wec == beast::error::timeout ? std::string("timed out") : wec.message();
    co_return absl::UnavailableError(absl::StrCat("proxy ", proxy, " CONNECT to ", target,
                                                  " failed: ", how));
  }
  // The proxy sends nothing after its answer until the client speaks (TLS), so a buffer of
  // our own loses nothing.
  beast::flat_buffer buffer(kMaxProxyHeader);
  http::response_parser<http::empty_body> parser;
  parser.header_limit(kMaxProxyHeader);
  parser.skip(true);  // a CONNECT answer has no body
  auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, kAwait);
  if (rec) {
    const std::string how = rec == beast::error::timeout ? std::string("timed out") : rec.message();
    co_return absl::UnavailableError(absl::StrCat("proxy ", proxy, " CONNECT to ", target,
                                                  " failed: ", how));
  }
  const int status = parser.get().result_int();
  if (status / 100 != 2) {
    co_return absl::UnavailableError(absl::StrCat("proxy ", proxy, " refused CONNECT to ",
                                                  target, ": HTTP ", status));
  }
  if (buffer.size() != 0) {
    co_return absl::UnavailableError(
        absl::StrCat("proxy ", proxy, " sent data before the TLS handshake"));
  }
  co_return absl::OkStatus();
}

net::awaitable<absl::StatusOr<std::unique_ptr<UpstreamExchange>>> UpstreamPool::Send(
    const UpstreamEndpoint& ep, http::request<http::string_body>& request) {
  request.set(http::field::host, ep.port == (ep.tls ? "443" : "80")
                                     ? ep.host
                                     : absl::StrCat(ep.host, ":", ep.port));
  request.keep_alive(true);
  request.prepare_payload();
  // Plain http through a proxy: the absolute form, with the proxy's credentials.
  if (!ep.proxy_host.empty() && !ep.tls) {
    const auto origin = request.target();
    const std::string absolute = absl::StrCat("http://", Authority(ep.host, ep.port),
                                              AV({origin.data(), origin.size()}));
    request.target(absolute);
    if (!ep.proxy_authorization.empty()) {
      request.set(http::field::proxy_authorization, ep.proxy_authorization);
    }
  } else {
    request.erase(http::field::proxy_authorization);
  }
  const std::string head = HeaderBytes(request.base());
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The retry after a reused connection failed always takes a fresh one.
    std::unique_ptr<UpstreamConnection> conn = attempt == 0 ? TakeIdle(ep.key) : nullptr;
    const bool reused = conn != nullptr;
    if (!conn) {
      auto fresh = co_await Connect(ep);
      if (!fresh.ok()) co_return fresh.status();
      conn = std::move(fresh).value();
    }
    conn->ArmRead(timeouts_.read);
    auto [wec, wn] = co_await conn->Visit(
        [&](auto& s) { return net::async_write(s, WholeMessage(head, request.body()), kAwait); });
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

#include "http_fetch.h"

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute::accounts {
// Named rather than anonymous: accounts_lib is a unity build.
namespace fetch_impl {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr auto kAwait = net::as_tuple(net::use_awaitable);
constexpr uint64_t kMaxBody = 8u << 20;
constexpr uint32_t kMaxHeader = 64u << 10;

struct Target {
  bool tls = false;
  std::string host;  // without IPv6 brackets
  std::string port;
  std::string host_header;  // host[:port] as sent in Host and CONNECT
  std::string path;         // origin-form: /path?query
  std::string userinfo;     // proxies only: user:password
};

// Splits an absolute http(s) URL. The fragment is dropped.
absl::StatusOr<Target> ParseUrl(std::string_view url) {
  Target t;
  std::string_view rest;
  if (absl::StartsWithIgnoreCase(AV(url), "https://")) {
    t.tls = true;
    rest = url.substr(8);
  } else if (absl::StartsWithIgnoreCase(AV(url), "http://")) {
    rest = url.substr(7);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("URL is not http(s): ", AV(url.substr(0, 64))));
  }
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? "" : rest.substr(end);
  if (size_t hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    t.userinfo = std::string(authority.substr(0, at));
    authority = authority.substr(at + 1);
  }
  if (authority.empty()) return absl::InvalidArgumentError("URL has no host");
  std::string_view port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("bad IPv6 host in URL");
    t.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (absl::StartsWith(AV(after), ":")) port = after.substr(1);
  } else {
    size_t colon = authority.rfind(':');
    t.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  const std::string_view default_port = t.tls ? "443" : "80";
  t.port = port.empty() ? std::string(default_port) : std::string(port);
  int port_number = 0;
  if (!absl::SimpleAtoi(AV(t.port), &port_number) || port_number <= 0 || port_number > 65535) {
    return absl::InvalidArgumentError("bad port in URL");
  }
  const bool v6 = t.host.find(':') != std::string::npos;
  t.host_header = v6 ? absl::StrCat("[", t.host, "]") : t.host;
  if (t.port != default_port) absl::StrAppend(&t.host_header, ":", t.port);
  t.path =
      tail.empty() ? "/" : (tail.front() == '?' ? absl::StrCat("/", AV(tail)) : std::string(tail));
  return t;
}

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n > 0 ? n : 0);
  return out;
}

bool IsIpLiteral(const std::string& host) {
  boost::system::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

class BeastHttpFetcher : public HttpFetcher {
 public:
  explicit BeastHttpFetcher(HttpFetcherOptions options, net::ssl::context tls)
      : options_(std::move(options)), tls_(std::move(tls)) {}

  // Interface
  absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) override {
    auto target = ParseUrl(request.url);
    if (!target.ok()) return target.status();
    std::optional<Target> proxy;
    if (!options_.proxy.empty()) {
      auto parsed = ParseUrl(options_.proxy);
      if (!parsed.ok()) return parsed.status();
      proxy = *std::move(parsed);
    }
    net::io_context ioc;
    auto future = net::co_spawn(ioc, Run(request, *target, proxy), net::use_future);
    ioc.run();
    try {
      return future.get();
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("HTTP request failed: ", e.what()));
    }
  }

 private:
  using Deadline = std::chrono::steady_clock::time_point;

  static absl::Status IoError(std::string_view what, const Target& t,
                              const boost::system::error_code& ec) {
    if (ec == beast::error::timeout) {
      return absl::DeadlineExceededError(absl::StrCat(AV(what), " ", t.host, " timed out"));
    }
    return absl::UnavailableError(absl::StrCat(AV(what), " ", t.host, ": ", ec.message()));
  }

  // Opens a TCP connection to `hop` (the target or the proxy).
  static net::awaitable<absl::Status> Connect(beast::tcp_stream& stream, const Target& hop,
                                              Deadline deadline) {
    auto executor = co_await net::this_coro::executor;
    tcp::resolver resolver(executor);
    stream.expires_at(deadline);
    // The resolver has no timeout of its own; the deadline bounds connecting and what follows.
    auto [rec, results] = co_await resolver.async_resolve(hop.host, hop.port, kAwait);
    if (rec) co_return IoError("cannot resolve", hop, rec);
    auto [cec, ep] = co_await stream.async_connect(results, kAwait);
    if (cec) co_return IoError("cannot connect to", hop, cec);
    stream.socket().set_option(tcp::no_delay(true));
    co_return absl::OkStatus();
  }

  // Asks the proxy for a tunnel to `target` (CONNECT host:port).
  static net::awaitable<absl::Status> Tunnel(beast::tcp_stream& stream, const Target& proxy,
                                             const Target& target) {
    const std::string authority = absl::StrCat(
        target.host.find(':') != std::string::npos ? "[" + target.host + "]" : target.host, ":",
        target.port);
    http::request<http::empty_body> connect{http::verb::connect, authority, 11};
    connect.set(http::field::host, authority);
    if (!proxy.userinfo.empty()) {
      connect.set(http::field::proxy_authorization, "Basic " + Base64(proxy.userinfo));
    }
    auto [wec, wn] = co_await http::async_write(stream, connect, kAwait);
    if (wec) co_return IoError("proxy CONNECT to", proxy, wec);
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> parser;
    parser.skip(true);  // a CONNECT answer has no body
    auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, kAwait);
    if (rec) co_return IoError("proxy CONNECT to", proxy, rec);
    if (parser.get().result_int() / 100 != 2) {
      co_return absl::UnavailableError(absl::StrCat("proxy refused CONNECT to ", authority,
                                                    ": HTTP ", parser.get().result_int()));
    }
    co_return absl::OkStatus();
  }

  template <typename Stream>
  static net::awaitable<absl::StatusOr<HttpResponse>> Exchange(
      Stream& stream, http::request<http::string_body>& req, const Target& target) {
    auto [wec, wn] = co_await http::async_write(stream, req, kAwait);
    if (wec) co_return IoError("cannot send request to", target, wec);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxBody);
    parser.header_limit(kMaxHeader);
    if (req.method() == http::verb::head) parser.skip(true);
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, kAwait);
    if (rec == http::error::body_limit) {
      co_return absl::ResourceExhaustedError(
          absl::StrCat("response from ", target.host, " exceeds ", kMaxBody, " bytes"));
    }
    if (rec) co_return IoError("cannot read response from", target, rec);
    auto& res = parser.get();
    HttpResponse out;
    out.status = res.result_int();
    for (const auto& field : res) {
      out.headers.emplace_back(
          absl::AsciiStrToLower(AV({field.name_string().data(), field.name_string().size()})),
          std::string(field.value()));
    }
    out.body = std::move(res.body());
    co_return out;
  }

  net::awaitable<absl::StatusOr<HttpResponse>> Run(HttpRequest request, Target target,
                                                   std::optional<Target> proxy) {
    auto executor = co_await net::this_coro::executor;
    const Deadline deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);

    http::verb verb = http::string_to_verb(request.method);
    if (verb == http::verb::unknown) {
      co_return absl::InvalidArgumentError(absl::StrCat("unknown HTTP method ", request.method));
    }
    // Plain http through a proxy uses the absolute form; everything else the origin form.
    const bool absolute = proxy && !target.tls;
    http::request<http::string_body> req{
        verb, absolute ? absl::StrCat("http://", target.host_header, target.path) : target.path,
        11};
    req.set(http::field::host, target.host_header);
    req.set(http::field::user_agent, "omniroute-accounts");
    req.set(http::field::accept, "*/*");
    for (const auto& [name, value] : request.headers) req.set(name, value);
    if (absolute && !proxy->userinfo.empty()) {
      req.set(http::field::proxy_authorization, "Basic " + Base64(proxy->userinfo));
    }
    req.keep_alive(false);
    req.body() = std::move(request.body);
    if (!req.body().empty() || verb == http::verb::post || verb == http::verb::put ||
        verb == http::verb::patch) {
      req.prepare_payload();
    }

    beast::tcp_stream stream(executor);
    absl::Status st = co_await Connect(stream, proxy ? *proxy : target, deadline);
    if (!st.ok()) co_return st;
    stream.expires_at(deadline);
    if (!target.tls) co_return co_await Exchange(stream, req, target);

    if (proxy) {
      st = co_await Tunnel(stream, *proxy, target);
      if (!st.ok()) co_return st;
    }
    beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), tls_);
    if (!IsIpLiteral(target.host) &&
        !SSL_set_tlsext_host_name(secure.native_handle(), target.host.c_str())) {
      co_return absl::InternalError("cannot set TLS server name");
    }
    secure.set_verify_mode(net::ssl::verify_peer);
    secure.set_verify_callback(net::ssl::host_name_verification(target.host));
    auto [hec] = co_await secure.async_handshake(net::ssl::stream_base::client, kAwait);
    if (hec) co_return IoError("TLS handshake with", target, hec);
    // The connection is closed after the answer; no TLS close_notify exchange is awaited.
    co_return co_await Exchange(secure, req, target);
  }

  HttpFetcherOptions options_;
  net::ssl::context tls_;
};

}  // namespace fetch_impl

std::unique_ptr<HttpFetcher> MakeHttpFetcher(HttpFetcherOptions options) {
  namespace net = boost::asio;
  net::ssl::context tls(net::ssl::context::tls_client);
  boost::system::error_code ec;
  tls.set_default_verify_paths(ec);
  if (!options.ca_file.empty()) {
    tls.load_verify_file(options.ca_file, ec);
    if (ec) {
      LogWarn("cannot load CA file", {{"file", options.ca_file}, {"error", ec.message()}});
    }
  }
  tls.set_verify_mode(net::ssl::verify_peer);
  return std::make_unique<fetch_impl::BeastHttpFetcher>(std::move(options), std::move(tls));
}

}  // namespace omniroute::accounts

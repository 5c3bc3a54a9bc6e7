#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::accounts {

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // http:// or https://
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercase
  std::string body;
};

// A blocking HTTP client for the accounts service's own calls (OAuth endpoints, connection
// tests); runs on the service's worker threads, never on an event loop.
class HttpFetcher {
 public:
  virtual ~HttpFetcher() = default;
  // Transport errors as UNAVAILABLE / DEADLINE_EXCEEDED; any HTTP status is a response.
  virtual absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) = 0;
};

struct HttpFetcherOptions {
  int timeout_ms = 15000;
  std::string ca_file;   // extra trusted CAs (PEM); the system store is always used
  std::string proxy;     // http://host:port (CONNECT for https); empty = direct
};

// Beast + OpenSSL; HTTPS verifies the chain and the host name (SNI sent).
std::unique_ptr<HttpFetcher> MakeHttpFetcher(HttpFetcherOptions options = {});

}  // namespace omniroute::accounts

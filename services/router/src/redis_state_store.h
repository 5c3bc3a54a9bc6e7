#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "state_store.h"

namespace omniroute::router {

// Where a Redis server listens, parsed from a URL:
//   redis://host[:port][/db]    redis://[user]:password@host:port[/db]
//   unix:///path/redis.sock[?db=N]
struct RedisAddress {
  std::string host;  // empty for a unix socket
  int port = 6379;
  std::string socket_path;
  std::string username;  // Redis 6 ACL user; empty = default user
  std::string password;
  int db = 0;
};

absl::StatusOr<RedisAddress> ParseRedisUrl(std::string_view url);

struct RedisStateStoreOptions {
  std::chrono::milliseconds connect_timeout{200};
  std::chrono::milliseconds command_timeout{200};
  // While Redis is down, at most one reconnection attempt per interval.
  std::chrono::milliseconds reconnect_interval{1000};
  int connections = 8;
};

// MakeRedisStateStore with explicit options; INVALID_ARGUMENT for a malformed URL. Redis
// being unreachable is not an error: the store starts on its local fallback.
absl::StatusOr<StateStorePtr> MakeRedisStateStore(const std::string& url,
                                                  const RedisStateStoreOptions& options);

}  // namespace omniroute::router

#include "redis_state_store.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute::router {
namespace redis_store_impl {
namespace {

constexpr std::string_view kCooldownPrefix = "omni:router:cd:";
constexpr std::string_view kLevelPrefix = "omni:router:lvl:";

// KEYS: cooldown, level. ARGV: now_ms, base_ms, max_ms, max_steps, hint_ms, level_ttl_ms.
// Raises the backoff level, starts a cooldown of max(hint, base * 2^min(level-1, max_steps))
// capped at max_ms, and returns its end. The level outlives the cooldown by level_ttl_ms, so
// a connection that stays healthy that long starts again from the base cooldown.
constexpr char kStartCooldownScript[] = R"lua(
local level = redis.call('INCR', KEYS[2])
local step = level - 1
local max_steps = tonumber(ARGV[4])
if step > max_steps then step = max_steps end
if step < 0 then step = 0 end
local ms = tonumber(ARGV[2]) * (2 ^ step)
local hint = tonumber(ARGV[5])
if hint > ms then ms = hint end
local max_ms = tonumber(ARGV[3])
if ms > max_ms then ms = max_ms end
ms = math.floor(ms)
if ms < 1 then ms = 1 end
local until_ms = tonumber(ARGV[1]) + ms
redis.call('SET', KEYS[1], string.format('%.0f', until_ms), 'PX', string.format('%.0f', ms))
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', ms + tonumber(ARGV[6])))
return until_ms
)lua";

std::string Sha1Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha1(), nullptr);
  std::string hex;
  hex.reserve(len * 2);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

std::string CooldownKey(const std::string& id) {
  return absl::StrCat(AV(kCooldownPrefix), "{", id, "}");
}
std::string LevelKey(const std::string& id) { return absl::StrCat(AV(kLevelPrefix), "{", id, "}"); }

timeval ToTimeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

ReplyPtr Command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return ReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

// The status of a command: its connection error, its error reply, or OK.
absl::Status ReplyStatus(redisContext* c, const ReplyPtr& reply) {
  if (reply == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("redis: ", c->errstr[0] != '\0' ? c->errstr : "connection error"));
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("redis: ", absl::string_view(reply->str, reply->len)));
  }
  return absl::OkStatus();
}

bool IsNoScript(const ReplyPtr& reply) {
  return reply != nullptr && reply->type == REDIS_REPLY_ERROR &&
         std::string_view(reply->str, reply->len).starts_with("NOSCRIPT");
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return absl::InvalidArgumentError("bad percent-encoding");
    }
    const int hi = HexValue(s[i + 1]);
    const int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError("bad percent-encoding");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

absl::Status ParseDb(std::string_view text, int* db) {
  if (text.empty()) {
    return absl::OkStatus();
  }
  if (!absl::SimpleAtoi(AV(text), db) || *db < 0) {
    return absl::InvalidArgumentError(absl::StrCat("invalid database number '", AV(text), "'"));
  }
  return absl::OkStatus();
}

// Parses "db=N" query parameters; other parameters are errors.
absl::Status ParseQuery(std::string_view query, RedisAddress* out) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) {
      continue;
    }
    if (param.starts_with("db=")) {
      if (auto s = ParseDb(param.substr(3), &out->db); !s.ok()) {
        return s;
      }
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat("unsupported parameter '", AV(param), "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<RedisAddress> ParseRedisUrlImpl(std::string_view url) {
  RedisAddress out;
  std::string_view query;
  if (const size_t q = url.find('?'); q != std::string_view::npos) {
    query = url.substr(q + 1);
    url = url.substr(0, q);
  }
  if (url.starts_with("unix://")) {
    out.socket_path = std::string(url.substr(7));
    if (out.socket_path.empty() || out.socket_path[0] != '/') {
      return absl::InvalidArgumentError("a unix:// URL needs an absolute socket path");
    }
    if (auto s = ParseQuery(query, &out); !s.ok()) {
      return s;
    }
    return out;
  }
  if (url.starts_with("rediss://")) {
    return absl::InvalidArgumentError("TLS (rediss://) is not supported");
  }
  if (!url.starts_with("redis://")) {
    return absl::InvalidArgumentError("expected redis://host:port[/db] or unix:///path");
  }
  std::string_view rest = url.substr(8);
  std::string_view path;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = userinfo.find(':');
    absl::StatusOr<std::string> user = PercentDecode(
        colon == std::string_view::npos ? std::string_view() : userinfo.substr(0, colon));
    absl::StatusOr<std::string> password =
        PercentDecode(colon == std::string_view::npos ? userinfo : userinfo.substr(colon + 1));
    if (!user.ok()) return user.status();
    if (!password.ok()) return password.status();
    out.username = *std::move(user);
    out.password = *std::move(password);
  }
  std::string_view port;
  if (rest.starts_with('[')) {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("unterminated IPv6 address");
    }
    out.host = std::string(rest.substr(1, close - 1));
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return absl::InvalidArgumentError("unexpected text after the IPv6 address");
      }
      port = after.substr(1);
    }
  } else if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    out.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    out.host = std::string(rest);
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError("missing host");
  }
  if (!port.empty() &&
      (!absl::SimpleAtoi(AV(port), &out.port) || out.port <= 0 || out.port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid port '", AV(port), "'"));
  }
  if (auto s = ParseDb(path, &out.db); !s.ok()) {
    return s;
  }
  if (auto s = ParseQuery(query, &out); !s.ok()) {
    return s;
  }
  return out;
}

// Cooldown state in Redis, through a small pool of synchronous connections. Every operation
// that cannot reach Redis is served by a process-local store instead.
class RedisStateStore final : public StateStore {
 public:
  RedisStateStore(RedisAddress address, const RedisStateStoreOptions& options)
      : address_(std::move(address)),
        options_(options),
        script_sha_(Sha1Hex(kStartCooldownScript)),
        fallback_(MakeMemoryStateStore()) {
    const int n = std::max(options_.connections, 1);
    for (int i = 0; i < n; ++i) {
      pool_.push_back(std::make_unique<Slot>());
    }
    if (absl::Status s = Ping(); !s.ok()) {
      LogWarn("redis unreachable at start; routing state is process-local until it answers",
              {{"redis", Describe()}, {"error", SV(s.message())}});
    }
  }

  ~RedisStateStore() override {
    for (auto& slot : pool_) {
      if (slot->context != nullptr) {
        redisFree(slot->context);
      }
    }
  }

  // Interface
  std::vector<int64_t> CooldownUntil(const std::vector<std::string>& connection_ids,
                                     int64_t now_ms) override {
    std::vector<int64_t> out(connection_ids.size(), 0);
    if (connection_ids.empty()) {
      return out;
    }
    std::vector<std::string> args;
    args.reserve(connection_ids.size() + 1);
    args.emplace_back("MGET");
    for (const std::string& id : connection_ids) {
      args.push_back(CooldownKey(id));
    }
    auto mget = [&](redisContext* c) -> absl::Status {
      ReplyPtr reply = Command(c, args);
      if (absl::Status s = ReplyStatus(c, reply); !s.ok()) {
        return s;
      }
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != connection_ids.size()) {
        return absl::InternalError("redis: unexpected MGET reply");
      }
      for (size_t i = 0; i < reply->elements; ++i) {
        const redisReply* e = reply->element[i];
        int64_t until = 0;
        if (e->type == REDIS_REPLY_STRING &&
            absl::SimpleAtoi(absl::string_view(e->str, e->len), &until) && until > now_ms) {
          out[i] = until;
        }
      }
      return absl::OkStatus();
    };
    if (!Run(mget).ok()) {
      return fallback_->CooldownUntil(connection_ids, now_ms);
    }
    return out;
  }

  int64_t StartCooldown(const std::string& connection_id, int64_t now_ms,
                        const CooldownPolicy& policy, int64_t hint_ms) override {
    std::vector<std::string> args = {"EVALSHA",
                                     script_sha_,
                                     "2",
                                     CooldownKey(connection_id),
                                     LevelKey(connection_id),
                                     absl::StrCat(now_ms),
                                     absl::StrCat(policy.base_ms),
                                     absl::StrCat(policy.max_ms),
                                     absl::StrCat(policy.max_steps),
                                     absl::StrCat(std::max<int64_t>(hint_ms, 0)),
                                     absl::StrCat(policy.max_ms * 4)};
    int64_t until = 0;
    auto eval = [&](redisContext* c) -> absl::Status {
      ReplyPtr reply = Command(c, args);
      if (IsNoScript(reply)) {
        args[0] = "EVAL";
        args[1] = kStartCooldownScript;
        reply = Command(c, args);
      }
      if (absl::Status s = ReplyStatus(c, reply); !s.ok()) {
        return s;
      }
      if (reply->type != REDIS_REPLY_INTEGER) {
        return absl::InternalError("redis: unexpected cooldown script reply");
      }
      until = reply->integer;
      return absl::OkStatus();
    };
    if (!Run(eval).ok()) {
      return fallback_->StartCooldown(connection_id, now_ms, policy, hint_ms);
    }
    return until;
  }

  void ClearCooldown(const std::string& connection_id) override {
    const std::vector<std::string> args = {"DEL", CooldownKey(connection_id),
                                           LevelKey(connection_id)};
    auto del = [&](redisContext* c) -> absl::Status {
      ReplyPtr reply = Command(c, args);
      return ReplyStatus(c, reply);
    };
    if (!Run(del).ok()) {
      fallback_->ClearCooldown(connection_id);
    }
  }

  bool Healthy() const override {
    if (healthy_.load()) {
      return true;
    }
    // Nothing may be routing right now: probe (at most once per reconnect interval).
    return Ping().ok();
  }

 private:
  struct Slot {
    std::mutex mu;
    redisContext* context = nullptr;
    uint64_t generation = 0;
  };

  std::string Describe() const {
    if (!address_.socket_path.empty()) {
      return absl::StrCat("unix://", address_.socket_path);
    }
    return absl::StrCat(address_.host, ":", address_.port, "/", address_.db);
  }

  absl::Status Ping() const {
    return Run([](redisContext* c) -> absl::Status {
      ReplyPtr reply = Command(c, {"PING"});
      return ReplyStatus(c, reply);
    });
  }

  // Runs `op` on a pooled connection, connecting it first when needed. Fails when Redis is
  // not usable now; a failed op marks Redis down and drops every connection.
  template <typename Op>
  absl::Status Run(Op&& op) const {
    Slot& slot = Acquire();
    std::unique_lock<std::mutex> lock(slot.mu, std::adopt_lock);
    if (slot.context != nullptr && slot.generation != generation_.load()) {
      redisFree(slot.context);
      slot.context = nullptr;
    }
    if (slot.context == nullptr) {
      if (absl::Status s = Connect(slot); !s.ok()) {
        return s;
      }
    }
    absl::Status status = op(slot.context);
    if (status.ok()) {
      return status;
    }
    redisFree(slot.context);
    slot.context = nullptr;
    lock.unlock();
    MarkDown(status);
    return status;
  }

  // A free slot if there is one, else the next one in turn; returned locked.
  Slot& Acquire() const {
    const size_t n = pool_.size();
    const size_t start = next_slot_.fetch_add(1, std::memory_order_relaxed) % n;
    for (size_t i = 0; i < n; ++i) {
      Slot& slot = *pool_[(start + i) % n];
      if (slot.mu.try_lock()) {
        return slot;
      }
    }
    Slot& slot = *pool_[start];
    slot.mu.lock();
    return slot;
  }

  // Connects `slot` (locked by the caller). While Redis is down only one attempt per
  // reconnect interval is made, by whichever caller claims it.
  absl::Status Connect(Slot& slot) const {
    const int64_t now = SteadyNowMs();
    if (!healthy_.load()) {
      int64_t next = next_attempt_ms_.load();
      if (now < next || !next_attempt_ms_.compare_exchange_strong(
                            next, now + options_.reconnect_interval.count())) {
        return absl::UnavailableError("redis: down; waiting to reconnect");
      }
    }
    const uint64_t generation = generation_.load();
    absl::StatusOr<redisContext*> context = Open();
    if (!context.ok()) {
      MarkDown(context.status());
      return context.status();
    }
    slot.context = *context;
    slot.generation = generation;
    if (!healthy_.exchange(true)) {
      LogInfo("redis connected; routing state is shared", {{"redis", Describe()}});
    }
    return absl::OkStatus();
  }

  absl::StatusOr<redisContext*> Open() const {
    const timeval connect_timeout = ToTimeval(options_.connect_timeout);
    redisContext* c =
        address_.socket_path.empty()
            ? redisConnectWithTimeout(address_.host.c_str(), address_.port, connect_timeout)
            : redisConnectUnixWithTimeout(address_.socket_path.c_str(), connect_timeout);
    if (c == nullptr) {
      return absl::UnavailableError("redis: cannot allocate a context");
    }
    auto fail = [c](absl::Status s) {
      redisFree(c);
      return s;
    };
    if (c->err != 0) {
      return fail(absl::UnavailableError(absl::StrCat("redis: ", c->errstr)));
    }
    if (redisSetTimeout(c, ToTimeval(options_.command_timeout)) != REDIS_OK) {
      return fail(absl::UnavailableError("redis: cannot set the command timeout"));
    }
    if (address_.socket_path.empty()) {
      redisEnableKeepAlive(c);
    }
    if (!address_.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!address_.username.empty()) {
        auth.push_back(address_.username);
      }
      auth.push_back(address_.password);
      ReplyPtr reply = Command(c, auth);
      if (absl::Status s = ReplyStatus(c, reply); !s.ok()) {
        return fail(s);
      }
    }
    if (address_.db != 0) {
      ReplyPtr reply = Command(c, {"SELECT", absl::StrCat(address_.db)});
      if (absl::Status s = ReplyStatus(c, reply); !s.ok()) {
        return fail(s);
      }
    }
    return c;
  }

  void MarkDown(const absl::Status& why) const {
    generation_.fetch_add(1);
    next_attempt_ms_.store(SteadyNowMs() + options_.reconnect_interval.count());
    if (healthy_.exchange(false)) {
      LogWarn("redis unreachable; routing state is process-local until it returns",
              {{"redis", Describe()}, {"error", SV(why.message())}});
    }
  }

  const RedisAddress address_;
  const RedisStateStoreOptions options_;
  const std::string script_sha_;
  const StateStorePtr fallback_;

  std::vector<std::unique_ptr<Slot>> pool_;
  mutable std::atomic<size_t> next_slot_{0};
  mutable std::atomic<uint64_t> generation_{1};  // bumped when Redis fails
  mutable std::atomic<bool> healthy_{false};
  mutable std::atomic<int64_t> next_attempt_ms_{0};  // steady clock
};

}  // namespace
}  // namespace redis_store_impl

absl::StatusOr<RedisAddress> ParseRedisUrl(std::string_view url) {
  absl::StatusOr<RedisAddress> address = redis_store_impl::ParseRedisUrlImpl(url);
  if (!address.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("redis URL: ", address.status().message()));
  }
  return address;
}

absl::StatusOr<StateStorePtr> MakeRedisStateStore(const std::string& url,
                                                  const RedisStateStoreOptions& options) {
  absl::StatusOr<RedisAddress> address = ParseRedisUrl(url);
  if (!address.ok()) {
    return address.status();
  }
  return std::make_shared<redis_store_impl::RedisStateStore>(*std::move(address), options);
}

StateStorePtr MakeRedisStateStore(const std::string& url) {
  absl::StatusOr<StateStorePtr> store = MakeRedisStateStore(url, RedisStateStoreOptions());
  if (!store.ok()) {
    throw std::invalid_argument(std::string(store.status().message()));
  }
  return *std::move(store);
}

}  // namespace omniroute::router

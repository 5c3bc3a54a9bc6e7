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
#include "memory_state_store.h"

namespace omniroute::router {
namespace redis_store_impl {
namespace {

constexpr std::string_view kPrefix = "omni:router:";
constexpr int64_t kBreakerTtlMs = 7 * 86400000LL;
constexpr int64_t kLastUseTtlMs = 86400000LL;
constexpr int64_t kLatencyTtlMs = 3600000LL;
constexpr int64_t kStatsTtlMs = 30 * 86400000LL;
constexpr size_t kLatencySamples = 256;

// Every key is "omni:router:<kind>:{<id>}" (the braces keep a key's slot stable).
std::string Key(std::string_view kind, std::string_view id) {
  return absl::StrCat(AV(kPrefix), AV(kind), ":{", AV(id), "}");
}

// Shared Lua helpers: a breaker is stored as "state|failures|open_until|trips".
constexpr char kBreakerLua[] = R"lua(
local function bload(v)
  if not v then return 0, 0, 0, 0 end
  local s, f, u, t = string.match(v, '^(%d+)|(%d+)|(%d+)|(%d+)$')
  if not s then return 0, 0, 0, 0 end
  return tonumber(s), tonumber(f), tonumber(u), tonumber(t)
end
local function benc(s, f, u, t)
  return string.format('%d|%d|%.0f|%d', s, f, u, t)
end
)lua";

// KEYS: cooldown, level. ARGV: now_ms, base_ms, max_ms, max_steps, hint_ms, level_ttl_ms.
// Raises the backoff level, starts a cooldown of max(hint, base * 2^min(level-1, max_steps))
// capped at max_ms (never shortening a longer one), and returns its end. The level outlives
// the cooldown by level_ttl_ms, so a connection that stays healthy that long starts again
// from the base cooldown.
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
local now = tonumber(ARGV[1])
local until_ms = now + ms
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current > until_ms then until_ms = current end
redis.call('SET', KEYS[1], string.format('%.0f', until_ms),
           'PX', string.format('%.0f', until_ms - now))
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', ms + tonumber(ARGV[6])))
return until_ms
)lua";

// KEYS: cooldown, level. ARGV: now_ms, until_ms, level, level_ttl_ms (level 0: untouched).
// Extends the cooldown to until_ms when that is later, and the level to `level` when higher.
constexpr char kMergeCooldownScript[] = R"lua(
local now = tonumber(ARGV[1])
local until_ms = tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current and until_ms > now then
  redis.call('SET', KEYS[1], string.format('%.0f', until_ms),
             'PX', string.format('%.0f', until_ms - now))
end
local level = tonumber(ARGV[3])
if level > 0 and level > tonumber(redis.call('GET', KEYS[2]) or '0') then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
return 1
)lua";

// KEYS: counter. ARGV: ttl_ms. Returns the incremented value.
constexpr char kIncrementScript[] = R"lua(
local v = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return v
)lua";

// KEYS: breaker, probe. ARGV: now_ms, probe_ttl_ms, token, breaker_ttl_ms.
// Open past its timeout, or half-open without a probe: half-open with the caller as the
// probe (1). Otherwise 0.
constexpr char kTryProbeBody[] = R"lua(
local s, f, u, t = bload(redis.call('GET', KEYS[1]))
local now = tonumber(ARGV[1])
if s == 0 then return 0 end
if s == 2 and now < u then return 0 end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], benc(1, f, u, t), 'PX', ARGV[4])
return 1
)lua";

// KEYS: breaker, probe. ARGV: now_ms, threshold, reset_ms, max_multiplier, probe (0/1),
// breaker_ttl_ms. Returns the breaker after the failure.
constexpr char kFailureBody[] = R"lua(
local v = redis.call('GET', KEYS[1])
local s, f, u, t = bload(v)
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local reset = tonumber(ARGV[3])
local maxm = tonumber(ARGV[4])
local function open_ms(trips)
  local m = 1
  local i = 1
  while i < trips and m < maxm do
    m = m * 2
    i = i + 1
  end
  if m > maxm then m = maxm end
  return reset * m
end
if s == 0 then
  f = f + 1
  if threshold > 0 and f >= threshold then
    s = 2
    t = 1
    f = 0
    u = now + open_ms(1)
  end
elseif s == 1 and ARGV[5] == '1' then
  s = 2
  t = t + 1
  u = now + open_ms(t)
  redis.call('DEL', KEYS[2])
else
  return v or benc(0, 0, 0, 0)
end
local e = benc(s, f, u, t)
redis.call('SET', KEYS[1], e, 'PX', ARGV[6])
return e
)lua";

// KEYS: breaker, probe. ARGV: probe (0/1). Returns the breaker after the success.
constexpr char kSuccessBody[] = R"lua(
local v = redis.call('GET', KEYS[1])
if not v then return benc(0, 0, 0, 0) end
local s, f, u, t = bload(v)
if s == 0 or (s == 1 and ARGV[1] == '1') then
  redis.call('DEL', KEYS[1], KEYS[2])
  return benc(0, 0, 0, 0)
end
return v
)lua";

// KEYS: cooldown, level, breaker, probe, latency[, session]. ARGV: probe (0/1), latency_ms
// (0 = none), latency samples, latency ttl_ms, session value, session ttl_ms. A success in
// one go: forgets the connection's cooldown and level, then kSuccessBody on the breaker,
// then a latency sample and the session pin. Returns the breaker after the success.
constexpr char kSuccessOutcomeBody[] = R"lua(
redis.call('DEL', KEYS[1], KEYS[2])
local out
local v = redis.call('GET', KEYS[3])
if not v then
  out = benc(0, 0, 0, 0)
else
  local s, f, u, t = bload(v)
  if s == 0 or (s == 1 and ARGV[1] == '1') then
    redis.call('DEL', KEYS[3], KEYS[4])
    out = benc(0, 0, 0, 0)
  else
    out = v
  end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('LPUSH', KEYS[5], ARGV[2])
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[3]) - 1)
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
end
if #KEYS >= 6 then
  redis.call('SET', KEYS[6], ARGV[5], 'PX', ARGV[6])
end
return out
)lua";

// KEYS: breaker. ARGV: encoded, breaker_ttl_ms. Stores an outage's breaker unless the
// shared one is open or half-open already.
constexpr char kMergeBreakerBody[] = R"lua(
local s = bload(redis.call('GET', KEYS[1]))
if s ~= 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)lua";

// KEYS: in-flight zset, request zset, last start. ARGV: now_ms, lease, rpm, min_gap_ms,
// max_concurrent, lease_ttl_ms. Returns {1, 0} with the slot taken, or {0, retry_at_ms}.
constexpr char kAcquireScript[] = R"lua(
local now = tonumber(ARGV[1])
local lease = ARGV[2]
local rpm = tonumber(ARGV[3])
local gap = tonumber(ARGV[4])
local maxc = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local retry = 0
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', KEYS[1]) >= maxc then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local at = tonumber(first[2])
    if at > now + 1000 then at = now + 1000 end
    if at > retry then retry = at end
  end
end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now - 60000))
  if redis.call('ZCARD', KEYS[2]) >= rpm then
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local at = tonumber(first[2]) + 60000
    if at > retry then retry = at end
  end
end
if gap > 0 then
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  if last > 0 and now - last < gap then
    local at = last + gap
    if at > retry then retry = at end
  end
end
if retry > 0 then return {0, string.format('%.0f', retry)} end
if maxc > 0 then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), lease)
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl))
end
if rpm > 0 then
  redis.call('ZADD', KEYS[2], string.format('%.0f', now), lease)
  redis.call('PEXPIRE', KEYS[2], 60000)
end
if gap > 0 then
  redis.call('SET', KEYS[3], string.format('%.0f', now), 'PX', string.format('%.0f', gap))
end
return {1, '0'}
)lua";

// KEYS: latency list. ARGV: sample, keep, ttl_ms.
constexpr char kLatencyScript[] = R"lua(
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
)lua";

// KEYS: stats hash. ARGV: field, delta, ttl_ms.
constexpr char kStatScript[] = R"lua(
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
)lua";

// KEYS: document hash. ARGV: version, body. Stores unless a version at least as new is there.
constexpr char kPutDocumentScript[] = R"lua(
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if v >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'body', ARGV[2])
return 1
)lua";

// A Lua script with its SHA-1 (EVALSHA first, EVAL when the server does not have it).
struct Script {
  explicit Script(std::string src);
  std::string source;
  std::string sha;
};

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

Script::Script(std::string src) : source(std::move(src)), sha(Sha1Hex(source)) {}

std::string Int(int64_t v) { return absl::StrCat(v); }

bool ParseInt(const redisReply* r, int64_t* out) {
  if (r == nullptr) return false;
  if (r->type == REDIS_REPLY_INTEGER) {
    *out = r->integer;
    return true;
  }
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
    return absl::SimpleAtoi(absl::string_view(r->str, r->len), out);
  }
  return false;
}

std::string String(const redisReply* r) {
  if (r == nullptr || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS)) return {};
  return std::string(r->str, r->len);
}

BreakerStatus DecodeBreaker(std::string_view v) {
  BreakerStatus b;
  std::vector<int64_t> parts;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t bar = v.find('|', start);
    const std::string_view part =
        v.substr(start, bar == std::string_view::npos ? v.npos : bar - start);
    int64_t n = 0;
    if (!absl::SimpleAtoi(AV(part), &n)) return {};
    parts.push_back(n);
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  if (parts.size() != 4 || parts[0] < 0 || parts[0] > 2) return {};
  b.state = static_cast<BreakerState>(parts[0]);
  b.failures = static_cast<int>(parts[1]);
  b.open_until_ms = parts[2];
  b.trips = static_cast<int>(parts[3]);
  return b;
}

std::string EncodeBreaker(const BreakerStatus& b) {
  return absl::StrCat(static_cast<int>(b.state), "|", b.failures, "|", b.open_until_ms, "|",
                      b.trips);
}

// Routing state in Redis, through a small pool of synchronous connections. Every operation
// that cannot reach Redis is served by a process-local store instead; when Redis returns,
// Maintain hands what that store learned over to Redis.
class RedisStateStore final : public StateStore {
 public:
  RedisStateStore(RedisAddress address, const RedisStateStoreOptions& options)
      : address_(std::move(address)),
        options_(options),
        start_cooldown_(kStartCooldownScript),
        merge_cooldown_(kMergeCooldownScript),
        increment_(kIncrementScript),
        try_probe_(absl::StrCat(kBreakerLua, kTryProbeBody)),
        failure_(absl::StrCat(kBreakerLua, kFailureBody)),
        success_(absl::StrCat(kBreakerLua, kSuccessBody)),
        success_outcome_(absl::StrCat(kBreakerLua, kSuccessOutcomeBody)),
        merge_breaker_(absl::StrCat(kBreakerLua, kMergeBreakerBody)),
        acquire_(kAcquireScript),
        latency_(kLatencyScript),
        stat_(kStatScript),
        put_document_(kPutDocumentScript),
        fallback_(std::make_shared<MemoryStateStore>()) {
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
  StateSnapshot Read(const StateQuery& q, int64_t now_ms) override {
    std::vector<std::string> args = {"MGET"};
    for (const auto& id : q.connections) {
      args.push_back(Key("cd", id));
      args.push_back(Key("lvl", id));
      args.push_back(Key("lu", id));
    }
    for (const auto& id : q.lockouts) args.push_back(Key("lk", id));
    for (const auto& id : q.providers) {
      args.push_back(Key("br", id));
      args.push_back(Key("probe", id));
    }
    for (const auto& id : q.counters) args.push_back(Key("ctr", id));
    if (!q.session.empty()) args.push_back(Key("sess", q.session));
    StateSnapshot out;
    out.connections.resize(q.connections.size());
    out.lockout_until_ms.resize(q.lockouts.size(), 0);
    out.breakers.resize(q.providers.size());
    out.counters.resize(q.counters.size(), 0);
    if (args.size() == 1) return out;
    absl::StatusOr<ReplyPtr> reply = Call(args);
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_ARRAY ||
        (*reply)->elements != args.size() - 1) {
      return fallback_->Read(q, now_ms);
    }
    const redisReply* r = reply->get();
    size_t i = 0;
    auto next = [&]() { return r->element[i++]; };
    for (auto& c : out.connections) {
      int64_t v = 0;
      if (ParseInt(next(), &v) && v > now_ms) c.cooldown_until_ms = v;
      if (ParseInt(next(), &v)) c.level = static_cast<int>(v);
      if (ParseInt(next(), &v)) c.last_used_ms = v;
    }
    for (auto& l : out.lockout_until_ms) {
      int64_t v = 0;
      if (ParseInt(next(), &v) && v > now_ms) l = v;
    }
    for (auto& b : out.breakers) {
      const redisReply* br = next();
      if (br->type == REDIS_REPLY_STRING) b = DecodeBreaker(std::string_view(br->str, br->len));
      b.probe_in_flight = next()->type == REDIS_REPLY_STRING;
    }
    for (auto& c : out.counters) {
      int64_t v = 0;
      if (ParseInt(next(), &v)) c = v;
    }
    if (!q.session.empty()) {
      // "connection|expires_ms": the expiry is checked against the caller's clock.
      const std::string v = String(next());
      const size_t bar = v.rfind('|');
      int64_t expires = 0;
      if (bar != std::string::npos &&
          absl::SimpleAtoi(AV(std::string_view(v).substr(bar + 1)), &expires) && expires > now_ms) {
        out.session_connection = v.substr(0, bar);
      }
    }
    return out;
  }

  int64_t StartCooldown(CooldownScope scope, const std::string& id, int64_t now_ms,
                        const CooldownPolicy& policy, int64_t hint_ms) override {
    const auto [cd, lvl] = CooldownKeys(scope, id);
    absl::StatusOr<ReplyPtr> reply =
        Eval(start_cooldown_, {cd, lvl},
             {Int(now_ms), Int(policy.base_ms), Int(policy.max_ms), Int(policy.max_steps),
              Int(std::max<int64_t>(hint_ms, 0)), Int(policy.max_ms * 4)});
    int64_t until = 0;
    if (!reply.ok() || !ParseInt(reply->get(), &until)) {
      return fallback_->StartCooldown(scope, id, now_ms, policy, hint_ms);
    }
    return until;
  }

  void ClearCooldown(CooldownScope scope, const std::string& id) override {
    const auto [cd, lvl] = CooldownKeys(scope, id);
    if (!Call({"DEL", cd, lvl}).ok()) fallback_->ClearCooldown(scope, id);
  }

  void HoldUntil(const std::string& id, int64_t now_ms, int64_t until_ms) override {
    const auto [cd, lvl] = CooldownKeys(CooldownScope::kConnection, id);
    if (!Eval(merge_cooldown_, {cd, lvl}, {Int(now_ms), Int(until_ms), "0", "0"}).ok()) {
      fallback_->HoldUntil(id, now_ms, until_ms);
    }
  }

  int64_t Increment(const std::string& counter, int64_t now_ms, int64_t ttl_ms) override {
    absl::StatusOr<ReplyPtr> reply = Eval(increment_, {Key("ctr", counter)}, {Int(ttl_ms)});
    int64_t v = 0;
    if (!reply.ok() || !ParseInt(reply->get(), &v)) {
      return fallback_->Increment(counter, now_ms, ttl_ms);
    }
    return v;
  }

  void Touch(const std::string& id, int64_t now_ms) override {
    if (!Call({"SET", Key("lu", id), Int(now_ms), "PX", Int(kLastUseTtlMs)}).ok()) {
      fallback_->Touch(id, now_ms);
    }
  }

  void SetSession(const std::string& session, const std::string& connection_id, int64_t now_ms,
                  int64_t ttl_ms) override {
    if (!Call({"SET", Key("sess", session), absl::StrCat(connection_id, "|", now_ms + ttl_ms), "PX",
               Int(std::max<int64_t>(ttl_ms, 1))})
             .ok()) {
      fallback_->SetSession(session, connection_id, now_ms, ttl_ms);
    }
  }

  bool TryProbe(const std::string& provider, int64_t now_ms, int64_t probe_ttl_ms) override {
    absl::StatusOr<ReplyPtr> reply =
        Eval(try_probe_, {Key("br", provider), Key("probe", provider)},
             {Int(now_ms), Int(std::max<int64_t>(probe_ttl_ms, 1)),
              absl::StrCat(now_ms, "-", probe_seq_.fetch_add(1)), Int(kBreakerTtlMs)});
    int64_t v = 0;
    if (!reply.ok() || !ParseInt(reply->get(), &v)) {
      return fallback_->TryProbe(provider, now_ms, probe_ttl_ms);
    }
    return v == 1;
  }

  BreakerStatus RecordFailure(const std::string& provider, int64_t now_ms,
                              const BreakerPolicy& policy, bool probe) override {
    absl::StatusOr<ReplyPtr> reply =
        Eval(failure_, {Key("br", provider), Key("probe", provider)},
             {Int(now_ms), Int(policy.failure_threshold), Int(policy.reset_timeout_ms),
              Int(policy.max_reset_multiplier), probe ? "1" : "0", Int(kBreakerTtlMs)});
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_STRING) {
      return fallback_->RecordFailure(provider, now_ms, policy, probe);
    }
    return DecodeBreaker(std::string_view((*reply)->str, (*reply)->len));
  }

  BreakerStatus RecordSuccess(const std::string& provider, int64_t now_ms, bool probe) override {
    absl::StatusOr<ReplyPtr> reply =
        Eval(success_, {Key("br", provider), Key("probe", provider)}, {probe ? "1" : "0"});
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_STRING) {
      return fallback_->RecordSuccess(provider, now_ms, probe);
    }
    return DecodeBreaker(std::string_view((*reply)->str, (*reply)->len));
  }

  BreakerStatus RecordSuccessOutcome(const SuccessRecord& s, int64_t now_ms) override {
    return RecordSuccessOutcomes({s}, now_ms).front();
  }

  std::vector<BreakerStatus> RecordSuccessOutcomes(const std::vector<SuccessRecord>& successes,
                                                   int64_t now_ms) override {
    std::vector<std::vector<std::string>> calls;
    calls.reserve(successes.size());
    for (const SuccessRecord& s : successes) {
      const auto [cd, lvl] = CooldownKeys(CooldownScope::kConnection, s.connection_id);
      std::vector<std::string> keys = {cd, lvl, Key("br", s.provider), Key("probe", s.provider),
                                       Key("lat", s.provider)};
      std::vector<std::string> argv = {
          s.probe ? "1" : "0", Int(std::max<int64_t>(s.latency_ms, 0)),
          Int(static_cast<int64_t>(kLatencySamples)), Int(kLatencyTtlMs)};
      if (!s.session.empty()) {
        keys.push_back(Key("sess", s.session));
        argv.push_back(absl::StrCat(s.connection_id, "|", now_ms + s.session_ttl_ms));
        argv.push_back(Int(std::max<int64_t>(s.session_ttl_ms, 1)));
      }
      calls.push_back(EvalArgs(success_outcome_, keys, argv));
    }
    absl::StatusOr<std::vector<ReplyPtr>> replies = EvalPipelined(success_outcome_, calls);
    std::vector<BreakerStatus> out;
    out.reserve(successes.size());
    for (size_t i = 0; i < successes.size(); ++i) {
      const redisReply* r = replies.ok() ? (*replies)[i].get() : nullptr;
      if (r == nullptr || r->type != REDIS_REPLY_STRING) {
        out.push_back(fallback_->RecordSuccessOutcome(successes[i], now_ms));
      } else {
        out.push_back(DecodeBreaker(std::string_view(r->str, r->len)));
      }
    }
    return out;
  }

  void ResetBreakers(const std::vector<std::string>& providers) override {
    fallback_->ResetBreakers(providers);
    if (providers.empty()) return;
    std::vector<std::string> args = {"DEL"};
    for (const auto& p : providers) {
      args.push_back(Key("br", p));
      args.push_back(Key("probe", p));
    }
    (void)Call(args);
  }

  SlotGrant AcquireSlot(const std::string& id, const std::string& lease_id, int64_t now_ms,
                        const PacingPolicy& policy) override {
    absl::StatusOr<ReplyPtr> reply =
        Eval(acquire_, {Key("inflight", id), Key("starts", id), Key("gap", id)},
             {Int(now_ms), lease_id, Int(policy.rpm), Int(policy.min_gap_ms),
              Int(policy.max_concurrent), Int(std::max<int64_t>(policy.lease_ttl_ms, 1))});
    int64_t granted = 0;
    int64_t retry_at = 0;
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_ARRAY || (*reply)->elements != 2 ||
        !ParseInt((*reply)->element[0], &granted) || !ParseInt((*reply)->element[1], &retry_at)) {
      return fallback_->AcquireSlot(id, lease_id, now_ms, policy);
    }
    return {granted == 1, retry_at};
  }

  void ReleaseSlot(const std::string& id, const std::string& lease_id) override {
    fallback_->ReleaseSlot(id, lease_id);
    (void)Call({"ZREM", Key("inflight", id), lease_id});
  }

  void RecordLatency(const std::string& provider, int64_t ms) override {
    if (!Eval(latency_, {Key("lat", provider)},
              {Int(ms), Int(static_cast<int64_t>(kLatencySamples)), Int(kLatencyTtlMs)})
             .ok()) {
      fallback_->RecordLatency(provider, ms);
    }
  }

  std::vector<int64_t> Latencies(const std::string& provider) override {
    absl::StatusOr<ReplyPtr> reply = Call({"LRANGE", Key("lat", provider), "0", "-1"});
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_ARRAY) return fallback_->Latencies(provider);
    std::vector<int64_t> out;
    for (size_t i = 0; i < (*reply)->elements; ++i) {
      int64_t v = 0;
      if (ParseInt((*reply)->element[i], &v)) out.push_back(v);
    }
    return out;
  }

  std::vector<ActiveCooldown> ActiveCooldowns(const std::vector<std::string>& connection_ids,
                                              int64_t now_ms) override {
    std::vector<ActiveCooldown> out;
    std::vector<std::string> args = {"MGET"};
    for (const auto& id : connection_ids) {
      args.push_back(Key("cd", id));
      args.push_back(Key("lvl", id));
    }
    absl::StatusOr<std::vector<std::string>> lockout_keys = Scan(absl::StrCat(AV(kPrefix), "lk:*"));
    if (!lockout_keys.ok()) return fallback_->ActiveCooldowns(connection_ids, now_ms);
    std::vector<std::string> lockout_ids;
    for (const std::string& k : *lockout_keys) {
      // omni:router:lk:{id}
      const size_t open = k.find('{');
      if (open == std::string::npos || k.back() != '}') continue;
      lockout_ids.push_back(k.substr(open + 1, k.size() - open - 2));
      args.push_back(k);
      args.push_back(Key("lklvl", lockout_ids.back()));
    }
    if (args.size() == 1) return out;
    absl::StatusOr<ReplyPtr> reply = Call(args);
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_ARRAY ||
        (*reply)->elements != args.size() - 1) {
      return fallback_->ActiveCooldowns(connection_ids, now_ms);
    }
    size_t i = 0;
    auto take = [&](CooldownScope scope, const std::string& id) {
      int64_t until = 0;
      int64_t level = 0;
      const bool has = ParseInt((*reply)->element[i], &until);
      ParseInt((*reply)->element[i + 1], &level);
      i += 2;
      if (has && until > now_ms) out.push_back({scope, id, until, static_cast<int>(level)});
    };
    for (const auto& id : connection_ids) take(CooldownScope::kConnection, id);
    for (const auto& id : lockout_ids) take(CooldownScope::kModel, id);
    return out;
  }

  void ResetCooldowns(const std::vector<std::string>& connection_ids) override {
    fallback_->ResetCooldowns(connection_ids);
    std::vector<std::string> args = {"DEL"};
    for (const auto& id : connection_ids) {
      args.push_back(Key("cd", id));
      args.push_back(Key("lvl", id));
    }
    for (const char* pattern : {"lk:*", "lklvl:*"}) {
      absl::StatusOr<std::vector<std::string>> keys = Scan(absl::StrCat(AV(kPrefix), pattern));
      if (keys.ok()) args.insert(args.end(), keys->begin(), keys->end());
    }
    if (args.size() > 1) (void)Call(args);
  }

  void AddStat(const std::string& name, int64_t delta) override {
    if (!Eval(stat_, {absl::StrCat(AV(kPrefix), "stats")}, {name, Int(delta), Int(kStatsTtlMs)})
             .ok()) {
      fallback_->AddStat(name, delta);
    }
  }

  std::map<std::string, int64_t> Stats() override {
    absl::StatusOr<ReplyPtr> reply = Call({"HGETALL", absl::StrCat(AV(kPrefix), "stats")});
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_ARRAY) return fallback_->Stats();
    std::map<std::string, int64_t> out;
    for (size_t i = 0; i + 1 < (*reply)->elements; i += 2) {
      int64_t v = 0;
      if (ParseInt((*reply)->element[i + 1], &v)) out[String((*reply)->element[i])] = v;
    }
    // What only this process saw while Redis was away is added on top.
    for (const auto& [k, v] : fallback_->Stats()) out[k] += v;
    return out;
  }

  std::optional<SharedDocument> GetDocument(const std::string& name) override {
    absl::StatusOr<ReplyPtr> reply = Call({"HMGET", Key("doc", name), "v", "body"});
    if (!reply.ok() || (*reply)->type != REDIS_REPLY_ARRAY || (*reply)->elements != 2) {
      return fallback_->GetDocument(name);
    }
    SharedDocument doc;
    if (!ParseInt((*reply)->element[0], &doc.version)) return std::nullopt;
    doc.body = String((*reply)->element[1]);
    return doc;
  }

  bool PutDocument(const std::string& name, const SharedDocument& doc) override {
    absl::StatusOr<ReplyPtr> reply =
        Eval(put_document_, {Key("doc", name)}, {Int(doc.version), doc.body});
    int64_t v = 0;
    if (!reply.ok() || !ParseInt(reply->get(), &v)) return fallback_->PutDocument(name, doc);
    return v == 1;
  }

  void Maintain(int64_t now_ms) override {
    fallback_->Maintain(now_ms);
    if (!Healthy() || !fallback_->Dirty()) return;
    // Redis is back: hand over what was learned meanwhile.
    MemoryStateStore::Exported e = fallback_->TakeExport(now_ms);
    size_t merged = 0;
    for (const ActiveCooldown& c : e.cooldowns) {
      const auto [cd, lvl] = CooldownKeys(c.scope, c.id);
      if (Eval(merge_cooldown_, {cd, lvl},
               {Int(now_ms), Int(c.until_ms), Int(c.level), Int(c.until_ms - now_ms + 600000)})
              .ok()) {
        ++merged;
      }
    }
    for (const auto& [provider, b] : e.breakers) {
      if (Eval(merge_breaker_, {Key("br", provider)}, {EncodeBreaker(b), Int(kBreakerTtlMs)})
              .ok()) {
        ++merged;
      }
    }
    for (const auto& s : e.sessions) {
      if (s.expires_ms > now_ms &&
          Call({"SET", Key("sess", s.session), absl::StrCat(s.connection, "|", s.expires_ms), "PX",
                Int(s.expires_ms - now_ms), "NX"})
              .ok()) {
        ++merged;
      }
    }
    LogInfo("redis is back; local routing state handed over",
            {{"redis", Describe()}, {"entries", std::to_string(merged)}});
  }

  bool Healthy() const override {
    if (healthy_.load()) {
      return true;
    }
    // Nothing may be routing right now: probe (at most once per reconnect interval).
    return Ping().ok();
  }

  std::string Kind() const override { return "redis"; }
  int64_t Errors() const override { return errors_.load(); }
  bool Shared() const override { return true; }

 private:
  struct Slot {
    std::mutex mu;
    redisContext* context = nullptr;
    uint64_t generation = 0;
  };

  static std::pair<std::string, std::string> CooldownKeys(CooldownScope scope,
                                                          const std::string& id) {
    if (scope == CooldownScope::kConnection) return {Key("cd", id), Key("lvl", id)};
    return {Key("lk", id), Key("lklvl", id)};
  }

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

  // One command; its reply, or why Redis could not answer (an error reply included).
  absl::StatusOr<ReplyPtr> Call(const std::vector<std::string>& args) const {
    ReplyPtr out;
    absl::Status s = Run([&](redisContext* c) -> absl::Status {
      out = Command(c, args);
      return ReplyStatus(c, out);
    });
    if (!s.ok()) return s;
    return out;
  }

  // A script by its SHA-1, loading it when the server does not know it.
  absl::StatusOr<ReplyPtr> Eval(const Script& script, const std::vector<std::string>& keys,
                                const std::vector<std::string>& argv) const {
    std::vector<std::string> args = {"EVALSHA", script.sha, Int(static_cast<int64_t>(keys.size()))};
    args.insert(args.end(), keys.begin(), keys.end());
    args.insert(args.end(), argv.begin(), argv.end());
    ReplyPtr out;
    absl::Status s = Run([&](redisContext* c) -> absl::Status {
      out = Command(c, args);
      if (IsNoScript(out)) {
        args[0] = "EVAL";
        args[1] = script.source;
        out = Command(c, args);
      }
      return ReplyStatus(c, out);
    });
    if (!s.ok()) return s;
    return out;
  }

  static std::vector<std::string> EvalArgs(const Script& script,
                                          const std::vector<std::string>& keys,
                                          const std::vector<std::string>& argv) {
    std::vector<std::string> args = {"EVALSHA", script.sha, Int(static_cast<int64_t>(keys.size()))};
    args.insert(args.end(), keys.begin(), keys.end());
    args.insert(args.end(), argv.begin(), argv.end());
    return args;
  }

  // Several calls of one script (EvalArgs) in one round trip: all are sent, then all
  // replies read, so that the connection stays in step even when one of them fails. The
  // replies in order, or why Redis could not answer (an error reply included).
  absl::StatusOr<std::vector<ReplyPtr>> EvalPipelined(
      const Script& script, std::vector<std::vector<std::string>>& calls) const {
    std::vector<ReplyPtr> out;
    absl::Status s = Run([&](redisContext* c) -> absl::Status {
      out.clear();
      for (const std::vector<std::string>& args : calls) {
        std::vector<const char*> argv;
        std::vector<size_t> lens;
        for (const std::string& a : args) {
          argv.push_back(a.data());
          lens.push_back(a.size());
        }
        if (redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(),
                                   lens.data()) != REDIS_OK) {
          return ReplyStatus(c, nullptr);
        }
      }
      for (size_t i = 0; i < calls.size(); ++i) {
        void* reply = nullptr;
        if (redisGetReply(c, &reply) != REDIS_OK) return ReplyStatus(c, nullptr);
        out.emplace_back(static_cast<redisReply*>(reply));
      }
      absl::Status first_error;
      for (size_t i = 0; i < calls.size(); ++i) {
        if (IsNoScript(out[i])) {
          calls[i][0] = "EVAL";
          calls[i][1] = script.source;
          out[i] = Command(c, calls[i]);
        }
        if (absl::Status st = ReplyStatus(c, out[i]); !st.ok()) {
          if (c->err != 0) return st;  // the connection failed
          if (first_error.ok()) first_error = st;
        }
      }
      return first_error;
    });
    if (!s.ok()) {
      // Redis did not answer (the caller falls back); an error reply fails only its call.
      if (out.size() != calls.size()) return s;
    }
    return out;
  }

  // Every key matching `pattern`.
  absl::StatusOr<std::vector<std::string>> Scan(const std::string& pattern) const {
    std::vector<std::string> keys;
    std::string cursor = "0";
    for (int rounds = 0; rounds < 10000; ++rounds) {
      absl::StatusOr<ReplyPtr> reply = Call({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
      if (!reply.ok()) return reply.status();
      const redisReply* r = reply->get();
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
          r->element[1]->type != REDIS_REPLY_ARRAY) {
        return absl::InternalError("redis: unexpected SCAN reply");
      }
      cursor = String(r->element[0]);
      for (size_t i = 0; i < r->element[1]->elements; ++i) {
        keys.push_back(String(r->element[1]->element[i]));
      }
      if (cursor == "0" || cursor.empty()) break;
    }
    return keys;
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
    errors_.fetch_add(1);
    if (slot.context->err == 0) {
      // An error reply: the connection is fine and Redis is up.
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
      errors_.fetch_add(1);
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
  const Script start_cooldown_;
  const Script merge_cooldown_;
  const Script increment_;
  const Script try_probe_;
  const Script failure_;
  const Script success_;
  const Script success_outcome_;
  const Script merge_breaker_;
  const Script acquire_;
  const Script latency_;
  const Script stat_;
  const Script put_document_;
  const std::shared_ptr<MemoryStateStore> fallback_;

  std::vector<std::unique_ptr<Slot>> pool_;
  mutable std::atomic<size_t> next_slot_{0};
  mutable std::atomic<uint64_t> generation_{1};  // bumped when Redis fails
  mutable std::atomic<bool> healthy_{false};
  mutable std::atomic<int64_t> next_attempt_ms_{0};  // steady clock
  mutable std::atomic<int64_t> errors_{0};
  std::atomic<uint64_t> probe_seq_{0};
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

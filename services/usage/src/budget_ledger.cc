#include "budget_ledger.h"

#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <sys/time.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace omniroute::usage {
namespace {

// Whether a request of `rate` fits its minute with `so_far` counted already (the Lua script
// of the Redis ledger applies the same rule).
RateDenial RateDenied(const LedgerRate& rate, const LedgerRateState& so_far) {
  if (rate.max_requests > 0 && so_far.requests >= rate.max_requests) {
    return RateDenial::kRequests;
  }
  if (rate.max_tokens > 0 && so_far.tokens > 0 && so_far.tokens + rate.tokens > rate.max_tokens) {
    return RateDenial::kTokens;
  }
  return RateDenial::kNone;
}

// ---------------------------------------------------------------------------------------
// Memory ledger

class MemoryLedger final : public BudgetLedger {
 public:
  absl::StatusOr<LedgerReserve> Reserve(const std::vector<LedgerCheck>& checks,
                                        const LedgerRate* rate,
                                        const std::string& reservation_id,
                                        const std::string& request_id, int64_t amount,
                                        int64_t now_ms, int64_t expires_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    Sweep(now_ms);
    LedgerReserve out;
    for (size_t i = 0; i < checks.size(); ++i) {
      Window& w = Get(checks[i].window, now_ms);
      out.states.push_back({w.spent, w.held});
      if (out.denied < 0 && checks[i].limit > 0 && w.spent + w.held >= checks[i].limit) {
        out.denied = static_cast<int>(i);
      }
    }
    RateWindow* minute = nullptr;
    if (rate != nullptr) {
      minute = &rates_[rate->window.key];
      minute->expire_at = std::max(minute->expire_at, rate->window.expire_at_ms);
      out.rate = {minute->requests, minute->tokens};
      out.rate_denied = RateDenied(*rate, out.rate);
    }
    if (out.denied >= 0 || out.rate_denied != RateDenial::kNone) {
      return out;
    }
    if (minute != nullptr) {
      minute->requests += 1;
      minute->tokens += rate->tokens;
    }
    Reservation r;
    r.amount = amount;
    r.expires = expires_ms;
    r.request_id = request_id;
    for (const LedgerCheck& c : checks) {
      if (c.limit <= 0) {
        continue;
      }
      Window& w = windows_[c.window.key];
      w.held += amount;
      w.holds[reservation_id] = {amount, expires_ms};
      r.windows.push_back(c.window.key);
    }
    if (!r.windows.empty()) {
      if (!request_id.empty()) {
        by_request_[request_id] = reservation_id;
      }
      reservations_[reservation_id] = std::move(r);
    }
    return out;
  }

  absl::StatusOr<bool> Settle(const std::string& reservation_id, int64_t amount, bool release,
                              int64_t now_ms, int64_t expires_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = reservations_.find(reservation_id);
    if (it == reservations_.end()) {
      return false;
    }
    if (release) {
      Release(it);
      return true;
    }
    Reservation& r = it->second;
    const int64_t next = amount >= 0 ? amount : r.amount;
    for (const std::string& key : r.windows) {
      auto w = windows_.find(key);
      if (w == windows_.end()) {
        continue;
      }
      auto h = w->second.holds.find(reservation_id);
      if (h == w->second.holds.end()) {
        continue;
      }
      w->second.held += next - h->second.first;
      h->second = {next, expires_ms};
    }
    r.amount = next;
    r.expires = expires_ms;
    return true;
  }

  absl::Status Apply(const std::vector<std::pair<WindowRef, int64_t>>& deltas,
                     const std::vector<std::string>& arrived_request_ids, int64_t now_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [ref, delta] : deltas) {
      Window& w = Get(ref, now_ms);
      w.spent += delta;
    }
    for (const std::string& id : arrived_request_ids) {
      auto r = by_request_.find(id);
      if (r == by_request_.end()) {
        continue;
      }
      auto it = reservations_.find(r->second);
      if (it != reservations_.end()) {
        Release(it);
      } else {
        by_request_.erase(r);
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<LedgerState>> Read(const std::vector<WindowRef>& windows,
                                                int64_t now_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<LedgerState> out;
    for (const WindowRef& ref : windows) {
      auto it = windows_.find(ref.key);
      if (it == windows_.end()) {
        out.push_back({});
        continue;
      }
      Purge(it->second, now_ms);
      out.push_back({it->second.spent, it->second.held});
    }
    return out;
  }

  absl::Status Seed(const std::vector<std::pair<WindowRef, int64_t>>& spent,
                    bool overwrite) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (overwrite) {
      for (auto& [key, w] : windows_) {
        w.spent = 0;
      }
    }
    for (const auto& [ref, value] : spent) {
      auto [it, inserted] = windows_.try_emplace(ref.key);
      if (inserted || overwrite) {
        it->second.spent = value;
        it->second.expire_at = ref.expire_at_ms;
      }
    }
    return absl::OkStatus();
  }

  bool blocking() const override { return false; }

 private:
  struct Window {
    int64_t spent = 0;
    int64_t held = 0;
    int64_t expire_at = 0;
    std::map<std::string, std::pair<int64_t, int64_t>> holds;  // reservation → amount, expiry
  };
  struct RateWindow {
    int64_t requests = 0;
    int64_t tokens = 0;
    int64_t expire_at = 0;
  };
  struct Reservation {
    std::vector<std::string> windows;
    int64_t amount = 0;
    int64_t expires = 0;
    std::string request_id;
  };

  Window& Get(const WindowRef& ref, int64_t now_ms) {
    Window& w = windows_[ref.key];
    w.expire_at = std::max(w.expire_at, ref.expire_at_ms);
    Purge(w, now_ms);
    return w;
  }

  static void Purge(Window& w, int64_t now_ms) {
    for (auto it = w.holds.begin(); it != w.holds.end();) {
      if (it->second.second <= now_ms) {
        w.held -= it->second.first;
        it = w.holds.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Release(std::unordered_map<std::string, Reservation>::iterator it) {
    for (const std::string& key : it->second.windows) {
      auto w = windows_.find(key);
      if (w == windows_.end()) {
        continue;
      }
      auto h = w->second.holds.find(it->first);
      if (h != w->second.holds.end()) {
        w->second.held -= h->second.first;
        w->second.holds.erase(h);
      }
    }
    if (!it->second.request_id.empty()) {
      by_request_.erase(it->second.request_id);
    }
    reservations_.erase(it);
  }

  // Forgets expired reservations and windows, at most once a second.
  void Sweep(int64_t now_ms) {
    if (now_ms - last_sweep_ < 1000) {
      return;
    }
    last_sweep_ = now_ms;
    for (auto it = reservations_.begin(); it != reservations_.end();) {
      if (it->second.expires <= now_ms) {
        auto next = std::next(it);
        Release(it);
        it = next;
      } else {
        ++it;
      }
    }
    for (auto it = windows_.begin(); it != windows_.end();) {
      if (it->second.expire_at > 0 && it->second.expire_at < now_ms && it->second.holds.empty()) {
        it = windows_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = rates_.begin(); it != rates_.end();) {
      if (it->second.expire_at < now_ms) {
        it = rates_.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::mutex mu_;
  std::unordered_map<std::string, Window> windows_;
  std::unordered_map<std::string, Reservation> reservations_;
  std::unordered_map<std::string, std::string> by_request_;
  std::unordered_map<std::string, RateWindow> rates_;
  int64_t last_sweep_ = 0;
};

// ---------------------------------------------------------------------------------------
// Redis ledger

// Shared Lua: purge(w, now) drops lapsed holds of window hash `w`; release(res, id) drops a
// reservation's holds and its record. Hold members are "<reservation id>:<amount>".
constexpr char kLuaHelpers[] = R"lua(
local function purge(w, now)
  local z = w .. ':h'
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #old > 0 then
    local sum = 0
    for _, m in ipairs(old) do
      sum = sum + tonumber(string.match(m, ':(%-?%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
    redis.call('HINCRBY', w, 'h', -sum)
  end
end
local function release(res, id)
  local t = redis.call('HMGET', res, 'a', 'w')
  if not t[1] then return 0 end
  local member = id .. ':' .. t[1]
  for w in string.gmatch(t[2], '[^\n]+') do
    if redis.call('ZREM', w .. ':h', member) == 1 then
      redis.call('HINCRBY', w, 'h', -tonumber(t[1]))
    end
  end
  redis.call('DEL', res)
  return 1
end
)lua";

// KEYS: windows 1..n, reservation, request, rate window. ARGV: now, id, amount, expires, n,
// request id, then per window: limit, expire_at, then rate: on (0/1), max requests, max
// tokens, tokens, expire_at. Returns {denied index (0 = none), s1, h1, s2, h2, ...,
// rate denial (0 none, 1 requests, 2 tokens), requests so far, tokens so far}.
constexpr char kReserveBody[] = R"lua(
local now = tonumber(ARGV[1])
local amount = ARGV[3]
local expires = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {0}
local denied = 0
for i = 1, n do
  local w = KEYS[i]
  purge(w, now)
  local s = tonumber(redis.call('HGET', w, 's') or '0')
  local h = tonumber(redis.call('HGET', w, 'h') or '0')
  out[#out + 1] = s
  out[#out + 1] = h
  local limit = tonumber(ARGV[5 + 2 * i])
  if denied == 0 and limit > 0 and s + h >= limit then denied = i end
end
out[1] = denied
local rb = 7 + 2 * n
local rkey = KEYS[n + 3]
local rate_on = ARGV[rb] == '1'
local rdenied = 0
local rreq = 0
local rtok = 0
if rate_on then
  rreq = tonumber(redis.call('HGET', rkey, 'r') or '0')
  rtok = tonumber(redis.call('HGET', rkey, 't') or '0')
  local max_req = tonumber(ARGV[rb + 1])
  local max_tok = tonumber(ARGV[rb + 2])
  if max_req > 0 and rreq >= max_req then
    rdenied = 1
  elseif max_tok > 0 and rtok > 0 and rtok + tonumber(ARGV[rb + 3]) > max_tok then
    rdenied = 2
  end
end
out[#out + 1] = rdenied
out[#out + 1] = rreq
out[#out + 1] = rtok
if denied > 0 or rdenied > 0 then return out end
if rate_on then
  redis.call('HINCRBY', rkey, 'r', 1)
  redis.call('HINCRBY', rkey, 't', ARGV[rb + 3])
  redis.call('PEXPIREAT', rkey, ARGV[rb + 4])
end
local held = {}
for i = 1, n do
  local w = KEYS[i]
  local limit = tonumber(ARGV[5 + 2 * i])
  local expire_at = ARGV[6 + 2 * i]
  if limit > 0 then
    redis.call('HINCRBY', w, 'h', amount)
    redis.call('ZADD', w .. ':h', expires, ARGV[2] .. ':' .. amount)
    redis.call('PEXPIREAT', w .. ':h', expire_at)
    held[#held + 1] = w
  end
  redis.call('PEXPIREAT', w, expire_at)
end
if #held > 0 then
  redis.call('HSET', KEYS[n + 1], 'a', amount, 'w', table.concat(held, '\n'))
  redis.call('PEXPIREAT', KEYS[n + 1], expires + 60000)
  if ARGV[6] ~= '' then
    redis.call('SET', KEYS[n + 2], ARGV[2], 'PX', math.max(1, expires - now + 60000))
  end
end
return out
)lua";

// KEYS: reservation. ARGV: now, id, amount (-1 = keep), release (0/1), expires.
constexpr char kSettleBody[] = R"lua(
if ARGV[4] == '1' then return release(KEYS[1], ARGV[2]) end
local t = redis.call('HMGET', KEYS[1], 'a', 'w')
if not t[1] then return 0 end
local amount = ARGV[3]
if tonumber(amount) < 0 then amount = t[1] end
local old = ARGV[2] .. ':' .. t[1]
for w in string.gmatch(t[2], '[^\n]+') do
  if redis.call('ZREM', w .. ':h', old) == 1 then
    redis.call('HINCRBY', w, 'h', tonumber(amount) - tonumber(t[1]))
    redis.call('ZADD', w .. ':h', ARGV[5], ARGV[2] .. ':' .. amount)
  end
end
redis.call('HSET', KEYS[1], 'a', amount)
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]) + 60000)
return 1
)lua";

// KEYS: windows 1..n, then request keys. ARGV: n, reservation key prefix, then per window:
// delta, expire_at.
constexpr char kApplyBody[] = R"lua(
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 's', ARGV[1 + 2 * i])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 + 2 * i])
end
for i = n + 1, #KEYS do
  local id = redis.call('GET', KEYS[i])
  if id then
    release(ARGV[2] .. id, id)
    redis.call('DEL', KEYS[i])
  end
end
return 1
)lua";

// KEYS: windows. ARGV: now. Returns {s1, h1, ...}.
constexpr char kReadBody[] = R"lua(
local out = {}
for i = 1, #KEYS do
  purge(KEYS[i], tonumber(ARGV[1]))
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 's') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 'h') or '0')
end
return out
)lua";

// KEYS: windows. ARGV: overwrite (0/1), then per window spent, expire_at.
constexpr char kSeedBody[] = R"lua(
local cmd = 'HSETNX'
if ARGV[1] == '1' then cmd = 'HSET' end
for i = 1, #KEYS do
  redis.call(cmd, KEYS[i], 's', ARGV[2 * i])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i + 1])
end
return 1
)lua";

struct Script {
  std::string text;
  std::string sha;
};

Script MakeScript(std::string_view body) {
  Script s;
  s.text = absl::StrCat(kLuaHelpers, AV(body));
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.text.data()), s.text.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char c : digest) {
    s.sha.push_back(kHex[c >> 4]);
    s.sha.push_back(kHex[c & 15]);
  }
  return s;
}

struct RedisTarget {
  std::string host;
  int port = 6379;
  std::string socket;
  std::string user;
  std::string password;
  int db = 0;
};

absl::StatusOr<RedisTarget> ParseUrl(std::string_view url) {
  RedisTarget t;
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("invalid Redis URL '", AV(url), "'"));
  };
  if (url.rfind("unix://", 0) == 0) {
    std::string_view rest = url.substr(7);
    const size_t q = rest.find('?');
    t.socket = std::string(rest.substr(0, q));
    if (q != std::string_view::npos && rest.substr(q + 1).rfind("db=", 0) == 0 &&
        !absl::SimpleAtoi(AV(rest.substr(q + 4)), &t.db)) {
      return bad();
    }
    if (t.socket.empty()) {
      return bad();
    }
    return t;
  }
  std::string_view rest;
  if (url.rfind("redis://", 0) == 0) {
    rest = url.substr(8);
  } else {
    return bad();
  }
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = auth.find(':');
    if (colon == std::string_view::npos) {
      t.password = std::string(auth);
    } else {
      t.user = std::string(auth.substr(0, colon));
      t.password = std::string(auth.substr(colon + 1));
    }
  }
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!db.empty() && !absl::SimpleAtoi(AV(db), &t.db)) {
      return bad();
    }
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string_view::npos) {
    if (!absl::SimpleAtoi(AV(rest.substr(colon + 1)), &t.port) || t.port <= 0 || t.port > 65535) {
      return bad();
    }
    rest = rest.substr(0, colon);
  }
  t.host = std::string(rest);
  if (t.host.empty()) {
    return bad();
  }
  return t;
}

using ReplyPtr = std::unique_ptr<redisReply, void (*)(void*)>;

class RedisLedger final : public BudgetLedger {
 public:
  RedisLedger(RedisTarget target, RedisLedgerOptions options)
      : target_(std::move(target)),
        options_(std::move(options)),
        reserve_(MakeScript(kReserveBody)),
        settle_(MakeScript(kSettleBody)),
        apply_(MakeScript(kApplyBody)),
        read_(MakeScript(kReadBody)),
        seed_(MakeScript(kSeedBody)) {}

  ~RedisLedger() override {
    for (redisContext* c : idle_) {
      redisFree(c);
    }
  }

  absl::StatusOr<LedgerReserve> Reserve(const std::vector<LedgerCheck>& checks,
                                        const LedgerRate* rate,
                                        const std::string& reservation_id,
                                        const std::string& request_id, int64_t amount,
                                        int64_t now_ms, int64_t expires_ms) override {
    std::vector<std::string> keys;
    std::vector<std::string> args = {std::to_string(now_ms),        reservation_id,
                                     std::to_string(amount),        std::to_string(expires_ms),
                                     std::to_string(checks.size()), request_id};
    for (const LedgerCheck& c : checks) {
      keys.push_back(Key(c.window.key));
      args.push_back(std::to_string(c.limit));
      args.push_back(std::to_string(c.window.expire_at_ms));
    }
    keys.push_back(absl::StrCat(options_.prefix, "res:", reservation_id));
    keys.push_back(absl::StrCat(options_.prefix, "req:", request_id));
    if (rate != nullptr) {
      keys.push_back(Key(rate->window.key));
      args.insert(args.end(),
                  {"1", std::to_string(rate->max_requests), std::to_string(rate->max_tokens),
                   std::to_string(rate->tokens), std::to_string(rate->window.expire_at_ms)});
    } else {
      keys.push_back(absl::StrCat(options_.prefix, "rate:none"));
      args.insert(args.end(), {"0", "0", "0", "0", "0"});
    }
    absl::StatusOr<ReplyPtr> reply = Eval(reserve_, keys, args);
    if (!reply.ok()) {
      return reply.status();
    }
    const redisReply* r = reply->get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 + 2 * checks.size()) {
      return absl::InternalError("redis budget reserve: unexpected reply");
    }
    LedgerReserve out;
    out.denied = static_cast<int>(r->element[0]->integer) - 1;
    for (size_t i = 0; i < checks.size(); ++i) {
      out.states.push_back({r->element[1 + 2 * i]->integer, r->element[2 + 2 * i]->integer});
    }
    const size_t rate_at = 1 + 2 * checks.size();
    out.rate_denied = static_cast<RateDenial>(r->element[rate_at]->integer);
    out.rate = {r->element[rate_at + 1]->integer, r->element[rate_at + 2]->integer};
    return out;
  }

  absl::StatusOr<bool> Settle(const std::string& reservation_id, int64_t amount, bool release,
                              int64_t now_ms, int64_t expires_ms) override {
    absl::StatusOr<ReplyPtr> reply =
        Eval(settle_, {absl::StrCat(options_.prefix, "res:", reservation_id)},
             {std::to_string(now_ms), reservation_id, std::to_string(amount), release ? "1" : "0",
              std::to_string(expires_ms)});
    if (!reply.ok()) {
      return reply.status();
    }
    return (*reply)->type == REDIS_REPLY_INTEGER && (*reply)->integer == 1;
  }

  absl::Status Apply(const std::vector<std::pair<WindowRef, int64_t>>& deltas,
                     const std::vector<std::string>& arrived_request_ids, int64_t now_ms) override {
    if (deltas.empty() && arrived_request_ids.empty()) {
      return absl::OkStatus();
    }
    std::vector<std::string> keys;
    std::vector<std::string> args = {std::to_string(deltas.size()),
                                     absl::StrCat(options_.prefix, "res:")};
    for (const auto& [ref, delta] : deltas) {
      keys.push_back(Key(ref.key));
      args.push_back(std::to_string(delta));
      args.push_back(std::to_string(ref.expire_at_ms));
    }
    for (const std::string& id : arrived_request_ids) {
      keys.push_back(absl::StrCat(options_.prefix, "req:", id));
    }
    absl::StatusOr<ReplyPtr> reply = Eval(apply_, keys, args);
    return reply.ok() ? absl::OkStatus() : reply.status();
  }

  absl::StatusOr<std::vector<LedgerState>> Read(const std::vector<WindowRef>& windows,
                                                int64_t now_ms) override {
    std::vector<LedgerState> out;
    if (windows.empty()) {
      return out;
    }
    std::vector<std::string> keys;
    for (const WindowRef& w : windows) {
      keys.push_back(Key(w.key));
    }
    absl::StatusOr<ReplyPtr> reply = Eval(read_, keys, {std::to_string(now_ms)});
    if (!reply.ok()) {
      return reply.status();
    }
    const redisReply* r = reply->get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 * windows.size()) {
      return absl::InternalError("redis budget read: unexpected reply");
    }
    for (size_t i = 0; i < windows.size(); ++i) {
      out.push_back({r->element[2 * i]->integer, r->element[2 * i + 1]->integer});
    }
    return out;
  }

  absl::Status Seed(const std::vector<std::pair<WindowRef, int64_t>>& spent,
                    bool overwrite) override {
    if (spent.empty()) {
      return absl::OkStatus();
    }
    std::vector<std::string> keys;
    std::vector<std::string> args = {overwrite ? "1" : "0"};
    for (const auto& [ref, value] : spent) {
      keys.push_back(Key(ref.key));
      args.push_back(std::to_string(value));
      args.push_back(std::to_string(ref.expire_at_ms));
    }
    absl::StatusOr<ReplyPtr> reply = Eval(seed_, keys, args);
    return reply.ok() ? absl::OkStatus() : reply.status();
  }

  bool blocking() const override { return true; }

 private:
  std::string Key(const std::string& window) const { return options_.prefix + window; }

  absl::StatusOr<redisContext*> Acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        redisContext* c = idle_.back();
        idle_.pop_back();
        return c;
      }
    }
    timeval connect{};
    connect.tv_sec = options_.connect_timeout.count() / 1000;
    connect.tv_usec = (options_.connect_timeout.count() % 1000) * 1000;
    redisContext* c = target_.socket.empty()
                          ? redisConnectWithTimeout(target_.host.c_str(), target_.port, connect)
                          : redisConnectUnixWithTimeout(target_.socket.c_str(), connect);
    if (c == nullptr || c->err != 0) {
      const std::string err = c != nullptr ? c->errstr : "out of memory";
      if (c != nullptr) {
        redisFree(c);
      }
      return absl::UnavailableError(absl::StrCat("redis: ", err));
    }
    timeval command{};
    command.tv_sec = options_.command_timeout.count() / 1000;
    command.tv_usec = (options_.command_timeout.count() % 1000) * 1000;
    redisSetTimeout(c, command);
    auto simple = [&](std::vector<std::string> argv) -> bool {
      std::vector<const char*> ptrs;
      std::vector<size_t> lens;
      for (const std::string& a : argv) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
      }
      ReplyPtr r(static_cast<redisReply*>(
                     redisCommandArgv(c, static_cast<int>(argv.size()), ptrs.data(), lens.data())),
                 freeReplyObject);
      return r != nullptr && r->type != REDIS_REPLY_ERROR;
    };
    if (!target_.password.empty()) {
      std::vector<std::string> argv = {"AUTH"};
      if (!target_.user.empty()) {
        argv.push_back(target_.user);
      }
      argv.push_back(target_.password);
      if (!simple(argv)) {
        redisFree(c);
        return absl::UnavailableError("redis: AUTH failed");
      }
    }
    if (target_.db != 0 && !simple({"SELECT", std::to_string(target_.db)})) {
      redisFree(c);
      return absl::UnavailableError("redis: SELECT failed");
    }
    return c;
  }

  void Release(redisContext* c, bool healthy) {
    if (!healthy) {
      redisFree(c);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < 16) {
      idle_.push_back(c);
    } else {
      redisFree(c);
    }
  }

  absl::StatusOr<ReplyPtr> Eval(const Script& script, const std::vector<std::string>& keys,
                                const std::vector<std::string>& args) {
    absl::StatusOr<redisContext*> conn = Acquire();
    if (!conn.ok()) {
      return conn.status();
    }
    redisContext* c = *conn;
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::vector<std::string> argv = {attempt == 0 ? "EVALSHA" : "EVAL",
                                       attempt == 0 ? script.sha : script.text,
                                       std::to_string(keys.size())};
      argv.insert(argv.end(), keys.begin(), keys.end());
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<const char*> ptrs;
      std::vector<size_t> lens;
      for (const std::string& a : argv) {
        ptrs.push_back(a.data());
        lens.push_back(a.size());
      }
      ReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()),
                                                               ptrs.data(), lens.data())),
                     freeReplyObject);
      if (reply == nullptr) {
        const std::string err = c->errstr;
        Release(c, false);
        return absl::UnavailableError(absl::StrCat("redis: ", err));
      }
      if (reply->type == REDIS_REPLY_ERROR) {
        const std::string err(reply->str, reply->len);
        if (attempt == 0 && err.rfind("NOSCRIPT", 0) == 0) {
          continue;
        }
        Release(c, true);
        return absl::InternalError(absl::StrCat("redis: ", err));
      }
      Release(c, true);
      return reply;
    }
    Release(c, true);
    return absl::InternalError("redis: script not loaded");
  }

  const RedisTarget target_;
  const RedisLedgerOptions options_;
  const Script reserve_;
  const Script settle_;
  const Script apply_;
  const Script read_;
  const Script seed_;
  std::mutex mu_;
  std::vector<redisContext*> idle_;
};

}  // namespace

std::unique_ptr<BudgetLedger> MakeMemoryLedger() { return std::make_unique<MemoryLedger>(); }

absl::StatusOr<std::unique_ptr<BudgetLedger>> MakeRedisLedger(const std::string& url,
                                                              RedisLedgerOptions options) {
  absl::StatusOr<RedisTarget> target = ParseUrl(url);
  if (!target.ok()) {
    return target.status();
  }
  return std::unique_ptr<BudgetLedger>(new RedisLedger(*std::move(target), std::move(options)));
}

}  // namespace omniroute::usage

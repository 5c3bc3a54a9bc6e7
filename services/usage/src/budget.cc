#include "budget.h"

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute::usage {
namespace {

constexpr int64_t kDayMs = 86400000;
constexpr int64_t kMinuteMs = 60000;
constexpr int64_t kWindowGraceMs = 2 * kDayMs;  // windows outlive their end by this
constexpr WindowKind kKinds[] = {WindowKind::kDaily, WindowKind::kWeekly, WindowKind::kMonthly};

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) {
    --q;
  }
  return q;
}

// Days since 1970-01-01 of a civil date (proleptic Gregorian).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

char KindLetter(WindowKind k) {
  return k == WindowKind::kDaily ? 'd' : k == WindowKind::kWeekly ? 'w' : 'm';
}

double LimitOf(const v1::Budget& b, WindowKind k) {
  return k == WindowKind::kDaily    ? b.daily_usd()
         : k == WindowKind::kWeekly ? b.weekly_usd()
                                    : b.monthly_usd();
}

std::string Capitalized(WindowKind k) {
  return k == WindowKind::kDaily ? "Daily" : k == WindowKind::kWeekly ? "Weekly" : "Monthly";
}

// A window's key in the ledger: "key:ID|d:DAY" or "team:NAME|m:DAY" (DAY: its first day).
void WindowKey(std::string* out, std::string_view key_id, std::string_view team,
               const WindowSpan& span) {
  char day[24];
  const char* day_end = std::to_chars(day, day + sizeof(day), span.start_day).ptr;
  out->assign(key_id.empty() ? "team:" : "key:");
  out->append(key_id.empty() ? team : key_id);
  const char kind[] = {'|', KindLetter(span.kind), ':'};
  out->append(kind, sizeof(kind));
  out->append(day, static_cast<size_t>(day_end - day));
}

std::string Money(double usd) { return absl::StrFormat("$%.4f", usd); }

std::string NewId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x%016x", rng(), rng());
}

}  // namespace

int64_t DayIndex(int64_t ts_ms, int64_t offset_ms) { return FloorDiv(ts_ms - offset_ms, kDayMs); }

WindowSpan SpanOf(WindowKind kind, int64_t ts_ms, int64_t offset_ms) {
  const int64_t day = DayIndex(ts_ms, offset_ms);
  WindowSpan s;
  s.kind = kind;
  int64_t end_day = day + 1;
  switch (kind) {
    case WindowKind::kDaily:
      s.start_day = day;
      break;
    case WindowKind::kWeekly: {
      // 1970-01-01 was a Thursday: (day + 3) mod 7 is 0 on Mondays.
      const int64_t since_monday = ((day + 3) % 7 + 7) % 7;
      s.start_day = day - since_monday;
      end_day = s.start_day + 7;
      break;
    }
    case WindowKind::kMonthly: {
      int64_t y = 0;
      unsigned m = 0;
      unsigned d = 0;
      CivilFromDays(day, &y, &m, &d);
      s.start_day = DaysFromCivil(y, m, 1);
      end_day = m == 12 ? DaysFromCivil(y + 1, 1, 1) : DaysFromCivil(y, m + 1, 1);
      break;
    }
  }
  s.start_ms = s.start_day * kDayMs + offset_ms;
  s.end_ms = end_day * kDayMs + offset_ms;
  return s;
}

const char* WindowName(WindowKind kind) {
  return kind == WindowKind::kDaily ? "daily" : kind == WindowKind::kWeekly ? "weekly" : "monthly";
}

std::string FormatUtc(int64_t ms) {
  const int64_t day = FloorDiv(ms, kDayMs);
  const int64_t in_day = ms - day * kDayMs;
  int64_t y = 0;
  unsigned m = 0;
  unsigned d = 0;
  CivilFromDays(day, &y, &m, &d);
  const int64_t secs = in_day / 1000;
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, secs / 3600, secs / 60 % 60,
                         secs % 60);
}

Budgets::Budgets(std::unique_ptr<BudgetLedger> ledger, BudgetOptions options, Clock clock)
    : ledger_(std::move(ledger)), options_(options), clock_(std::move(clock)) {}

std::string Budgets::SubjectKey(const Subject& s) {
  return s.first.empty() ? absl::StrCat("team:", s.second) : absl::StrCat("key:", s.first);
}

WindowRef Budgets::Ref(const Subject& s, const WindowSpan& span) const {
  WindowRef ref;
  WindowKey(&ref.key, s.first, s.second, span);
  ref.expire_at_ms = span.end_ms + kWindowGraceMs;
  return ref;
}

void Budgets::SetConfigBudgets(const std::vector<v1::Budget>& budgets) {
  std::lock_guard<std::mutex> lock(mu_);
  config_.clear();
  for (v1::Budget b : budgets) {
    b.set_source("config");
    config_[{b.client_key_id(), b.team()}] = std::move(b);
  }
}

void Budgets::SetRuntimeBudgets(const std::vector<v1::Budget>& budgets) {
  std::lock_guard<std::mutex> lock(mu_);
  runtime_.clear();
  for (v1::Budget b : budgets) {
    b.set_source("api");
    runtime_[{b.client_key_id(), b.team()}] = std::move(b);
  }
}

absl::StatusOr<v1::Budget> Budgets::Upsert(v1::Budget b) {
  if (b.client_key_id().empty() == b.team().empty()) {
    return absl::InvalidArgumentError("a budget names exactly one of a key id and a team");
  }
  for (double v : {b.daily_usd(), b.weekly_usd(), b.monthly_usd()}) {
    if (!(v >= 0) || v > 1e12) {
      return absl::InvalidArgumentError("budget limits must be between 0 and 1e12 USD");
    }
  }
  if (!(b.warn_at() >= 0) || b.warn_at() > 1) {
    return absl::InvalidArgumentError("warn_at must be between 0 and 1");
  }
  b.set_source("api");
  std::lock_guard<std::mutex> lock(mu_);
  const Subject s{b.client_key_id(), b.team()};
  if (config_.count(s)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the budget of ", SubjectKey(s), " is managed by the config file; edit the file instead"));
  }
  runtime_[s] = b;
  return b;
}

absl::Status Budgets::Remove(const std::string& client_key_id, const std::string& team) {
  std::lock_guard<std::mutex> lock(mu_);
  const Subject s{client_key_id, team};
  if (config_.count(s)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the budget of ", SubjectKey(s), " is managed by the config file; edit the file instead"));
  }
  if (runtime_.erase(s) == 0) {
    return absl::NotFoundError(absl::StrCat("no budget for ", SubjectKey(s)));
  }
  return absl::OkStatus();
}

bool Budgets::HasBudgets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !config_.empty() || !runtime_.empty();
}

uint64_t Budgets::rejections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rejections_;
}

const v1::Budget* Budgets::Find(const Subject& s) const {
  if (auto it = config_.find(s); it != config_.end()) {
    return &it->second;
  }
  if (auto it = runtime_.find(s); it != runtime_.end()) {
    return &it->second;
  }
  return nullptr;
}

v1::Reservation Budgets::Reserve(const v1::ReserveRequest& request, double estimate_usd) {
  struct Meta {
    Subject subject;
    WindowSpan span;
    double limit = 0;
    double warn_at = 0;
  };
  const int64_t now = clock_();
  std::vector<LedgerCheck> checks;
  std::vector<Meta> meta;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Subject& s : {Subject{request.client_key_id(), ""}, Subject{"", request.team()}}) {
      if (s.first.empty() && s.second.empty()) {
        continue;
      }
      const v1::Budget* b = Find(s);
      if (b == nullptr) {
        continue;
      }
      for (WindowKind k : kKinds) {
        const double limit = LimitOf(*b, k);
        if (limit <= 0) {
          continue;
        }
        const WindowSpan span = SpanOf(k, now, options_.reset_offset_ms);
        checks.push_back({Ref(s, span), ToNano(limit)});
        meta.push_back({s, span, limit, b->warn_at() > 0 ? b->warn_at() : options_.warn_at});
      }
    }
  }
  // The key's rate limits: one window per key and minute.
  std::optional<LedgerRate> rate;
  const int64_t minute = FloorDiv(now, kMinuteMs);
  const int64_t next_minute_ms = (minute + 1) * kMinuteMs;
  if (!request.client_key_id().empty() && (request.rpm_limit() > 0 || request.tpm_limit() > 0)) {
    rate.emplace();
    rate->window = {absl::StrCat("rate:key:", request.client_key_id(), "|m:", minute),
                    next_minute_ms + kMinuteMs};
    rate->max_requests = std::max(0, request.rpm_limit());
    rate->max_tokens = std::max<int64_t>(0, request.tpm_limit());
    rate->tokens = std::max<int64_t>(0, request.estimated_input_tokens()) +
                   std::max<int64_t>(0, request.max_output_tokens());
  }
  v1::Reservation out;
  out.set_estimated_cost_usd(estimate_usd);
  out.set_remaining_usd(-1);
  if (checks.empty() && !rate) {
    out.set_allowed(true);
    return out;
  }
  const std::string id = NewId();
  const int64_t amount = std::max<int64_t>(0, ToNano(estimate_usd));
  absl::StatusOr<LedgerReserve> r =
      ledger_->Reserve(checks, rate ? &*rate : nullptr, id, request.request_id(), amount, now,
                       now + options_.reservation_ttl_ms);
  if (!r.ok()) {
    LogError("budget reservation failed", {{"error", SV(r.status().message())}});
    out.set_allowed(options_.fail_open);
    if (!options_.fail_open) {
      out.set_message(absl::StrCat("Budget check unavailable: ", r.status().message()));
      out.set_retry_after_seconds(1);
      out.set_code("budget_exceeded");
    }
    return out;
  }
  if (r->rate_denied != RateDenial::kNone) {
    const int64_t retry_s = std::max<int64_t>(1, (next_minute_ms - now + 999) / 1000);
    std::string limit;
    if (r->rate_denied == RateDenial::kRequests) {
      limit = absl::StrCat(rate->max_requests, " requests per minute");
    } else {
      limit = absl::StrCat(rate->max_tokens, " tokens per minute (", r->rate.tokens,
                           " used, this request needs up to ", rate->tokens, ")");
    }
    out.set_allowed(false);
    out.set_code("rate_limit_exceeded");
    out.set_message(absl::StrCat("Rate limit reached for key '", request.client_key_id(),
                                 "': ", limit, ". Please retry in ", retry_s, " s."));
    out.set_retry_after_seconds(retry_s);
    std::lock_guard<std::mutex> lock(mu_);
    ++rejections_;
    return out;
  }
  if (checks.empty()) {
    out.set_allowed(true);  // counted against the rate limits; no budget to hold
    return out;
  }
  if (r->denied >= 0) {
    const Meta& m = meta[static_cast<size_t>(r->denied)];
    const LedgerState& st = r->states[static_cast<size_t>(r->denied)];
    std::string who = m.subject.first.empty() ? absl::StrCat("team '", m.subject.second, "'")
                                              : absl::StrCat("key '", m.subject.first, "'");
    std::string spent = absl::StrCat(Money(FromNano(st.spent)), " spent");
    if (st.held > 0) {
      absl::StrAppend(&spent, " + ", Money(FromNano(st.held)), " reserved by requests in flight");
    }
    out.set_allowed(false);
    out.set_code("budget_exceeded");
    out.set_message(absl::StrCat(Capitalized(m.span.kind), " budget exceeded for ", who, ": ",
                                 spent, " of ", Money(m.limit), "; resets at ",
                                 FormatUtc(m.span.end_ms)));
    out.set_retry_after_seconds(std::max<int64_t>(1, (m.span.end_ms - now + 999) / 1000));
    out.set_remaining_usd(0);
    std::lock_guard<std::mutex> lock(mu_);
    ++rejections_;
    return out;
  }
  out.set_allowed(true);
  out.set_id(id);
  double remaining = -1;
  for (size_t i = 0; i < meta.size(); ++i) {
    const LedgerState& st = r->states[i];
    const double left = meta[i].limit - FromNano(st.spent + st.held);
    remaining = remaining < 0 ? left : std::min(remaining, left);
    const double used = FromNano(st.spent + st.held + amount);
    if (!out.warning() && used >= meta[i].warn_at * meta[i].limit) {
      out.set_warning(true);
      out.set_warning_message(absl::StrFormat(
          "%s budget of %s at %.0f%% ($%.4f of $%.4f)", Capitalized(meta[i].span.kind),
          meta[i].subject.first.empty() ? absl::StrCat("team '", meta[i].subject.second, "'")
                                        : absl::StrCat("key '", meta[i].subject.first, "'"),
          100 * used / meta[i].limit, used, meta[i].limit));
    }
  }
  out.set_remaining_usd(std::max(0.0, remaining));
  return out;
}

v1::SettleResponse Budgets::Settle(const v1::SettleRequest& request) {
  v1::SettleResponse out;
  if (request.reservation_id().empty()) {
    return out;
  }
  const int64_t now = clock_();
  const int64_t amount = request.actual_cost_usd() >= 0 ? ToNano(request.actual_cost_usd()) : -1;
  absl::StatusOr<bool> found = ledger_->Settle(
      request.reservation_id(), amount, request.cancelled(), now, now + options_.settle_ttl_ms);
  if (!found.ok()) {
    LogError("budget settle failed", {{"error", SV(found.status().message())}});
    return out;
  }
  out.set_found(*found);
  return out;
}

absl::Status Budgets::AddSpend(const std::vector<v1::UsageRecord>& records, int sign,
                               bool arrived) {
  std::map<std::string, std::pair<WindowRef, int64_t>, std::less<>> deltas;
  std::vector<std::string> arrivals;
  if (arrived) {
    arrivals.reserve(records.size());
  }
  // The records of a batch mostly share key, team and day, so their windows: those of the
  // last record that had spend are kept at hand (std::map entries stay put).
  struct Last {
    std::string_view key_id;
    std::string_view team;
    int64_t day = 0;
    std::vector<int64_t*> sums;
  };
  std::optional<Last> last;
  std::string key;
  for (const v1::UsageRecord& r : records) {
    if (arrived && !r.request_id().empty()) {
      arrivals.push_back(r.request_id());
    }
    const int64_t nano = ToNano(r.cost_usd()) * sign;
    if (nano == 0) {
      continue;
    }
    const int64_t day = DayIndex(r.timestamp_ms(), options_.reset_offset_ms);
    if (!last || last->day != day || last->key_id != r.client_key_id() || last->team != r.team()) {
      last.emplace(Last{r.client_key_id(), r.team(), day, {}});
      const std::pair<std::string_view, std::string_view> subjects[] = {{r.client_key_id(), ""},
                                                                        {"", r.team()}};
      for (const auto& [key_id, team] : subjects) {
        if (key_id.empty() && team.empty()) {
          continue;
        }
        for (WindowKind k : kKinds) {
          const WindowSpan span = SpanOf(k, r.timestamp_ms(), options_.reset_offset_ms);
          WindowKey(&key, key_id, team, span);
          auto it = deltas.find(key);
          if (it == deltas.end()) {
            it = deltas.try_emplace(key, WindowRef{key, span.end_ms + kWindowGraceMs}, 0).first;
          }
          last->sums.push_back(&it->second.second);
        }
      }
    }
    for (int64_t* sum : last->sums) {
      *sum += nano;
    }
  }
  std::vector<std::pair<WindowRef, int64_t>> list;
  list.reserve(deltas.size());
  for (auto& [k, d] : deltas) {
    list.push_back(std::move(d));
  }
  return ledger_->Apply(list, arrivals, clock_());
}

int64_t Budgets::SeedSinceMs() const {
  const int64_t now = clock_();
  return std::min(SpanOf(WindowKind::kWeekly, now, options_.reset_offset_ms).start_ms,
                  SpanOf(WindowKind::kMonthly, now, options_.reset_offset_ms).start_ms);
}

absl::Status Budgets::Seed(const std::vector<SpendRow>& rows, bool overwrite) {
  const int64_t now = clock_();
  std::map<std::string, std::pair<WindowRef, int64_t>> sums;
  WindowSpan spans[3];
  for (int i = 0; i < 3; ++i) {
    spans[i] = SpanOf(kKinds[i], now, options_.reset_offset_ms);
  }
  for (const SpendRow& row : rows) {
    for (const Subject& s : {Subject{row.client_key_id, ""}, Subject{"", row.team}}) {
      if (s.first.empty() && s.second.empty()) {
        continue;
      }
      for (const WindowSpan& span : spans) {
        const int64_t end_day = DayIndex(span.end_ms - 1, options_.reset_offset_ms);
        if (row.day < span.start_day || row.day > end_day) {
          continue;
        }
        const WindowRef ref = Ref(s, span);
        auto [it, inserted] = sums.try_emplace(ref.key, ref, 0);
        it->second.second += ToNano(row.cost_usd);
      }
    }
  }
  std::vector<std::pair<WindowRef, int64_t>> list;
  for (auto& [key, v] : sums) {
    list.push_back(std::move(v));
  }
  return ledger_->Seed(list, overwrite);
}

absl::StatusOr<v1::BudgetStatus> Budgets::StatusOf(const Subject& s, const v1::Budget* budget,
                                                   int64_t now) {
  v1::BudgetStatus out;
  if (budget != nullptr) {
    *out.mutable_budget() = *budget;
  } else {
    out.mutable_budget()->set_client_key_id(s.first);
    out.mutable_budget()->set_team(s.second);
  }
  std::vector<WindowRef> refs;
  std::vector<WindowSpan> spans;
  for (WindowKind k : kKinds) {
    spans.push_back(SpanOf(k, now, options_.reset_offset_ms));
    refs.push_back(Ref(s, spans.back()));
  }
  absl::StatusOr<std::vector<LedgerState>> states = ledger_->Read(refs, now);
  if (!states.ok()) {
    return states.status();
  }
  const double warn_at = out.budget().warn_at() > 0 ? out.budget().warn_at() : options_.warn_at;
  bool allowed = true;
  double remaining = -1;
  for (size_t i = 0; i < spans.size(); ++i) {
    v1::WindowStatus* w = out.add_windows();
    const double limit = LimitOf(out.budget(), spans[i].kind);
    const LedgerState& st = (*states)[i];
    w->set_window(WindowName(spans[i].kind));
    w->set_limit_usd(limit);
    w->set_spent_usd(FromNano(st.spent));
    w->set_held_usd(FromNano(st.held));
    w->set_start_ms(spans[i].start_ms);
    w->set_reset_ms(spans[i].end_ms);
    if (limit > 0) {
      const double used = FromNano(st.spent + st.held);
      allowed = allowed && used < limit;
      remaining = remaining < 0 ? std::max(0.0, limit - used)
                                : std::min(remaining, std::max(0.0, limit - used));
      if (FromNano(st.spent) >= warn_at * limit) {
        out.set_warning(true);
      }
    }
  }
  out.set_allowed(allowed);
  out.set_remaining_usd(remaining);
  return out;
}

absl::StatusOr<v1::BudgetStatus> Budgets::Status(const std::string& client_key_id,
                                                 const std::string& team) {
  const Subject s{client_key_id, client_key_id.empty() ? team : ""};
  std::optional<v1::Budget> budget;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (const v1::Budget* b = Find(s)) {
      budget = *b;
    }
  }
  return StatusOf(s, budget ? &*budget : nullptr, clock_());
}

std::vector<v1::BudgetStatus> Budgets::List() {
  std::vector<v1::Budget> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [s, b] : config_) {
      all.push_back(b);
    }
    for (const auto& [s, b] : runtime_) {
      if (!config_.count(s)) {
        all.push_back(b);
      }
    }
  }
  std::vector<v1::BudgetStatus> out;
  const int64_t now = clock_();
  for (const v1::Budget& b : all) {
    absl::StatusOr<v1::BudgetStatus> st = StatusOf({b.client_key_id(), b.team()}, &b, now);
    if (st.ok()) {
      out.push_back(*std::move(st));
    } else {
      v1::BudgetStatus partial;
      *partial.mutable_budget() = b;
      partial.set_allowed(true);
      partial.set_remaining_usd(-1);
      out.push_back(std::move(partial));
    }
  }
  return out;
}

}  // namespace omniroute::usage

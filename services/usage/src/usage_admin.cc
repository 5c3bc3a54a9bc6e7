#include "usage_admin.h"

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "budget.h"
#include "common/config.h"
#include "common/format.h"
#include "common/strings.h"
#include "pricing.h"

namespace omniroute::usage {
namespace {

namespace json = boost::json;

using Done = std::shared_ptr<Callback<AdminResponse>>;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

AdminResponse Json(int status, const json::value& body) {
  AdminResponse r;
  r.status = status;
  r.body = json::serialize(body);
  return r;
}

AdminResponse Error(int status, std::string_view message) {
  const char* type = status == 404   ? "not_found_error"
                     : status == 403 ? "permission_error"
                     : status == 401 ? "authentication_error"
                     : status == 409 ? "conflict_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return Json(status, json::object{{"error", json::object{{"message", message},
                                                          {"type", type},
                                                          {"param", nullptr},
                                                          {"code", nullptr}}}});
}

AdminResponse FromStatus(const absl::Status& s) {
  // An object the admin API may not change (managed by the config file) is forbidden here.
  const int status = s.code() == absl::StatusCode::kFailedPrecondition
                         ? 403
                         : HttpStatusFromStatus(s);
  return Error(status, SV(s.message()));
}

void Reply(const Done& done, AdminResponse r) { (*done)(std::move(r)); }

using Params = std::map<std::string, std::string>;

std::string Get(const Params& p, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (auto it = p.find(n); it != p.end() && !it->second.empty()) {
      return it->second;
    }
  }
  return "";
}

// Days since the epoch of a civil date.
int64_t CivilToDays(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// A time: ms since the epoch, seconds (10 digits), an ISO date or date-time (UTC), or a
// duration before now ("30m", "24h", "7d").
absl::StatusOr<int64_t> ParseTime(const std::string& v, int64_t now) {
  int64_t n = 0;
  if (absl::SimpleAtoi(v, &n)) {
    return n < 100000000000LL ? n * 1000 : n;
  }
  if (v.size() >= 2) {
    const char unit = v.back();
    int64_t amount = 0;
    if (absl::SimpleAtoi(v.substr(0, v.size() - 1), &amount) && amount >= 0) {
      const int64_t ms = unit == 'm' ? 60000 : unit == 'h' ? 3600000 : unit == 'd' ? 86400000 : 0;
      if (ms > 0) {
        return now - amount * ms;
      }
    }
  }
  int y = 0;
  unsigned mo = 0;
  unsigned d = 0;
  unsigned h = 0;
  unsigned mi = 0;
  unsigned s = 0;
  const int got = std::sscanf(v.c_str(), "%d-%u-%uT%u:%u:%u", &y, &mo, &d, &h, &mi, &s);
  if (got >= 3 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && s < 61) {
    return (CivilToDays(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000;
  }
  return absl::InvalidArgumentError(absl::StrCat("invalid time '", v, "'"));
}

json::object RecordJson(const v1::UsageRecord& r) {
  return json::object{{"request_id", r.request_id()},
                      {"timestamp_ms", r.timestamp_ms()},
                      {"time", FormatUtc(r.timestamp_ms())},
                      {"client_key_id", r.client_key_id()},
                      {"team", r.team()},
                      {"provider", r.provider()},
                      {"connection_id", r.connection_id()},
                      {"requested_model", r.requested_model()},
                      {"upstream_model", r.upstream_model()},
                      {"combo", r.combo()},
                      {"combo_step", r.combo_step()},
                      {"client_format", FormatName(r.client_format())},
                      {"upstream_format", FormatName(r.upstream_format())},
                      {"status", r.status()},
                      {"error_code", r.error_code()},
                      {"latency_ms", r.latency_ms()},
                      {"ttft_ms", r.ttft_ms()},
                      {"input_tokens", r.input_tokens()},
                      {"output_tokens", r.output_tokens()},
                      {"cached_tokens", r.cached_tokens()},
                      {"cache_creation_tokens", r.cache_creation_tokens()},
                      {"reasoning_tokens", r.reasoning_tokens()},
                      {"stream", r.stream()},
                      {"cost_usd", r.cost_usd()}};
}

json::object RowJson(const v1::StatsRow& r, bool with_bucket) {
  json::object o{{"group", r.group()},
                 {"requests", r.requests()},
                 {"errors", r.errors()},
                 {"input_tokens", r.input_tokens()},
                 {"output_tokens", r.output_tokens()},
                 {"cached_tokens", r.cached_tokens()},
                 {"cache_creation_tokens", r.cache_creation_tokens()},
                 {"reasoning_tokens", r.reasoning_tokens()},
                 {"cost_usd", r.cost_usd()},
                 {"avg_latency_ms", r.avg_latency_ms()}};
  if (with_bucket) {
    o["bucket_start_ms"] = r.bucket_start_ms();
    o["time"] = FormatUtc(r.bucket_start_ms());
  }
  return o;
}

json::object PricingJson(const v1::PricingEntry& e) {
  json::object o{
      {"provider", e.provider()},
      {"model", e.model()},
      {"input", e.input()},
      {"output", e.output()},
      {"cached_input", e.has_cached_input() ? json::value(e.cached_input()) : nullptr},
      {"cache_creation", e.has_cache_creation() ? json::value(e.cache_creation()) : nullptr},
      {"reasoning", e.has_reasoning() ? json::value(e.reasoning()) : nullptr},
      {"source", e.source()},
      {"unit", "USD per 1M tokens"}};
  if (e.updated_ms() > 0) {
    o["updated_at"] = FormatUtc(e.updated_ms());
  }
  return o;
}

// A budget with its status, in OmniRoute's shape plus windows.
json::object BudgetJson(const v1::BudgetStatus& s) {
  const v1::Budget& b = s.budget();
  json::object o;
  if (!b.client_key_id().empty()) {
    o["apiKeyId"] = b.client_key_id();
  }
  if (!b.team().empty()) {
    o["team"] = b.team();
  }
  auto limit = [](double v) { return v > 0 ? json::value(v) : json::value(nullptr); };
  o["dailyLimitUsd"] = limit(b.daily_usd());
  o["weeklyLimitUsd"] = limit(b.weekly_usd());
  o["monthlyLimitUsd"] = limit(b.monthly_usd());
  o["warningThreshold"] =
      b.warn_at() > 0 ? json::value(std::round(b.warn_at() * 100)) : json::value(nullptr);
  o["source"] = b.source().empty() ? "none" : b.source();
  json::array windows;
  int64_t next_reset = 0;
  for (const v1::WindowStatus& w : s.windows()) {
    const char* total = w.window() == "daily"    ? "totalCostToday"
                        : w.window() == "weekly" ? "totalCostWeek"
                                                 : "totalCostMonth";
    o[total] = w.spent_usd();
    if (w.limit_usd() > 0 && (next_reset == 0 || w.reset_ms() < next_reset)) {
      next_reset = w.reset_ms();
    }
    windows.push_back(json::object{{"window", w.window()},
                                   {"limitUsd", limit(w.limit_usd())},
                                   {"spentUsd", w.spent_usd()},
                                   {"reservedUsd", w.held_usd()},
                                   {"periodStartAt", FormatUtc(w.start_ms())},
                                   {"resetAt", FormatUtc(w.reset_ms())}});
    if (w.window() == "daily" && next_reset == 0) {
      next_reset = w.reset_ms();
    }
  }
  o["windows"] = std::move(windows);
  if (next_reset > 0) {
    o["nextResetAt"] = FormatUtc(next_reset);
  }
  o["budgetCheck"] =
      json::object{{"allowed", s.allowed()},
                   {"remaining", s.remaining_usd() >= 0 ? json::value(s.remaining_usd()) : nullptr},
                   {"warning", s.warning()}};
  return o;
}

// ---------------------------------------------------------------------------------------

absl::Status ApplyFilters(const Params& p, int64_t now, v1::QueryRequest* q) {
  q->set_client_key_id(Get(p, {"key_id", "keyId", "apiKeyId", "key"}));
  q->set_provider(Get(p, {"provider"}));
  q->set_model(Get(p, {"model"}));
  q->set_connection_id(Get(p, {"connection", "connection_id"}));
  q->set_team(Get(p, {"team"}));
  q->set_combo(Get(p, {"combo"}));
  q->set_request_id(Get(p, {"request_id", "requestId"}));
  if (std::string v = Get(p, {"since", "from"}); !v.empty()) {
    absl::StatusOr<int64_t> t = ParseTime(v, now);
    if (!t.ok()) return t.status();
    q->set_since_ms(*t);
  }
  if (std::string v = Get(p, {"until", "to"}); !v.empty()) {
    absl::StatusOr<int64_t> t = ParseTime(v, now);
    if (!t.ok()) return t.status();
    q->set_until_ms(*t);
  }
  if (std::string v = Get(p, {"status"}); !v.empty()) {
    int status = 0;
    if (!absl::SimpleAtoi(v, &status)) {
      return absl::InvalidArgumentError("status: expected a number");
    }
    q->set_status_min(status);
    q->set_status_max(status);
  }
  if (Get(p, {"errors"}) == "1" || Get(p, {"errors"}) == "true") {
    q->set_status_min(400);
  }
  int limit = 100;
  if (std::string v = Get(p, {"limit"}); !v.empty() && !absl::SimpleAtoi(v, &limit)) {
    return absl::InvalidArgumentError("limit: expected a number");
  }
  q->set_limit(limit);
  int offset = 0;
  if (std::string v = Get(p, {"offset"}); !v.empty() && !absl::SimpleAtoi(v, &offset)) {
    return absl::InvalidArgumentError("offset: expected a number");
  }
  q->set_offset(offset);
  return absl::OkStatus();
}

void Requests(const UsagePtr& usage, const Params& p, const Done& done) {
  v1::QueryRequest q;
  if (absl::Status s = ApplyFilters(p, NowMs(), &q); !s.ok()) {
    return Reply(done, FromStatus(s));
  }
  usage->Query(q, [done](absl::StatusOr<v1::QueryResponse> r) {
    if (!r.ok()) {
      return Reply(done, FromStatus(r.status()));
    }
    json::array data;
    for (const v1::UsageRecord& rec : r->records()) {
      data.push_back(RecordJson(rec));
    }
    Reply(done, Json(200, json::object{
                              {"data", std::move(data)},
                              {"total_requests", r->total_requests()},
                              {"total_errors", r->total_errors()},
                              {"total_input_tokens", r->total_input_tokens()},
                              {"total_output_tokens", r->total_output_tokens()},
                              {"total_cached_tokens", r->total_cached_tokens()},
                              {"total_cache_creation_tokens", r->total_cache_creation_tokens()},
                              {"total_reasoning_tokens", r->total_reasoning_tokens()},
                              {"total_cost_usd", r->total_cost_usd()},
                              {"next_offset", r->next_offset() > 0 ? json::value(r->next_offset())
                                                                   : json::value(nullptr)},
                              {"spool_depth", r->spool_depth()}}));
  });
}

void StatsRoute(const UsagePtr& usage, const Params& p, bool series, const Done& done) {
  const int64_t now = NowMs();
  v1::QueryRequest filters;
  if (absl::Status s = ApplyFilters(p, now, &filters); !s.ok()) {
    return Reply(done, FromStatus(s));
  }
  v1::StatsRequest q;
  q.set_since_ms(Get(p, {"since", "from"}).empty() ? now - 86400000 : filters.since_ms());
  q.set_until_ms(filters.until_ms());
  q.set_client_key_id(filters.client_key_id());
  q.set_provider(filters.provider());
  q.set_model(filters.model());
  q.set_connection_id(filters.connection_id());
  q.set_team(filters.team());
  q.set_group_by(Get(p, {"group_by", "groupBy"}));
  if (!series && q.group_by().empty()) {
    q.set_group_by("provider");
  }
  if (std::string v = Get(p, {"limit"}); !v.empty()) {
    int limit = 0;
    if (!absl::SimpleAtoi(v, &limit)) {
      return Reply(done, Error(400, "limit: expected a number"));
    }
    q.set_limit(limit);
  }
  if (series) {
    const std::string b = Get(p, {"bucket", "interval"});
    int64_t bucket = 3600000;
    if (b == "minute") {
      bucket = 60000;
    } else if (b == "day") {
      bucket = 86400000;
    } else if (!b.empty() && b != "hour" && (!absl::SimpleAtoi(b, &bucket) || bucket < 1000)) {
      return Reply(done, Error(400, "bucket: minute, hour, day or a number of ms >= 1000"));
    }
    if ((q.until_ms() > 0 ? q.until_ms() : now) - q.since_ms() > bucket * 100000) {
      return Reply(done, Error(400, "too many buckets: widen the bucket or narrow the range"));
    }
    q.set_bucket_ms(bucket);
  }
  usage->Stats(q, [done, q, series](absl::StatusOr<v1::StatsResponse> r) {
    if (!r.ok()) {
      return Reply(done, FromStatus(r.status()));
    }
    json::array rows;
    for (const v1::StatsRow& row : r->rows()) {
      rows.push_back(RowJson(row, series));
    }
    json::object body{
        {"since", FormatUtc(q.since_ms())},
        {"until", q.until_ms() > 0 ? json::value(FormatUtc(q.until_ms())) : json::value(nullptr)},
        {"group_by", q.group_by()},
        {"totals", RowJson(r->totals(), false)}};
    if (series) {
      body["bucket_ms"] = q.bucket_ms();
      body["series"] = std::move(rows);
    } else {
      body["groups"] = std::move(rows);
    }
    Reply(done, Json(200, body));
  });
}

void BudgetGet(const UsagePtr& usage, const Params& p, const Done& done) {
  v1::ListBudgetsRequest q;
  q.set_client_key_id(Get(p, {"apiKeyId", "keyId", "key_id"}));
  q.set_team(Get(p, {"team"}));
  const bool one = !q.client_key_id().empty() || !q.team().empty();
  usage->ListBudgets(q, [done, one](absl::StatusOr<v1::BudgetList> r) {
    if (!r.ok()) {
      return Reply(done, FromStatus(r.status()));
    }
    if (one) {
      if (r->budgets_size() == 0) {
        return Reply(done, Error(404, "no such budget"));
      }
      return Reply(done, Json(200, BudgetJson(r->budgets(0))));
    }
    json::array list;
    for (const v1::BudgetStatus& s : r->budgets()) {
      list.push_back(BudgetJson(s));
    }
    Reply(done, Json(200, json::object{{"budgets", std::move(list)}}));
  });
}

// Reads an optional USD amount; null = no limit (0).
absl::Status ReadAmount(const json::object& o, std::initializer_list<const char*> names,
                        bool* present, double* out) {
  for (const char* n : names) {
    const json::value* v = o.if_contains(n);
    if (v == nullptr) {
      continue;
    }
    *present = true;
    if (v->is_null()) {
      *out = 0;
    } else if (v->is_number()) {
      *out = v->to_number<double>();
    } else if (v->is_string()) {
      if (!absl::SimpleAtod(AV(std::string_view(v->get_string())), out)) {
        return absl::InvalidArgumentError(absl::StrCat(n, ": expected a number"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(n, ": expected a number"));
    }
    if (!(*out >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat(n, ": must not be negative"));
    }
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

std::string StringField(const json::object& o, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (const json::value* v = o.if_contains(n); v != nullptr && v->is_string()) {
      return std::string(v->get_string());
    }
  }
  return "";
}

void BudgetSet(const UsagePtr& usage, const std::string& body, const Done& done) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return Reply(done, Error(400, "Invalid JSON body: expected an object"));
  }
  const json::object& o = v.as_object();
  const std::string key = StringField(o, {"apiKeyId", "keyId", "key_id", "client_key_id"});
  const std::string team = StringField(o, {"team"});
  if (key.empty() == team.empty()) {
    return Reply(done, Error(400, "name exactly one of keyId (or apiKeyId) and team"));
  }
  // The current budget first: fields absent from the body keep their value.
  v1::ListBudgetsRequest q;
  q.set_client_key_id(key);
  q.set_team(key.empty() ? team : "");
  usage->ListBudgets(q, [usage, done, o, key, team](absl::StatusOr<v1::BudgetList> r) {
    if (!r.ok()) {
      return Reply(done, FromStatus(r.status()));
    }
    v1::Budget b;
    if (r->budgets_size() > 0 && r->budgets(0).budget().source() == "api") {
      b = r->budgets(0).budget();
    }
    b.set_client_key_id(key);
    b.set_team(key.empty() ? team : "");
    b.clear_source();
    bool present = false;
    double amount = 0;
    if (absl::Status s = ReadAmount(o, {"limit"}, &present, &amount); !s.ok()) {
      return Reply(done, FromStatus(s));
    }
    if (present) {
      const std::string period = absl::AsciiStrToLower(StringField(o, {"period"}));
      if (period == "daily" || period == "day") {
        b.set_daily_usd(amount);
      } else if (period == "weekly" || period == "week") {
        b.set_weekly_usd(amount);
      } else if (period == "monthly" || period == "month" || period.empty()) {
        b.set_monthly_usd(amount);
      } else {
        return Reply(done, Error(400, "period: daily, weekly or monthly"));
      }
    }
    struct Field {
      std::initializer_list<const char*> names;
      void (v1::Budget::*set)(double);
    };
    const Field fields[] = {
        {{"dailyLimitUsd", "daily", "daily_usd"}, &v1::Budget::set_daily_usd},
        {{"weeklyLimitUsd", "weekly", "weekly_usd"}, &v1::Budget::set_weekly_usd},
        {{"monthlyLimitUsd", "monthly", "monthly_usd"}, &v1::Budget::set_monthly_usd}};
    for (const Field& f : fields) {
      present = false;
      if (absl::Status s = ReadAmount(o, f.names, &present, &amount); !s.ok()) {
        return Reply(done, FromStatus(s));
      }
      if (present) {
        (b.*f.set)(amount);
      }
    }
    present = false;
    if (absl::Status s = ReadAmount(o, {"warningThreshold"}, &present, &amount); !s.ok()) {
      return Reply(done, FromStatus(s));
    }
    if (present) {
      if (amount > 100) {
        return Reply(done, Error(400, "warningThreshold: a percentage from 1 to 100"));
      }
      b.set_warn_at(amount / 100);
    }
    present = false;
    if (absl::Status s = ReadAmount(o, {"warn_at"}, &present, &amount); !s.ok()) {
      return Reply(done, FromStatus(s));
    }
    if (present) {
      b.set_warn_at(amount);
    }
    usage->SetBudget(b, [done, key, team](absl::StatusOr<v1::BudgetStatus> st) {
      if (!st.ok()) {
        return Reply(done, FromStatus(st.status()));
      }
      json::object body{{"success", true}, {"budget", BudgetJson(*st)}};
      if (!key.empty()) {
        body["apiKeyId"] = key;
      } else {
        body["team"] = team;
      }
      Reply(done, Json(200, body));
    });
  });
}

void BudgetDelete(const UsagePtr& usage, const Params& p, const std::string& body,
                  const Done& done) {
  v1::DeleteBudgetRequest q;
  q.set_client_key_id(Get(p, {"apiKeyId", "keyId", "key_id"}));
  q.set_team(Get(p, {"team"}));
  if (q.client_key_id().empty() && q.team().empty() && !body.empty()) {
    json::error_code ec;
    json::value v = json::parse(body, ec);
    if (!ec && v.is_object()) {
      q.set_client_key_id(StringField(v.as_object(), {"apiKeyId", "keyId", "key_id"}));
      q.set_team(StringField(v.as_object(), {"team"}));
    }
  }
  if (q.client_key_id().empty() == q.team().empty()) {
    return Reply(done, Error(400, "name exactly one of apiKeyId (or keyId) and team"));
  }
  usage->DeleteBudget(q, [done](absl::StatusOr<v1::Ack> r) {
    Reply(done, r.ok() ? Json(200, json::object{{"success", true}}) : FromStatus(r.status()));
  });
}

void Self(const UsagePtr& usage, const std::string& key, const Done& done) {
  v1::ListBudgetsRequest q;
  q.set_client_key_id(key);
  usage->ListBudgets(q, [usage, key, done](absl::StatusOr<v1::BudgetList> r) {
    if (!r.ok() || r->budgets_size() == 0) {
      return Reply(done, FromStatus(r.ok() ? absl::InternalError("no budget status") : r.status()));
    }
    const v1::BudgetStatus status = r->budgets(0);
    int64_t day_start = 0;
    int64_t month_start = 0;
    for (const v1::WindowStatus& w : status.windows()) {
      if (w.window() == "daily") day_start = w.start_ms();
      if (w.window() == "monthly") month_start = w.start_ms();
    }
    v1::StatsRequest month;
    month.set_since_ms(month_start);
    month.set_client_key_id(key);
    month.set_group_by("model");
    usage->Stats(month, [usage, key, done, status, day_start](absl::StatusOr<v1::StatsResponse> m) {
      if (!m.ok()) {
        return Reply(done, FromStatus(m.status()));
      }
      v1::StatsRequest today;
      today.set_since_ms(day_start);
      today.set_client_key_id(key);
      usage->Stats(today, [key, done, status, m = *m](absl::StatusOr<v1::StatsResponse> d) {
        if (!d.ok()) {
          return Reply(done, FromStatus(d.status()));
        }
        json::array models;
        for (const v1::StatsRow& row : m.rows()) {
          models.push_back(RowJson(row, false));
        }
        json::object budget = BudgetJson(status);
        Reply(done, Json(200, json::object{{"keyId", key},
                                           {"today", RowJson(d->totals(), false)},
                                           {"month", RowJson(m.totals(), false)},
                                           {"monthByModel", std::move(models)},
                                           {"budget", std::move(budget)}}));
      });
    });
  });
}

// Pricing entries of a body: one object, a list, or {"pricing": [...]}.
absl::StatusOr<std::vector<v1::PricingEntry>> ParsePricingBody(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    return absl::InvalidArgumentError("Invalid JSON body");
  }
  json::array items;
  if (v.is_array()) {
    items = v.as_array();
  } else if (v.is_object() && v.as_object().contains("pricing") &&
             v.as_object().at("pricing").is_array()) {
    items = v.as_object().at("pricing").as_array();
  } else if (v.is_object()) {
    items.push_back(v);
  } else {
    return absl::InvalidArgumentError("expected a pricing entry or a list of them");
  }
  std::vector<v1::PricingEntry> out;
  for (const json::value& item : items) {
    absl::StatusOr<PricingSpec> spec = ParsePricingSpec(json::serialize(item));
    if (!spec.ok()) {
      return spec.status();
    }
    out.push_back(ToEntry(*spec, "api"));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError("no pricing entry given");
  }
  return out;
}

void PricingUpsert(const UsagePtr& usage, std::vector<v1::PricingEntry> entries, size_t i,
                   std::shared_ptr<json::array> stored, const Done& done) {
  if (i == entries.size()) {
    return Reply(done, Json(200, json::object{{"success", true}, {"data", *stored}}));
  }
  const v1::PricingEntry entry = entries[i];
  usage->UpsertPricing(entry, [usage, entries = std::move(entries), i, stored,
                               done](absl::StatusOr<v1::PricingEntry> r) mutable {
    if (!r.ok()) {
      return Reply(done, FromStatus(r.status()));
    }
    stored->push_back(PricingJson(*r));
    PricingUpsert(usage, std::move(entries), i + 1, stored, done);
  });
}

// The file of a multipart/form-data body: the part named "file", else the first part.
absl::StatusOr<std::string> MultipartFile(const std::string& content_type,
                                          const std::string& body) {
  const size_t b = content_type.find("boundary=");
  if (b == std::string::npos) {
    return absl::InvalidArgumentError("multipart body without a boundary");
  }
  std::string boundary = content_type.substr(b + 9);
  if (const size_t semi = boundary.find(';'); semi != std::string::npos) {
    boundary.resize(semi);
  }
  if (boundary.size() >= 2 && boundary.front() == '"' && boundary.back() == '"') {
    boundary = boundary.substr(1, boundary.size() - 2);
  }
  const std::string delimiter = "--" + boundary;
  std::string first;
  size_t pos = body.find(delimiter);
  while (pos != std::string::npos) {
    pos += delimiter.size();
    if (body.compare(pos, 2, "--") == 0) {
      break;
    }
    const size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string::npos) {
      break;
    }
    const std::string headers = body.substr(pos, headers_end - pos);
    const size_t content = headers_end + 4;
    const size_t next = body.find("\r\n" + delimiter, content);
    if (next == std::string::npos) {
      break;
    }
    std::string part = body.substr(content, next - content);
    if (absl::StrContains(headers, "name=\"file\"")) {
      return part;
    }
    if (first.empty()) {
      first = std::move(part);
    }
    pos = next + 2;
  }
  if (!first.empty()) {
    return first;
  }
  return absl::InvalidArgumentError("multipart body without a file part");
}

}  // namespace

bool IsUsageAdminPath(const std::string& path) {
  return absl::StartsWith(path, "/api/usage/") || path == "/api/usage" || path == "/api/pricing" ||
         absl::StartsWith(path, "/api/pricing/") || absl::StartsWith(path, "/api/db-backups/");
}

void HandleUsageAdmin(UsagePtr usage, const AdminRequest& request, Callback<AdminResponse> cb) {
  auto done = std::make_shared<Callback<AdminResponse>>(std::move(cb));
  const std::string& m = request.method;
  const std::string& path = request.path;
  const Params params = ParseQueryString(request.query);
  const bool get = m == "GET" || m == "HEAD";
  auto method_not_allowed = [&] {
    Reply(done, Error(405, absl::StrCat("method ", m, " not allowed on ", path)));
  };

  if (path == "/api/usage/self") {
    if (!get) {
      return method_not_allowed();
    }
    std::string key = request.client_key_id;
    if (request.is_admin && key.empty()) {
      key = Get(params, {"keyId", "apiKeyId", "key_id"});
    }
    if (key.empty()) {
      return Reply(done, Error(400,
                               "no client key: call with your API key (or, as admin, "
                               "?keyId=)"));
    }
    return Self(usage, key, done);
  }
  if (!IsUsageAdminPath(path)) {
    return Reply(done, Error(404, absl::StrCat("Unknown admin route ", path)));
  }
  if (!request.is_admin) {
    return Reply(done, Error(403,
                             "admin credentials required (client keys may call GET "
                             "/api/usage/self)"));
  }
  if (path == "/api/usage/requests" || path == "/api/usage/logs") {
    return get ? Requests(usage, params, done) : method_not_allowed();
  }
  if (path == "/api/usage/summary" || path == "/api/usage/totals") {
    return get ? StatsRoute(usage, params, false, done) : method_not_allowed();
  }
  if (path == "/api/usage/timeseries") {
    return get ? StatsRoute(usage, params, true, done) : method_not_allowed();
  }
  if (path == "/api/usage/budget" || path == "/api/usage/budgets") {
    if (get) return BudgetGet(usage, params, done);
    if (m == "POST" || m == "PUT" || m == "PATCH") return BudgetSet(usage, request.body, done);
    if (m == "DELETE") return BudgetDelete(usage, params, request.body, done);
    return method_not_allowed();
  }
  if (path == "/api/pricing") {
    if (get) {
      return usage->ListPricing([done](absl::StatusOr<v1::PricingList> r) {
        if (!r.ok()) {
          return Reply(done, FromStatus(r.status()));
        }
        json::array data;
        for (const v1::PricingEntry& e : r->entries()) {
          data.push_back(PricingJson(e));
        }
        Reply(done,
              Json(200, json::object{{"data", std::move(data)}, {"unit", "USD per 1M tokens"}}));
      });
    }
    if (m == "POST" || m == "PUT") {
      absl::StatusOr<std::vector<v1::PricingEntry>> entries = ParsePricingBody(request.body);
      if (!entries.ok()) {
        return Reply(done, FromStatus(entries.status()));
      }
      return PricingUpsert(usage, *std::move(entries), 0, std::make_shared<json::array>(), done);
    }
    if (m == "DELETE") {
      v1::DeletePricingRequest q;
      q.set_provider(Get(params, {"provider"}));
      q.set_model(Get(params, {"model"}));
      if (q.model().empty() && !request.body.empty()) {
        json::error_code ec;
        json::value v = json::parse(request.body, ec);
        if (!ec && v.is_object()) {
          q.set_provider(StringField(v.as_object(), {"provider"}));
          q.set_model(StringField(v.as_object(), {"model"}));
        }
      }
      if (q.model().empty()) {
        return Reply(done, Error(400, "model is required (and provider, default \"*\")"));
      }
      if (q.provider().empty()) {
        q.set_provider("*");
      }
      return usage->DeletePricing(q, [done](absl::StatusOr<v1::Ack> r) {
        Reply(done, r.ok() ? Json(200, json::object{{"success", true}}) : FromStatus(r.status()));
      });
    }
    return method_not_allowed();
  }
  if (path == "/api/db-backups/export" || path == "/api/db-backups/exportAll") {
    if (!get) {
      return method_not_allowed();
    }
    return usage->ExportDatabase(
        path == "/api/db-backups/export" ? "sqlite" : "all",
        [done](absl::StatusOr<v1::DataChunk> r) {
          if (!r.ok()) {
            return Reply(done, FromStatus(r.status()));
          }
          AdminResponse out;
          out.status = 200;
          out.content_type = r->content_type();
          out.headers.emplace_back("Content-Disposition",
                                   absl::StrCat("attachment; filename=\"", r->filename(), "\""));
          out.body = std::move(*r->mutable_data());
          Reply(done, std::move(out));
        });
  }
  if (path == "/api/db-backups/import") {
    if (m != "POST" && m != "PUT") {
      return method_not_allowed();
    }
    std::string data = request.body;
    if (absl::StartsWithIgnoreCase(request.content_type, "multipart/form-data")) {
      absl::StatusOr<std::string> file = MultipartFile(request.content_type, request.body);
      if (!file.ok()) {
        return Reply(done, FromStatus(file.status()));
      }
      data = *std::move(file);
    }
    return usage->ImportDatabase(std::move(data), [done](absl::StatusOr<v1::ImportResult> r) {
      if (!r.ok()) {
        return Reply(done, FromStatus(r.status()));
      }
      json::object body{{"success", r->ok()}, {"message", r->message()}, {"records", r->records()}};
      if (!r->backup_path().empty()) {
        body["backup"] = r->backup_path();
      }
      Reply(done, Json(200, body));
    });
  }
  Reply(done, Error(404, absl::StrCat("Unknown admin route ", path)));
}

}  // namespace omniroute::usage

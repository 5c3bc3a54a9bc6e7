#pragma once

// SQL text shared by the SQLite and PostgreSQL stores (same schema, same queries; only the
// parameter markers differ: ?N or $N).

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace omniroute::usage::sql {

inline constexpr char kRecordColumns[] =
    "request_id, ts_ms, client_key_id, provider, connection_id, requested_model, "
    "upstream_model, client_format, upstream_format, status, error_code, latency_ms, ttft_ms, "
    "input_tokens, output_tokens, cached_tokens, reasoning_tokens, stream, cost_usd, team, "
    "combo, combo_step, cache_creation_tokens";
inline constexpr int kRecordColumnCount = 23;

// A team filter. The second term lets SQLite use its team index, which holds only the rows
// with a team.
inline constexpr char kTeamCondition[] = "(team = X AND team <> '')";

// The WHERE clause and its text parameters.
struct Where {
  std::string sql;
  std::vector<std::string> params;

  void Add(std::string_view condition_with_marker_at_X, const std::string& value, bool dollar,
           int repeat = 1) {
    std::string c(condition_with_marker_at_X);
    for (int i = 0; i < repeat; ++i) {
      params.push_back(value);
      const size_t x = c.find('X');
      c.replace(x, 1, absl::StrCat(dollar ? "$" : "?", params.size()));
    }
    absl::StrAppend(&sql, sql.empty() ? " WHERE " : " AND ", c);
  }
};

inline Where QueryWhere(const v1::QueryRequest& q, bool dollar) {
  Where w;
  w.Add("ts_ms >= X", std::to_string(q.since_ms()), dollar);
  if (q.until_ms() > 0) {
    w.Add("ts_ms < X", std::to_string(q.until_ms()), dollar);
  }
  if (!q.client_key_id().empty()) {
    w.Add("client_key_id = X", q.client_key_id(), dollar);
  }
  if (!q.provider().empty()) {
    w.Add("provider = X", q.provider(), dollar);
  }
  if (!q.model().empty()) {
    w.Add("(requested_model = X OR upstream_model = X)", q.model(), dollar, 2);
  }
  if (!q.connection_id().empty()) {
    w.Add("connection_id = X", q.connection_id(), dollar);
  }
  if (!q.team().empty()) {
    w.Add(kTeamCondition, q.team(), dollar);
  }
  if (!q.combo().empty()) {
    w.Add("combo = X", q.combo(), dollar);
  }
  if (!q.request_id().empty()) {
    w.Add("request_id = X", q.request_id(), dollar);
  }
  if (q.status_min() > 0) {
    w.Add("status >= X", std::to_string(q.status_min()), dollar);
  }
  if (q.status_max() > 0) {
    w.Add("status <= X", std::to_string(q.status_max()), dollar);
  }
  return w;
}

inline Where StatsWhere(const v1::StatsRequest& q, bool dollar) {
  Where w;
  w.Add("ts_ms >= X", std::to_string(q.since_ms()), dollar);
  if (q.until_ms() > 0) {
    w.Add("ts_ms < X", std::to_string(q.until_ms()), dollar);
  }
  if (!q.client_key_id().empty()) {
    w.Add("client_key_id = X", q.client_key_id(), dollar);
  }
  if (!q.provider().empty()) {
    w.Add("provider = X", q.provider(), dollar);
  }
  if (!q.model().empty()) {
    w.Add("(requested_model = X OR upstream_model = X)", q.model(), dollar, 2);
  }
  if (!q.connection_id().empty()) {
    w.Add("connection_id = X", q.connection_id(), dollar);
  }
  if (!q.team().empty()) {
    w.Add(kTeamCondition, q.team(), dollar);
  }
  return w;
}

// The SQL expression of a group_by name; empty string for an unknown name.
inline std::string GroupExpr(const std::string& group_by) {
  if (group_by.empty()) return "''";
  if (group_by == "provider") return "COALESCE(provider, '')";
  if (group_by == "model") {
    return "COALESCE(NULLIF(upstream_model, ''), requested_model, '')";
  }
  if (group_by == "key") return "COALESCE(client_key_id, '')";
  if (group_by == "connection") return "COALESCE(connection_id, '')";
  if (group_by == "team") return "COALESCE(team, '')";
  if (group_by == "combo") return "COALESCE(combo, '')";
  if (group_by == "status") return "CAST(status AS TEXT)";
  return "";
}

// SELECT list of the aggregate columns (after group and bucket).
inline constexpr char kAggregates[] =
    "COUNT(*), COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
    "COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(cache_creation_tokens), 0), "
    "COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0), "
    "COALESCE(AVG(latency_ms), 0)";

// The stats query: group, bucket, aggregates; `limit` rows.
inline std::string StatsSql(const v1::StatsRequest& q, const std::string& group, const Where& where,
                            int limit) {
  const std::string bucket =
      q.bucket_ms() > 0 ? absl::StrCat("(ts_ms / ", q.bucket_ms(), ") * ", q.bucket_ms()) : "0";
  return absl::StrCat("SELECT ", group, " AS g, ", bucket, " AS b, ", kAggregates,
                      " FROM usage_records", where.sql, " GROUP BY 1, 2 ORDER BY 2, 10 DESC, 1",
                      " LIMIT ", limit);
}

inline constexpr char kTotalsAggregates[] =
    "COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
    "COALESCE(SUM(cost_usd), 0), COALESCE(SUM(cached_tokens), 0), "
    "COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), "
    "COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0)";

}  // namespace omniroute::usage::sql

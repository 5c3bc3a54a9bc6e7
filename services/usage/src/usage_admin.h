#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/callback.h"
#include "usage.h"

namespace omniroute::usage {

// One admin HTTP request, already authenticated by the edge.
struct AdminRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query, e.g. "/api/usage/budget"
  std::string query;   // without '?', e.g. "apiKeyId=k&limit=10"
  std::string body;
  std::string content_type;   // for /api/db-backups/import (multipart/form-data or raw)
  std::string client_key_id;  // the caller's client key (self-service)
  bool is_admin = false;      // admin credentials; otherwise only GET /api/usage/self
};

struct AdminResponse {
  int status = 200;
  std::string body;  // JSON, or the file of an export
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Content-Disposition
};

// Whether `path` is one of the routes HandleUsageAdmin serves (the edge routes these to
// it): /api/usage/..., /api/pricing, /api/db-backups/....
bool IsUsageAdminPath(const std::string& path);

// The usage, budget, pricing and database-backup admin API as JSON in and out:
//   GET    /api/usage/requests     request log: filters key_id|keyId, provider, model,
//                                   connection, team, combo, request_id, status, errors=1,
//                                   since, until (ms, ISO date/time or 24h/7d ago); limit,
//                                   offset
//   GET    /api/usage/summary      totals and groups: group_by=provider|model|key|
//                                   connection|team|combo|status, since, until, filters
//   GET    /api/usage/timeseries   the same per bucket=minute|hour|day|<ms>
//   GET    /api/usage/self         the caller's own usage and budget (client keys allowed)
//   GET    /api/usage/budget       every budget, or ?apiKeyId=|keyId=|team= one
//   POST   /api/usage/budget       {"keyId","limit","period"} (user guide) or {"apiKeyId"|
//   PUT                             "team", "dailyLimitUsd","weeklyLimitUsd",
//                                   "monthlyLimitUsd","warningThreshold" (percent)}
//   DELETE /api/usage/budget       ?apiKeyId=|team=
//   GET    /api/pricing            the pricing table
//   PUT    /api/pricing            upsert one entry, a list, or {"pricing": [...]}
//   POST
//   DELETE /api/pricing            ?provider=&model=
//   GET    /api/db-backups/export     the SQLite database
//   GET    /api/db-backups/exportAll  tar.gz: database, pricing.json, budgets.json
//   POST   /api/db-backups/import     an SQLite file (raw or multipart field "file")
// 404 for other paths, 405 for other methods, 403 for a non-admin outside /self.
void HandleUsageAdmin(UsagePtr usage, const AdminRequest& request, Callback<AdminResponse> done);

}  // namespace omniroute::usage

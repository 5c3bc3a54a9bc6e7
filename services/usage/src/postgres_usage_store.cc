#include <charconv>
#include <cmath>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "common/format.h"
#include "common/strings.h"
#include "sql_util.h"
#include "usage_store.h"

namespace omniroute::usage {
namespace postgres_store_impl {
namespace {

// Versioned schema; migration N is kMigrations[N - 1]. Same tables as the SQLite store.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE usage_records (
  request_id TEXT PRIMARY KEY,
  ts_ms BIGINT NOT NULL,
  client_key_id TEXT,
  provider TEXT,
  connection_id TEXT,
  requested_model TEXT,
  upstream_model TEXT,
  client_format TEXT,
  upstream_format TEXT,
  status INTEGER,
  error_code TEXT,
  latency_ms BIGINT,
  ttft_ms BIGINT,
  input_tokens BIGINT,
  output_tokens BIGINT,
  cached_tokens BIGINT,
  reasoning_tokens BIGINT,
  stream BOOLEAN,
  cost_usd DOUBLE PRECISION
);
CREATE INDEX usage_records_ts ON usage_records (ts_ms);
CREATE INDEX usage_records_key_ts ON usage_records (client_key_id, ts_ms);
)sql",
    R"sql(
ALTER TABLE usage_records ADD COLUMN team TEXT;
ALTER TABLE usage_records ADD COLUMN combo TEXT;
ALTER TABLE usage_records ADD COLUMN combo_step INTEGER;
ALTER TABLE usage_records ADD COLUMN cache_creation_tokens BIGINT;
CREATE INDEX usage_records_team_ts ON usage_records (team, ts_ms);
CREATE TABLE pricing (
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  input DOUBLE PRECISION NOT NULL,
  output DOUBLE PRECISION NOT NULL,
  cached_input DOUBLE PRECISION,
  cache_creation DOUBLE PRECISION,
  reasoning DOUBLE PRECISION,
  updated_ms BIGINT NOT NULL,
  PRIMARY KEY (provider, model)
);
CREATE TABLE budgets (
  client_key_id TEXT NOT NULL,
  team TEXT NOT NULL,
  daily_usd DOUBLE PRECISION NOT NULL,
  weekly_usd DOUBLE PRECISION NOT NULL,
  monthly_usd DOUBLE PRECISION NOT NULL,
  warn_at DOUBLE PRECISION NOT NULL,
  updated_ms BIGINT NOT NULL,
  PRIMARY KEY (client_key_id, team)
);
)sql",
};

// Serializes migrations of concurrent replicas (pg_advisory_xact_lock key).
constexpr int64_t kMigrationLock = 0x6f6d6e6975736167;  // "omniusag"

constexpr const char* kColumns = sql::kRecordColumns;
constexpr int kColumnCount = sql::kRecordColumnCount;

// Rows per INSERT statement (PostgreSQL allows 65535 parameters).
constexpr size_t kRowsPerInsert = 500;

std::string DoubleText(double v) {
  if (!std::isfinite(v)) {
    return "0";
  }
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "0";
}

void AppendParams(const v1::UsageRecord& r, std::vector<std::string>& params) {
  params.push_back(r.request_id());
  params.push_back(std::to_string(r.timestamp_ms()));
  params.push_back(r.client_key_id());
  params.push_back(r.provider());
  params.push_back(r.connection_id());
  params.push_back(r.requested_model());
  params.push_back(r.upstream_model());
  params.emplace_back(FormatName(r.client_format()));
  params.emplace_back(FormatName(r.upstream_format()));
  params.push_back(std::to_string(r.status()));
  params.push_back(r.error_code());
  params.push_back(std::to_string(r.latency_ms()));
  params.push_back(std::to_string(r.ttft_ms()));
  params.push_back(std::to_string(r.input_tokens()));
  params.push_back(std::to_string(r.output_tokens()));
  params.push_back(std::to_string(r.cached_tokens()));
  params.push_back(std::to_string(r.reasoning_tokens()));
  params.emplace_back(r.stream() ? "true" : "false");
  params.push_back(DoubleText(r.cost_usd()));
  params.push_back(r.team());
  params.push_back(r.combo());
  params.push_back(std::to_string(r.combo_step()));
  params.push_back(std::to_string(r.cache_creation_tokens()));
}

// INSERT of `rows` rows with numbered parameters.
std::string InsertSql(size_t rows) {
  std::string sql = absl::StrCat("INSERT INTO usage_records (", kColumns, ") VALUES ");
  int n = 1;
  for (size_t i = 0; i < rows; ++i) {
    sql += i == 0 ? "(" : ",(";
    for (int c = 0; c < kColumnCount; ++c) {
      absl::StrAppend(&sql, c == 0 ? "$" : ",$", n++);
    }
    sql += ")";
  }
  sql += " ON CONFLICT (request_id) DO NOTHING RETURNING request_id";
  return sql;
}

std::string Text(const pqxx::field& f) { return f.is_null() ? std::string() : f.c_str(); }

Format FormatFromField(const pqxx::field& f) {
  Format out = common::v1::FORMAT_UNSPECIFIED;
  if (!f.is_null()) {
    ParseFormat(f.c_str(), &out);
  }
  return out;
}

void ReadRecord(const pqxx::row& row, v1::UsageRecord* r) {
  r->set_request_id(Text(row[0]));
  r->set_timestamp_ms(row[1].as<int64_t>(0));
  r->set_client_key_id(Text(row[2]));
  r->set_provider(Text(row[3]));
  r->set_connection_id(Text(row[4]));
  r->set_requested_model(Text(row[5]));
  r->set_upstream_model(Text(row[6]));
  r->set_client_format(FormatFromField(row[7]));
  r->set_upstream_format(FormatFromField(row[8]));
  r->set_status(row[9].as<int>(0));
  r->set_error_code(Text(row[10]));
  r->set_latency_ms(row[11].as<int64_t>(0));
  r->set_ttft_ms(row[12].as<int64_t>(0));
  r->set_input_tokens(row[13].as<int64_t>(0));
  r->set_output_tokens(row[14].as<int64_t>(0));
  r->set_cached_tokens(row[15].as<int64_t>(0));
  r->set_reasoning_tokens(row[16].as<int64_t>(0));
  r->set_stream(row[17].as<bool>(false));
  r->set_cost_usd(row[18].as<double>(0.0));
  r->set_team(Text(row[19]));
  r->set_combo(Text(row[20]));
  r->set_combo_step(row[21].as<int>(0));
  r->set_cache_creation_tokens(row[22].as<int64_t>(0));
}

// Whether an SQL error means the connection is unusable (class 08: connection exception;
// 57P01..57P03: the server is shutting down or not accepting connections).
bool IsConnectionState(const std::string& sqlstate) {
  return sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" ||
         sqlstate == "57P03";
}

class PostgresUsageStore final : public UsageStore {
 public:
  explicit PostgresUsageStore(std::string url) : url_(std::move(url)) {}

  // Opens the connection now, so that a bad URL or an unreachable server is reported early.
  absl::Status Connect() {
    return Guard("connect", [](pqxx::connection&) {});
  }

  // Interface
  absl::Status Migrate() override {
    return Guard("migrate", [](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
      tx.exec0(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
      const int current =
          tx.exec1("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0].as<int>();
      const int total = static_cast<int>(std::size(kMigrations));
      for (int v = current + 1; v <= total; ++v) {
        tx.exec0(kMigrations[v - 1]);
        tx.exec_params0("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                        v);
      }
      tx.commit();
    });
  }

  absl::Status Write(const std::vector<v1::UsageRecord>& records,
                     std::vector<bool>* inserted) override {
    if (inserted != nullptr) {
      inserted->assign(records.size(), false);
    }
    if (records.empty()) {
      return absl::OkStatus();
    }
    std::set<std::string> new_ids;
    absl::Status status = Guard("write", [&](pqxx::connection& c) {
      new_ids.clear();
      pqxx::work tx(c);
      std::vector<std::string> params;
      for (size_t start = 0; start < records.size(); start += kRowsPerInsert) {
        const size_t rows = std::min(kRowsPerInsert, records.size() - start);
        params.clear();
        params.reserve(rows * kColumnCount);
        for (size_t i = start; i < start + rows; ++i) {
          AppendParams(records[i], params);
        }
        const pqxx::result r =
            tx.exec_params(InsertSql(rows), pqxx::prepare::make_dynamic_params(params));
        for (const pqxx::row& row : r) {
          new_ids.insert(Text(row[0]));
        }
      }
      tx.commit();
    });
    if (status.ok() && inserted != nullptr) {
      for (size_t i = 0; i < records.size(); ++i) {
        // A request id twice in one batch is new only the first time.
        (*inserted)[i] = new_ids.erase(records[i].request_id()) > 0;
      }
    }
    return status;
  }

  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) override {
    const int limit = request.limit() <= 0 ? 100 : std::min(request.limit(), 1000);
    const int offset = std::max(0, request.offset());
    const sql::Where where = sql::QueryWhere(request, /*dollar=*/true);
    v1::QueryResponse out;
    absl::Status status = Guard("query", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      const std::string rows_sql =
          absl::StrCat("SELECT ", kColumns, " FROM usage_records", where.sql,
                       " ORDER BY ts_ms DESC, request_id DESC LIMIT ", limit + 1, " OFFSET ",
                       offset);
      const std::string totals_sql =
          absl::StrCat("SELECT ", sql::kTotalsAggregates, " FROM usage_records", where.sql);
      const pqxx::result rows =
          tx.exec_params(rows_sql, pqxx::prepare::make_dynamic_params(where.params));
      const pqxx::row totals =
          tx.exec_params1(totals_sql, pqxx::prepare::make_dynamic_params(where.params));
      out.Clear();
      int n = 0;
      for (const pqxx::row& row : rows) {
        if (++n > limit) {
          out.set_next_offset(offset + limit);
          break;
        }
        ReadRecord(row, out.add_records());
      }
      out.set_total_requests(totals[0].as<int64_t>(0));
      out.set_total_input_tokens(totals[1].as<int64_t>(0));
      out.set_total_output_tokens(totals[2].as<int64_t>(0));
      out.set_total_cost_usd(totals[3].as<double>(0.0));
      out.set_total_cached_tokens(totals[4].as<int64_t>(0));
      out.set_total_cache_creation_tokens(totals[5].as<int64_t>(0));
      out.set_total_reasoning_tokens(totals[6].as<int64_t>(0));
      out.set_total_errors(totals[7].as<int64_t>(0));
    });
    if (!status.ok()) {
      return status;
    }
    return out;
  }

  absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& request) override {
    const std::string group = sql::GroupExpr(request.group_by());
    if (group.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("group_by: unknown dimension '", request.group_by(), "'"));
    }
    const int limit = request.limit() > 0 ? std::min(request.limit(), 100000)
                      : request.bucket_ms() > 0 ? 10000
                                                : 100;
    const sql::Where where = sql::StatsWhere(request, /*dollar=*/true);
    v1::StatsResponse out;
    absl::Status status = Guard("stats", [&](pqxx::connection& c) {
      out.Clear();
      pqxx::read_transaction tx(c);
      v1::StatsRequest totals = request;
      totals.set_bucket_ms(0);
      for (int pass = 0; pass < 2; ++pass) {
        const pqxx::result rows = tx.exec_params(
            pass == 0 ? sql::StatsSql(request, group, where, limit)
                      : sql::StatsSql(totals, "''", where, 1),
            pqxx::prepare::make_dynamic_params(where.params));
        for (const pqxx::row& r : rows) {
          v1::StatsRow* row = pass == 0 ? out.add_rows() : out.mutable_totals();
          row->set_group(Text(r[0]));
          row->set_bucket_start_ms(r[1].as<int64_t>(0));
          row->set_requests(r[2].as<int64_t>(0));
          row->set_errors(r[3].as<int64_t>(0));
          row->set_input_tokens(r[4].as<int64_t>(0));
          row->set_output_tokens(r[5].as<int64_t>(0));
          row->set_cached_tokens(r[6].as<int64_t>(0));
          row->set_cache_creation_tokens(r[7].as<int64_t>(0));
          row->set_reasoning_tokens(r[8].as<int64_t>(0));
          row->set_cost_usd(r[9].as<double>(0.0));
          row->set_avg_latency_ms(r[10].as<double>(0.0));
        }
      }
    });
    if (!status.ok()) {
      return status;
    }
    return out;
  }

  absl::StatusOr<std::vector<SpendRow>> SpendByDay(int64_t since_ms,
                                                   int64_t day_offset_ms) override {
    std::vector<SpendRow> out;
    absl::Status status = Guard("spend", [&](pqxx::connection& c) {
      out.clear();
      pqxx::read_transaction tx(c);
      const pqxx::result rows = tx.exec_params(
          "SELECT COALESCE(client_key_id, ''), COALESCE(team, ''), "
          "FLOOR((ts_ms - $2::bigint) / 86400000.0)::bigint, COALESCE(SUM(cost_usd), 0) "
          "FROM usage_records WHERE ts_ms >= $1::bigint GROUP BY 1, 2, 3",
          since_ms, day_offset_ms);
      for (const pqxx::row& r : rows) {
        out.push_back({Text(r[0]), Text(r[1]), r[2].as<int64_t>(0), r[3].as<double>(0.0)});
      }
    });
    if (!status.ok()) {
      return status;
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::PricingEntry>> LoadPricing() override {
    std::vector<v1::PricingEntry> out;
    absl::Status status = Guard("load pricing", [&](pqxx::connection& c) {
      out.clear();
      pqxx::read_transaction tx(c);
      const pqxx::result rows = tx.exec(
          "SELECT provider, model, input, output, cached_input, cache_creation, reasoning, "
          "updated_ms FROM pricing ORDER BY provider, model");
      for (const pqxx::row& r : rows) {
        v1::PricingEntry e;
        e.set_provider(Text(r[0]));
        e.set_model(Text(r[1]));
        e.set_input(r[2].as<double>(0.0));
        e.set_output(r[3].as<double>(0.0));
        if (!r[4].is_null()) e.set_cached_input(r[4].as<double>());
        if (!r[5].is_null()) e.set_cache_creation(r[5].as<double>());
        if (!r[6].is_null()) e.set_reasoning(r[6].as<double>());
        e.set_updated_ms(r[7].as<int64_t>(0));
        e.set_source("api");
        out.push_back(std::move(e));
      }
    });
    if (!status.ok()) {
      return status;
    }
    return out;
  }

  absl::Status SavePricing(const v1::PricingEntry& e) override {
    // "" = NULL (the optional price inherits).
    auto opt = [](bool has, double v) { return has ? DoubleText(v) : std::string(); };
    return Guard("save pricing", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params0(
          "INSERT INTO pricing (provider, model, input, output, cached_input, cache_creation, "
          "reasoning, updated_ms) VALUES ($1, $2, $3::double precision, $4::double precision, "
          "NULLIF($5, '')::double precision, NULLIF($6, '')::double precision, "
          "NULLIF($7, '')::double precision, $8::bigint) "
          "ON CONFLICT (provider, model) DO UPDATE SET input = EXCLUDED.input, "
          "output = EXCLUDED.output, cached_input = EXCLUDED.cached_input, "
          "cache_creation = EXCLUDED.cache_creation, reasoning = EXCLUDED.reasoning, "
          "updated_ms = EXCLUDED.updated_ms",
          e.provider(), e.model(), DoubleText(e.input()), DoubleText(e.output()),
          opt(e.has_cached_input(), e.cached_input()),
          opt(e.has_cache_creation(), e.cache_creation()), opt(e.has_reasoning(), e.reasoning()),
          e.updated_ms());
      tx.commit();
    });
  }

  absl::Status DeletePricing(const std::string& provider, const std::string& model) override {
    return Guard("delete pricing", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params0("DELETE FROM pricing WHERE provider = $1 AND model = $2", provider, model);
      tx.commit();
    });
  }

  absl::StatusOr<std::vector<v1::Budget>> LoadBudgets() override {
    std::vector<v1::Budget> out;
    absl::Status status = Guard("load budgets", [&](pqxx::connection& c) {
      out.clear();
      pqxx::read_transaction tx(c);
      const pqxx::result rows = tx.exec(
          "SELECT client_key_id, team, daily_usd, weekly_usd, monthly_usd, warn_at FROM budgets "
          "ORDER BY client_key_id, team");
      for (const pqxx::row& r : rows) {
        v1::Budget b;
        b.set_client_key_id(Text(r[0]));
        b.set_team(Text(r[1]));
        b.set_daily_usd(r[2].as<double>(0.0));
        b.set_weekly_usd(r[3].as<double>(0.0));
        b.set_monthly_usd(r[4].as<double>(0.0));
        b.set_warn_at(r[5].as<double>(0.0));
        b.set_source("api");
        out.push_back(std::move(b));
      }
    });
    if (!status.ok()) {
      return status;
    }
    return out;
  }

  absl::Status SaveBudget(const v1::Budget& b) override {
    return Guard("save budget", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params0(
          "INSERT INTO budgets (client_key_id, team, daily_usd, weekly_usd, monthly_usd, "
          "warn_at, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, "
          "(EXTRACT(EPOCH FROM now()) * 1000)::bigint) "
          "ON CONFLICT (client_key_id, team) DO UPDATE SET daily_usd = EXCLUDED.daily_usd, "
          "weekly_usd = EXCLUDED.weekly_usd, monthly_usd = EXCLUDED.monthly_usd, "
          "warn_at = EXCLUDED.warn_at, updated_ms = EXCLUDED.updated_ms",
          b.client_key_id(), b.team(), DoubleText(b.daily_usd()), DoubleText(b.weekly_usd()),
          DoubleText(b.monthly_usd()), DoubleText(b.warn_at()));
      tx.commit();
    });
  }

  absl::Status DeleteBudget(const std::string& client_key_id, const std::string& team) override {
    return Guard("delete budget", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params0("DELETE FROM budgets WHERE client_key_id = $1 AND team = $2",
                      client_key_id, team);
      tx.commit();
    });
  }

  std::string kind() const override { return "postgres"; }

 private:
  // Runs `body` on the connection (opening it when needed) and turns libpqxx's exceptions
  // into statuses. A broken connection is dropped; the next call reconnects.
  absl::Status Guard(absl::string_view what, absl::FunctionRef<void(pqxx::connection&)> body) {
    try {
      if (conn_ == nullptr || !conn_->is_open()) {
        conn_.reset();
        conn_ = std::make_unique<pqxx::connection>(url_);
      }
      body(*conn_);
      return absl::OkStatus();
    } catch (const pqxx::broken_connection& e) {
      conn_.reset();
      return absl::UnavailableError(absl::StrCat("postgres ", what, ": ", Trim(e.what())));
    } catch (const pqxx::sql_error& e) {
      if (IsConnectionState(e.sqlstate())) {
        conn_.reset();
        return absl::UnavailableError(absl::StrCat("postgres ", what, ": ", Trim(e.what())));
      }
      return absl::InternalError(
          absl::StrCat("postgres ", what, ": ", Trim(e.what()), " [", e.sqlstate(), "]"));
    } catch (const pqxx::in_doubt_error& e) {
      conn_.reset();
      return absl::UnavailableError(
          absl::StrCat("postgres ", what, ": commit state unknown: ", Trim(e.what())));
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("postgres ", what, ": ", Trim(e.what())));
    }
  }

  static absl::string_view Trim(absl::string_view s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
      s.remove_suffix(1);
    }
    return s;
  }

  const std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace
}  // namespace postgres_store_impl

absl::StatusOr<UsageStorePtr> MakePostgresUsageStore(const std::string& url) {
  auto store = std::make_unique<postgres_store_impl::PostgresUsageStore>(url);
  if (absl::Status s = store->Connect(); !s.ok()) {
    return s;
  }
  return UsageStorePtr(std::move(store));
}

}  // namespace omniroute::usage

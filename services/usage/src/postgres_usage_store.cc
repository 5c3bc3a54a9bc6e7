#include <charconv>
#include <cmath>
#include <exception>
#include <iterator>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "common/format.h"
#include "common/strings.h"
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
};

// Serializes migrations of concurrent replicas (pg_advisory_xact_lock key).
constexpr int64_t kMigrationLock = 0x6f6d6e6975736167;  // "omniusag"

constexpr char kColumns[] =
    "request_id, ts_ms, client_key_id, provider, connection_id, requested_model, "
    "upstream_model, client_format, upstream_format, status, error_code, latency_ms, ttft_ms, "
    "input_tokens, output_tokens, cached_tokens, reasoning_tokens, stream, cost_usd";
constexpr int kColumnCount = 19;

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
  sql += " ON CONFLICT (request_id) DO NOTHING";
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

  absl::Status Write(const std::vector<v1::UsageRecord>& records) override {
    if (records.empty()) {
      return absl::OkStatus();
    }
    return Guard("write", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      std::vector<std::string> params;
      for (size_t start = 0; start < records.size(); start += kRowsPerInsert) {
        const size_t rows = std::min(kRowsPerInsert, records.size() - start);
        params.clear();
        params.reserve(rows * kColumnCount);
        for (size_t i = start; i < start + rows; ++i) {
          AppendParams(records[i], params);
        }
        tx.exec_params0(InsertSql(rows), pqxx::prepare::make_dynamic_params(params));
      }
      tx.commit();
    });
  }

  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) override {
    const int limit = request.limit() <= 0 ? 100 : std::min(request.limit(), 1000);
    const bool by_key = !request.client_key_id().empty();
    const std::string where =
        absl::StrCat(" WHERE ts_ms >= $1", by_key ? " AND client_key_id = $2" : "");
    v1::QueryResponse out;
    absl::Status status = Guard("query", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      const std::string rows_sql =
          absl::StrCat("SELECT ", kColumns, " FROM usage_records", where,
                       " ORDER BY ts_ms DESC, request_id DESC LIMIT ", limit);
      const std::string totals_sql = absl::StrCat(
          "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
          "COALESCE(SUM(cost_usd), 0) FROM usage_records",
          where);
      const int64_t since = request.since_ms();
      const pqxx::result rows = by_key ? tx.exec_params(rows_sql, since, request.client_key_id())
                                       : tx.exec_params(rows_sql, since);
      const pqxx::row totals = by_key ? tx.exec_params1(totals_sql, since, request.client_key_id())
                                      : tx.exec_params1(totals_sql, since);
      out.Clear();
      for (const pqxx::row& row : rows) {
        v1::UsageRecord* r = out.add_records();
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
      }
      out.set_total_requests(totals[0].as<int64_t>(0));
      out.set_total_input_tokens(totals[1].as<int64_t>(0));
      out.set_total_output_tokens(totals[2].as<int64_t>(0));
      out.set_total_cost_usd(totals[3].as<double>(0.0));
    });
    if (!status.ok()) {
      return status;
    }
    return out;
  }

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

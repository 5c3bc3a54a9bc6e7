#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "common/format.h"
#include "common/strings.h"
#include "usage_store.h"

namespace omniroute::usage {
namespace {

constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE usage_records (
  request_id TEXT PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  client_key_id TEXT,
  provider TEXT,
  connection_id TEXT,
  requested_model TEXT,
  upstream_model TEXT,
  client_format TEXT,
  upstream_format TEXT,
  status INTEGER,
  error_code TEXT,
  latency_ms INTEGER,
  ttft_ms INTEGER,
  input_tokens INTEGER,
  output_tokens INTEGER,
  cached_tokens INTEGER,
  reasoning_tokens INTEGER,
  stream INTEGER,
  cost_usd REAL
);
CREATE INDEX usage_records_ts ON usage_records (ts_ms);
CREATE INDEX usage_records_key_ts ON usage_records (client_key_id, ts_ms);
)sql",
};

Format FormatFromName(const char* name) {
  Format f = common::v1::FORMAT_UNSPECIFIED;
  if (name) ParseFormat(name, &f);
  return f;
}

class SqliteUsageStore final : public UsageStore {
 public:
  explicit SqliteUsageStore(sqlite3* db) : db_(db) {}
  ~SqliteUsageStore() override {
    sqlite3_finalize(insert_);
    sqlite3_close(db_);
  }

  // Interface
  absl::Status Migrate() override {
    if (auto s = Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                      "PRAGMA busy_timeout=5000;");
        !s.ok()) {
      return s;
    }
    if (auto s = Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
                      "KEY, applied_at INTEGER NOT NULL)");
        !s.ok()) {
      return s;
    }
    int current = 0;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "SELECT COALESCE(MAX(version),0) FROM schema_migrations", -1, &st,
                       nullptr);
    if (st && sqlite3_step(st) == SQLITE_ROW) current = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    const int total = static_cast<int>(std::size(kMigrations));
    for (int v = current + 1; v <= total; ++v) {
      const std::string sql = absl::StrCat(
          "BEGIN;", kMigrations[v - 1], "INSERT INTO schema_migrations VALUES (", v,
          ", strftime('%s','now')); COMMIT;");
      if (auto s = Exec(sql.c_str()); !s.ok()) {
        Exec("ROLLBACK");
        return absl::InternalError(absl::StrCat("migration ", v, ": ", s.message()));
      }
    }
    if (sqlite3_prepare_v2(db_,
                           "INSERT OR IGNORE INTO usage_records VALUES "
                           "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &insert_, nullptr) != SQLITE_OK) {
      return Error("prepare insert");
    }
    return absl::OkStatus();
  }

  absl::Status Write(const std::vector<v1::UsageRecord>& records) override {
    if (auto s = Exec("BEGIN"); !s.ok()) return s;
    for (const auto& r : records) {
      sqlite3_reset(insert_);
      int i = 1;
      auto text = [&](const std::string& v) {
        sqlite3_bind_text(insert_, i++, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
      };
      auto integer = [&](int64_t v) { sqlite3_bind_int64(insert_, i++, v); };
      text(r.request_id());
      integer(r.timestamp_ms());
      text(r.client_key_id());
      text(r.provider());
      text(r.connection_id());
      text(r.requested_model());
      text(r.upstream_model());
      const std::string cf(FormatName(r.client_format()));
      const std::string uf(FormatName(r.upstream_format()));
      text(cf);
      text(uf);
      integer(r.status());
      text(r.error_code());
      integer(r.latency_ms());
      integer(r.ttft_ms());
      integer(r.input_tokens());
      integer(r.output_tokens());
      integer(r.cached_tokens());
      integer(r.reasoning_tokens());
      integer(r.stream() ? 1 : 0);
      sqlite3_bind_double(insert_, i++, r.cost_usd());
      if (sqlite3_step(insert_) != SQLITE_DONE) {
        absl::Status s = Error("insert");
        sqlite3_reset(insert_);
        Exec("ROLLBACK");
        return s;
      }
    }
    sqlite3_reset(insert_);
    return Exec("COMMIT");
  }

  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) override {
    const int limit = request.limit() <= 0 ? 100 : std::min(request.limit(), 1000);
    const bool by_key = !request.client_key_id().empty();
    const std::string where =
        absl::StrCat(" WHERE ts_ms >= ?1", by_key ? " AND client_key_id = ?2" : "");
    v1::QueryResponse out;
    sqlite3_stmt* st = nullptr;
    const std::string rows_sql = absl::StrCat(
        "SELECT request_id, ts_ms, client_key_id, provider, connection_id, requested_model, "
        "upstream_model, client_format, upstream_format, status, error_code, latency_ms, "
        "ttft_ms, input_tokens, output_tokens, cached_tokens, reasoning_tokens, stream, cost_usd "
        "FROM usage_records",
        where, " ORDER BY ts_ms DESC, rowid DESC LIMIT ", limit);
    if (sqlite3_prepare_v2(db_, rows_sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return Error("prepare query");
    }
    Bind(st, request);
    while (sqlite3_step(st) == SQLITE_ROW) {
      auto* r = out.add_records();
      auto text = [&](int c) {
        const unsigned char* p = sqlite3_column_text(st, c);
        return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
      };
      r->set_request_id(text(0));
      r->set_timestamp_ms(sqlite3_column_int64(st, 1));
      r->set_client_key_id(text(2));
      r->set_provider(text(3));
      r->set_connection_id(text(4));
      r->set_requested_model(text(5));
      r->set_upstream_model(text(6));
      r->set_client_format(FormatFromName(reinterpret_cast<const char*>(sqlite3_column_text(st, 7))));
      r->set_upstream_format(FormatFromName(reinterpret_cast<const char*>(sqlite3_column_text(st, 8))));
      r->set_status(sqlite3_column_int(st, 9));
      r->set_error_code(text(10));
      r->set_latency_ms(sqlite3_column_int64(st, 11));
      r->set_ttft_ms(sqlite3_column_int64(st, 12));
      r->set_input_tokens(sqlite3_column_int64(st, 13));
      r->set_output_tokens(sqlite3_column_int64(st, 14));
      r->set_cached_tokens(sqlite3_column_int64(st, 15));
      r->set_reasoning_tokens(sqlite3_column_int64(st, 16));
      r->set_stream(sqlite3_column_int(st, 17) != 0);
      r->set_cost_usd(sqlite3_column_double(st, 18));
    }
    sqlite3_finalize(st);
    const std::string totals_sql = absl::StrCat(
        "SELECT COUNT(*), COALESCE(SUM(input_tokens),0), COALESCE(SUM(output_tokens),0), "
        "COALESCE(SUM(cost_usd),0) FROM usage_records",
        where);
    if (sqlite3_prepare_v2(db_, totals_sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return Error("prepare totals");
    }
    Bind(st, request);
    if (sqlite3_step(st) == SQLITE_ROW) {
      out.set_total_requests(sqlite3_column_int64(st, 0));
      out.set_total_input_tokens(sqlite3_column_int64(st, 1));
      out.set_total_output_tokens(sqlite3_column_int64(st, 2));
      out.set_total_cost_usd(sqlite3_column_double(st, 3));
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  static void Bind(sqlite3_stmt* st, const v1::QueryRequest& request) {
    sqlite3_bind_int64(st, 1, request.since_ms());
    if (!request.client_key_id().empty()) {
      sqlite3_bind_text(st, 2, request.client_key_id().data(),
                        static_cast<int>(request.client_key_id().size()), SQLITE_TRANSIENT);
    }
  }

  absl::Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      absl::Status s = absl::InternalError(absl::StrCat("sqlite: ", err ? err : "error"));
      sqlite3_free(err);
      return s;
    }
    return absl::OkStatus();
  }

  absl::Status Error(std::string_view what) {
    return absl::InternalError(absl::StrCat("sqlite ", AV(what), ": ", sqlite3_errmsg(db_)));
  }

  sqlite3* db_;
  sqlite3_stmt* insert_ = nullptr;
};

}  // namespace

absl::StatusOr<UsageStorePtr> MakeSqliteUsageStore(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string err = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::FailedPreconditionError(absl::StrCat("sqlite ", path, ": ", err));
  }
  return UsageStorePtr(new SqliteUsageStore(db));
}

}  // namespace omniroute::usage

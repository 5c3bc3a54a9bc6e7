#include <sqlite3.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/format.h"
#include "common/strings.h"
#include "sql_util.h"
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
    R"sql(
ALTER TABLE usage_records ADD COLUMN team TEXT;
ALTER TABLE usage_records ADD COLUMN combo TEXT;
ALTER TABLE usage_records ADD COLUMN combo_step INTEGER;
ALTER TABLE usage_records ADD COLUMN cache_creation_tokens INTEGER;
CREATE INDEX usage_records_team_ts ON usage_records (team, ts_ms);
CREATE TABLE pricing (
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  input REAL NOT NULL,
  output REAL NOT NULL,
  cached_input REAL,
  cache_creation REAL,
  reasoning REAL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (provider, model)
);
CREATE TABLE budgets (
  client_key_id TEXT NOT NULL,
  team TEXT NOT NULL,
  daily_usd REAL NOT NULL,
  weekly_usd REAL NOT NULL,
  monthly_usd REAL NOT NULL,
  warn_at REAL NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (client_key_id, team)
);
)sql",
    // Most records have no team: they stay out of the team index (one b-tree less to update
    // per insert). The queries' team filter names `team <> ''` so that the index applies.
    R"sql(
DROP INDEX usage_records_team_ts;
CREATE INDEX usage_records_team_ts ON usage_records (team, ts_ms) WHERE team <> '';
)sql",
};

constexpr const char* kRequiredTables[] = {"usage_records", "schema_migrations", "pricing",
                                           "budgets"};

Format FormatFromName(const unsigned char* name) {
  Format f = common::v1::FORMAT_UNSPECIFIED;
  if (name) ParseFormat(reinterpret_cast<const char*>(name), &f);
  return f;
}

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st_, nullptr) != SQLITE_OK) {
      sqlite3_finalize(st_);
      st_ = nullptr;
    }
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  sqlite3_stmt* get() const { return st_; }
  explicit operator bool() const { return st_ != nullptr; }

  void BindAll(const std::vector<std::string>& params) {
    for (size_t i = 0; i < params.size(); ++i) {
      sqlite3_bind_text(st_, static_cast<int>(i + 1), params[i].data(),
                        static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
    }
  }
  std::string Text(int c) const {
    const unsigned char* p = sqlite3_column_text(st_, c);
    return p ? std::string(reinterpret_cast<const char*>(p)) : std::string();
  }
  int64_t Int(int c) const { return sqlite3_column_int64(st_, c); }
  double Double(int c) const { return sqlite3_column_double(st_, c); }
  bool IsNull(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }

 private:
  sqlite3_stmt* st_ = nullptr;
};

class SqliteUsageStore final : public UsageStore {
 public:
  explicit SqliteUsageStore(sqlite3* db) : db_(db) {}
  ~SqliteUsageStore() override {
    FinalizeStatements();
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
    {
      Stmt st(db_, "SELECT COALESCE(MAX(version),0) FROM schema_migrations");
      if (st && sqlite3_step(st.get()) == SQLITE_ROW) current = sqlite3_column_int(st.get(), 0);
    }
    const int total = static_cast<int>(std::size(kMigrations));
    for (int v = current + 1; v <= total; ++v) {
      const std::string sql = absl::StrCat(
          "BEGIN;", kMigrations[v - 1], "INSERT INTO schema_migrations VALUES (", v,
          ", strftime('%s','now')); COMMIT;");
      if (auto s = Exec(sql.c_str()); !s.ok()) {
        (void)Exec("ROLLBACK");
        return absl::InternalError(absl::StrCat("migration ", v, ": ", s.message()));
      }
    }
    FinalizeStatements();
    std::string marks;
    for (int i = 0; i < sql::kRecordColumnCount; ++i) {
      absl::StrAppend(&marks, i == 0 ? "?" : ",?");
    }
    const std::string insert = absl::StrCat("INSERT OR IGNORE INTO usage_records (",
                                            sql::kRecordColumns, ") VALUES (", marks, ")");
    // Write's statements, prepared once: parsing them again for every batch costs more than
    // running them.
    const struct {
      sqlite3_stmt** st;
      const char* sql;
      const char* what;
    } statements[] = {{&insert_, insert.c_str(), "prepare insert"},
                      {&begin_, "BEGIN", "prepare begin"},
                      {&commit_, "COMMIT", "prepare commit"},
                      {&rollback_, "ROLLBACK", "prepare rollback"}};
    for (const auto& [st, sql, what] : statements) {
      if (sqlite3_prepare_v2(db_, sql, -1, st, nullptr) != SQLITE_OK) {
        absl::Status s = Error(what);
        FinalizeStatements();
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Write(const std::vector<v1::UsageRecord>& records,
                     std::vector<bool>* inserted) override {
    if (inserted != nullptr) {
      inserted->assign(records.size(), false);
    }
    if (insert_ == nullptr) {
      return absl::InternalError("sqlite: insert not prepared");
    }
    if (auto s = Step(begin_, "begin"); !s.ok()) return s;
    for (size_t n = 0; n < records.size(); ++n) {
      const v1::UsageRecord& r = records[n];
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
      for (const std::string_view format :
           {FormatName(r.client_format()), FormatName(r.upstream_format())}) {
        sqlite3_bind_text(insert_, i++, format.data(), static_cast<int>(format.size()),
                          SQLITE_STATIC);
      }
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
      text(r.team());
      text(r.combo());
      integer(r.combo_step());
      integer(r.cache_creation_tokens());
      if (sqlite3_step(insert_) != SQLITE_DONE) {
        absl::Status s = Error("insert");
        sqlite3_reset(insert_);
        (void)Step(rollback_, "rollback");
        if (inserted != nullptr) {
          inserted->assign(records.size(), false);
        }
        return s;
      }
      if (inserted != nullptr) {
        (*inserted)[n] = sqlite3_changes(db_) > 0;
      }
    }
    sqlite3_reset(insert_);
    absl::Status s = Step(commit_, "commit");
    if (!s.ok()) {
      (void)Step(rollback_, "rollback");
      if (inserted != nullptr) {
        inserted->assign(records.size(), false);
      }
    }
    return s;
  }

  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) override {
    const int limit = request.limit() <= 0 ? 100 : std::min(request.limit(), 1000);
    const int offset = std::max(0, request.offset());
    const sql::Where where = sql::QueryWhere(request, /*dollar=*/false);
    v1::QueryResponse out;
    {
      Stmt st(db_, absl::StrCat("SELECT ", sql::kRecordColumns, " FROM usage_records", where.sql,
                                " ORDER BY ts_ms DESC, rowid DESC LIMIT ", limit + 1,
                                " OFFSET ", offset));
      if (!st) return Error("prepare query");
      st.BindAll(where.params);
      int rows = 0;
      while (sqlite3_step(st.get()) == SQLITE_ROW) {
        if (++rows > limit) {
          out.set_next_offset(offset + limit);
          break;
        }
        ReadRecord(st, out.add_records());
      }
    }
    Stmt st(db_, absl::StrCat("SELECT ", sql::kTotalsAggregates, " FROM usage_records",
                              where.sql));
    if (!st) return Error("prepare totals");
    st.BindAll(where.params);
    if (sqlite3_step(st.get()) == SQLITE_ROW) {
      out.set_total_requests(st.Int(0));
      out.set_total_input_tokens(st.Int(1));
      out.set_total_output_tokens(st.Int(2));
      out.set_total_cost_usd(st.Double(3));
      out.set_total_cached_tokens(st.Int(4));
      out.set_total_cache_creation_tokens(st.Int(5));
      out.set_total_reasoning_tokens(st.Int(6));
      out.set_total_errors(st.Int(7));
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
    const sql::Where where = sql::StatsWhere(request, /*dollar=*/false);
    v1::StatsResponse out;
    for (int pass = 0; pass < 2; ++pass) {
      v1::StatsRequest totals = request;
      totals.set_bucket_ms(0);
      Stmt st(db_, pass == 0 ? sql::StatsSql(request, group, where, limit)
                             : sql::StatsSql(totals, "''", where, 1));
      if (!st) return Error("prepare stats");
      st.BindAll(where.params);
      while (sqlite3_step(st.get()) == SQLITE_ROW) {
        v1::StatsRow* row = pass == 0 ? out.add_rows() : out.mutable_totals();
        row->set_group(st.Text(0));
        row->set_bucket_start_ms(st.Int(1));
        row->set_requests(st.Int(2));
        row->set_errors(st.Int(3));
        row->set_input_tokens(st.Int(4));
        row->set_output_tokens(st.Int(5));
        row->set_cached_tokens(st.Int(6));
        row->set_cache_creation_tokens(st.Int(7));
        row->set_reasoning_tokens(st.Int(8));
        row->set_cost_usd(st.Double(9));
        row->set_avg_latency_ms(st.Double(10));
      }
    }
    return out;
  }

  absl::StatusOr<std::vector<SpendRow>> SpendByDay(int64_t since_ms,
                                                   int64_t day_offset_ms) override {
    Stmt st(db_,
            "SELECT COALESCE(client_key_id, ''), COALESCE(team, ''), (ts_ms - ?2) / 86400000, "
            "COALESCE(SUM(cost_usd), 0) FROM usage_records WHERE ts_ms >= ?1 "
            "GROUP BY 1, 2, 3");
    if (!st) return Error("prepare spend");
    sqlite3_bind_int64(st.get(), 1, since_ms);
    sqlite3_bind_int64(st.get(), 2, day_offset_ms);
    std::vector<SpendRow> out;
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      out.push_back({st.Text(0), st.Text(1), st.Int(2), st.Double(3)});
    }
    return out;
  }

  absl::StatusOr<std::vector<v1::PricingEntry>> LoadPricing() override {
    Stmt st(db_,
            "SELECT provider, model, input, output, cached_input, cache_creation, reasoning, "
            "updated_ms FROM pricing ORDER BY provider, model");
    if (!st) return Error("prepare pricing");
    std::vector<v1::PricingEntry> out;
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      v1::PricingEntry e;
      e.set_provider(st.Text(0));
      e.set_model(st.Text(1));
      e.set_input(st.Double(2));
      e.set_output(st.Double(3));
      if (!st.IsNull(4)) e.set_cached_input(st.Double(4));
      if (!st.IsNull(5)) e.set_cache_creation(st.Double(5));
      if (!st.IsNull(6)) e.set_reasoning(st.Double(6));
      e.set_updated_ms(st.Int(7));
      e.set_source("api");
      out.push_back(std::move(e));
    }
    return out;
  }

  absl::Status SavePricing(const v1::PricingEntry& e) override {
    Stmt st(db_,
            "INSERT OR REPLACE INTO pricing (provider, model, input, output, cached_input, "
            "cache_creation, reasoning, updated_ms) VALUES (?,?,?,?,?,?,?,?)");
    if (!st) return Error("prepare save pricing");
    sqlite3_bind_text(st.get(), 1, e.provider().c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st.get(), 2, e.model().c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st.get(), 3, e.input());
    sqlite3_bind_double(st.get(), 4, e.output());
    auto opt = [&](int i, bool has, double v) {
      if (has) {
        sqlite3_bind_double(st.get(), i, v);
      } else {
        sqlite3_bind_null(st.get(), i);
      }
    };
    opt(5, e.has_cached_input(), e.cached_input());
    opt(6, e.has_cache_creation(), e.cache_creation());
    opt(7, e.has_reasoning(), e.reasoning());
    sqlite3_bind_int64(st.get(), 8, e.updated_ms());
    return sqlite3_step(st.get()) == SQLITE_DONE ? absl::OkStatus() : Error("save pricing");
  }

  absl::Status DeletePricing(const std::string& provider, const std::string& model) override {
    Stmt st(db_, "DELETE FROM pricing WHERE provider = ?1 AND model = ?2");
    if (!st) return Error("prepare delete pricing");
    st.BindAll({provider, model});
    return sqlite3_step(st.get()) == SQLITE_DONE ? absl::OkStatus() : Error("delete pricing");
  }

  absl::StatusOr<std::vector<v1::Budget>> LoadBudgets() override {
    Stmt st(db_,
            "SELECT client_key_id, team, daily_usd, weekly_usd, monthly_usd, warn_at FROM "
            "budgets ORDER BY client_key_id, team");
    if (!st) return Error("prepare budgets");
    std::vector<v1::Budget> out;
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      v1::Budget b;
      b.set_client_key_id(st.Text(0));
      b.set_team(st.Text(1));
      b.set_daily_usd(st.Double(2));
      b.set_weekly_usd(st.Double(3));
      b.set_monthly_usd(st.Double(4));
      b.set_warn_at(st.Double(5));
      b.set_source("api");
      out.push_back(std::move(b));
    }
    return out;
  }

  absl::Status SaveBudget(const v1::Budget& b) override {
    Stmt st(db_,
            "INSERT OR REPLACE INTO budgets (client_key_id, team, daily_usd, weekly_usd, "
            "monthly_usd, warn_at, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
            "CAST(strftime('%s','now') AS INTEGER) * 1000)");
    if (!st) return Error("prepare save budget");
    st.BindAll({b.client_key_id(), b.team()});
    sqlite3_bind_double(st.get(), 3, b.daily_usd());
    sqlite3_bind_double(st.get(), 4, b.weekly_usd());
    sqlite3_bind_double(st.get(), 5, b.monthly_usd());
    sqlite3_bind_double(st.get(), 6, b.warn_at());
    return sqlite3_step(st.get()) == SQLITE_DONE ? absl::OkStatus() : Error("save budget");
  }

  absl::Status DeleteBudget(const std::string& client_key_id, const std::string& team) override {
    Stmt st(db_, "DELETE FROM budgets WHERE client_key_id = ?1 AND team = ?2");
    if (!st) return Error("prepare delete budget");
    st.BindAll({client_key_id, team});
    return sqlite3_step(st.get()) == SQLITE_DONE ? absl::OkStatus() : Error("delete budget");
  }

  std::string kind() const override { return "sqlite"; }

  absl::Status Backup(const std::string& path) override {
    Stmt st(db_, "VACUUM INTO ?1");
    if (!st) return Error("prepare backup");
    st.BindAll({path});
    return sqlite3_step(st.get()) == SQLITE_DONE ? absl::OkStatus() : Error("backup");
  }

  absl::Status Restore(const std::string& path) override {
    sqlite3* src = nullptr;
    if (sqlite3_open_v2(path.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      const std::string err = src ? sqlite3_errmsg(src) : "out of memory";
      sqlite3_close(src);
      return absl::InvalidArgumentError(absl::StrCat("sqlite open ", path, ": ", err));
    }
    FinalizeStatements();
    sqlite3_backup* b = sqlite3_backup_init(db_, "main", src, "main");
    if (b == nullptr) {
      sqlite3_close(src);
      return Error("restore");
    }
    const int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    sqlite3_close(src);
    if (rc != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat("sqlite restore: ", sqlite3_errstr(rc)));
    }
    return Migrate();
  }

 private:
  static void ReadRecord(const Stmt& st, v1::UsageRecord* r) {
    r->set_request_id(st.Text(0));
    r->set_timestamp_ms(st.Int(1));
    r->set_client_key_id(st.Text(2));
    r->set_provider(st.Text(3));
    r->set_connection_id(st.Text(4));
    r->set_requested_model(st.Text(5));
    r->set_upstream_model(st.Text(6));
    r->set_client_format(FormatFromName(sqlite3_column_text(st.get(), 7)));
    r->set_upstream_format(FormatFromName(sqlite3_column_text(st.get(), 8)));
    r->set_status(static_cast<int32_t>(st.Int(9)));
    r->set_error_code(st.Text(10));
    r->set_latency_ms(st.Int(11));
    r->set_ttft_ms(st.Int(12));
    r->set_input_tokens(st.Int(13));
    r->set_output_tokens(st.Int(14));
    r->set_cached_tokens(st.Int(15));
    r->set_reasoning_tokens(st.Int(16));
    r->set_stream(st.Int(17) != 0);
    r->set_cost_usd(st.Double(18));
    r->set_team(st.Text(19));
    r->set_combo(st.Text(20));
    r->set_combo_step(static_cast<int32_t>(st.Int(21)));
    r->set_cache_creation_tokens(st.Int(22));
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

  // Runs a prepared statement without results (BEGIN, COMMIT, ...) and resets it.
  absl::Status Step(sqlite3_stmt* st, std::string_view what) {
    const int rc = sqlite3_step(st);
    absl::Status s = rc == SQLITE_DONE ? absl::OkStatus() : Error(what);
    sqlite3_reset(st);
    return s;
  }

  void FinalizeStatements() {
    for (sqlite3_stmt** st : {&insert_, &begin_, &commit_, &rollback_}) {
      sqlite3_finalize(*st);
      *st = nullptr;
    }
  }

  sqlite3* db_;
  // Write's statements (Migrate prepares them).
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* rollback_ = nullptr;
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

absl::StatusOr<int64_t> CheckSqliteDatabase(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string err = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::InvalidArgumentError(absl::StrCat("not an SQLite database: ", err));
  }
  struct Closer {
    sqlite3* db;
    ~Closer() { sqlite3_close(db); }
  } closer{db};
  {
    Stmt st(db, "PRAGMA integrity_check");
    if (!st || sqlite3_step(st.get()) != SQLITE_ROW) {
      return absl::InvalidArgumentError(
          absl::StrCat("not an SQLite database: ", sqlite3_errmsg(db)));
    }
    if (st.Text(0) != "ok") {
      return absl::InvalidArgumentError(
          absl::StrCat("integrity check failed: ", st.Text(0)));
    }
  }
  std::vector<std::string> missing;
  for (const char* table : kRequiredTables) {
    Stmt st(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1");
    if (st) {
      st.BindAll({table});
    }
    if (!st || sqlite3_step(st.get()) != SQLITE_ROW) {
      missing.push_back(table);
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (const std::string& t : missing) {
      absl::StrAppend(&list, list.empty() ? "" : ", ", t);
    }
    return absl::InvalidArgumentError(absl::StrCat("missing required tables: ", list));
  }
  Stmt st(db, "SELECT COUNT(*) FROM usage_records");
  if (!st || sqlite3_step(st.get()) != SQLITE_ROW) {
    return absl::InvalidArgumentError("cannot read usage_records");
  }
  return st.Int(0);
}

}  // namespace omniroute::usage

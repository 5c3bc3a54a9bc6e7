#include "accounts_store.h"

#include <sqlite3.h>

#include <chrono>
#include <map>
#include <mutex>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace omniroute::accounts {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The same schema in both databases ($N markers are rewritten to ?N for SQLite).
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE accounts_objects (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  doc TEXT NOT NULL,
  secret TEXT NOT NULL DEFAULT '',
  updated_ms BIGINT NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE TABLE accounts_meta (
  name TEXT PRIMARY KEY,
  value BIGINT NOT NULL
);
INSERT INTO accounts_meta (name, value) VALUES ('version', 0);
)sql",
};

constexpr char kUpsert[] =
    "INSERT INTO accounts_objects (kind, id, doc, secret, updated_ms) VALUES ($1, $2, $3, $4, "
    "$5) ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, secret = excluded.secret, "
    "updated_ms = excluded.updated_ms";
constexpr char kBump[] = "UPDATE accounts_meta SET value = value + 1 WHERE name = 'version'";
constexpr char kSelectKind[] =
    "SELECT kind, id, doc, secret, updated_ms FROM accounts_objects WHERE kind = $1 ORDER BY id";
constexpr char kSelectOne[] =
    "SELECT kind, id, doc, secret, updated_ms FROM accounts_objects WHERE kind = $1 AND id = $2";
constexpr char kDelete[] = "DELETE FROM accounts_objects WHERE kind = $1 AND id = $2";
constexpr char kVersion[] = "SELECT value FROM accounts_meta WHERE name = 'version'";

std::string ForSqlite(std::string_view sql) {
  std::string out(sql);
  for (char& c : out) {
    if (c == '$') c = '?';
  }
  return out;
}

// ---- SQLite ----

class SqliteStmt {
 public:
  SqliteStmt(sqlite3* db, std::string_view sql) {
    const std::string text = ForSqlite(sql);
    if (sqlite3_prepare_v2(db, text.c_str(), -1, &st_, nullptr) != SQLITE_OK) {
      sqlite3_finalize(st_);
      st_ = nullptr;
    }
  }
  ~SqliteStmt() { sqlite3_finalize(st_); }
  SqliteStmt(const SqliteStmt&) = delete;
  SqliteStmt& operator=(const SqliteStmt&) = delete;
  explicit operator bool() const { return st_ != nullptr; }
  sqlite3_stmt* get() const { return st_; }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }
  std::string Text(int c) const {
    const unsigned char* p = sqlite3_column_text(st_, c);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(st_, c)))
             : std::string();
  }

 private:
  sqlite3_stmt* st_ = nullptr;
};

class SqliteAccountsStore final : public AccountsStore {
 public:
  explicit SqliteAccountsStore(sqlite3* db) : db_(db) {}
  ~SqliteAccountsStore() override { sqlite3_close(db_); }

  absl::Status Migrate() override {
    if (auto s = Exec("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;"); !s.ok()) return s;
    if (auto s = Exec("CREATE TABLE IF NOT EXISTS accounts_schema_migrations (version INTEGER "
                      "PRIMARY KEY, applied_at INTEGER NOT NULL)");
        !s.ok()) {
      return s;
    }
    int current = 0;
    {
      SqliteStmt st(db_, "SELECT COALESCE(MAX(version),0) FROM accounts_schema_migrations");
      if (st && sqlite3_step(st.get()) == SQLITE_ROW) current = sqlite3_column_int(st.get(), 0);
    }
    const int total = static_cast<int>(std::size(kMigrations));
    for (int v = current + 1; v <= total; ++v) {
      const std::string sql =
          absl::StrCat("BEGIN;", kMigrations[v - 1],
                       "INSERT INTO accounts_schema_migrations VALUES (", v,
                       ", strftime('%s','now')); COMMIT;");
      if (auto s = Exec(sql.c_str()); !s.ok()) {
        (void)Exec("ROLLBACK");
        return absl::InternalError(absl::StrCat("accounts migration ", v, ": ", s.message()));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<StoredObject>> List(const std::string& kind) override {
    SqliteStmt st(db_, kSelectKind);
    if (!st) return Error("prepare list");
    st.Bind(1, kind);
    std::vector<StoredObject> out;
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) out.push_back(Read(st));
    if (rc != SQLITE_DONE) return Error("list");
    return out;
  }

  absl::StatusOr<std::optional<StoredObject>> Get(const std::string& kind,
                                                  const std::string& id) override {
    SqliteStmt st(db_, kSelectOne);
    if (!st) return Error("prepare get");
    st.Bind(1, kind);
    st.Bind(2, id);
    const int rc = sqlite3_step(st.get());
    if (rc == SQLITE_ROW) return std::optional<StoredObject>(Read(st));
    if (rc != SQLITE_DONE) return Error("get");
    return std::optional<StoredObject>();
  }

  absl::Status Put(const StoredObject& o) override {
    if (auto s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    SqliteStmt st(db_, kUpsert);
    if (!st) return Rollback("prepare put");
    st.Bind(1, o.kind);
    st.Bind(2, o.id);
    st.Bind(3, o.doc);
    st.Bind(4, o.secret);
    st.Bind(5, o.updated_ms > 0 ? o.updated_ms : NowMs());
    if (sqlite3_step(st.get()) != SQLITE_DONE) return Rollback("put");
    if (auto s = Exec(kBump); !s.ok()) return Rollback("bump version");
    return Exec("COMMIT");
  }

  absl::StatusOr<bool> Delete(const std::string& kind, const std::string& id) override {
    if (auto s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    SqliteStmt st(db_, kDelete);
    if (!st) return Rollback("prepare delete");
    st.Bind(1, kind);
    st.Bind(2, id);
    if (sqlite3_step(st.get()) != SQLITE_DONE) return Rollback("delete");
    const bool existed = sqlite3_changes(db_) > 0;
    if (existed) {
      if (auto s = Exec(kBump); !s.ok()) return Rollback("bump version");
    }
    if (auto s = Exec("COMMIT"); !s.ok()) return s;
    return existed;
  }

  absl::StatusOr<int64_t> Version() override {
    SqliteStmt st(db_, kVersion);
    if (!st || sqlite3_step(st.get()) != SQLITE_ROW) return Error("version");
    return static_cast<int64_t>(sqlite3_column_int64(st.get(), 0));
  }

  std::string kind() const override { return "sqlite"; }

 private:
  static StoredObject Read(const SqliteStmt& st) {
    StoredObject o;
    o.kind = st.Text(0);
    o.id = st.Text(1);
    o.doc = st.Text(2);
    o.secret = st.Text(3);
    o.updated_ms = sqlite3_column_int64(st.get(), 4);
    return o;
  }

  absl::Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string message = err ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      return absl::InternalError(absl::StrCat("sqlite: ", message));
    }
    return absl::OkStatus();
  }

  absl::Status Error(std::string_view what) {
    return absl::InternalError(absl::StrCat("sqlite ", AV(what), ": ", sqlite3_errmsg(db_)));
  }

  absl::Status Rollback(std::string_view what) {
    absl::Status s = Error(what);
    (void)Exec("ROLLBACK");
    return s;
  }

  sqlite3* db_;
};

// ---- PostgreSQL ----

constexpr int64_t kMigrationLock = 0x6f6d6e6961636374;  // "omniacct"

bool IsConnectionState(const std::string& sqlstate) {
  return sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" ||
         sqlstate == "57P03";
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  return s;
}

// Runs `body` on `conn` (opened on demand), mapping libpqxx exceptions to statuses.
absl::Status PgGuard(const std::string& url, std::unique_ptr<pqxx::connection>& conn,
                     std::string_view what, const std::function<void(pqxx::connection&)>& body) {
  try {
    if (conn == nullptr || !conn->is_open()) {
      conn.reset();
      conn = std::make_unique<pqxx::connection>(url);
    }
    body(*conn);
    return absl::OkStatus();
  } catch (const pqxx::broken_connection& e) {
    conn.reset();
    return absl::UnavailableError(absl::StrCat("postgres ", AV(what), ": ", AV(Trim(e.what()))));
  } catch (const pqxx::sql_error& e) {
    if (IsConnectionState(e.sqlstate())) {
      conn.reset();
      return absl::UnavailableError(absl::StrCat("postgres ", AV(what), ": ", AV(Trim(e.what()))));
    }
    return absl::InternalError(
        absl::StrCat("postgres ", AV(what), ": ", AV(Trim(e.what())), " [", e.sqlstate(), "]"));
  } catch (const std::exception& e) {
    conn.reset();
    return absl::InternalError(absl::StrCat("postgres ", AV(what), ": ", AV(Trim(e.what()))));
  }
}

StoredObject ReadRow(const pqxx::row& row) {
  StoredObject o;
  o.kind = row[0].c_str();
  o.id = row[1].c_str();
  o.doc = row[2].c_str();
  o.secret = row[3].c_str();
  o.updated_ms = row[4].as<int64_t>(0);
  return o;
}

class PostgresAccountsStore final : public AccountsStore {
 public:
  explicit PostgresAccountsStore(std::string url) : url_(std::move(url)) {}

  absl::Status Migrate() override {
    return Guard("migrate", [](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
      tx.exec0(
          "CREATE TABLE IF NOT EXISTS accounts_schema_migrations ("
          "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
      const int current =
          tx.exec1("SELECT COALESCE(MAX(version), 0) FROM accounts_schema_migrations")[0]
              .as<int>();
      const int total = static_cast<int>(std::size(kMigrations));
      for (int v = current + 1; v <= total; ++v) {
        tx.exec0(kMigrations[v - 1]);
        tx.exec_params0("INSERT INTO accounts_schema_migrations (version) VALUES ($1)", v);
      }
      tx.commit();
    });
  }

  absl::StatusOr<std::vector<StoredObject>> List(const std::string& kind) override {
    std::vector<StoredObject> out;
    absl::Status s = Guard("list", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      for (const pqxx::row& row : tx.exec_params(kSelectKind, kind)) out.push_back(ReadRow(row));
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::optional<StoredObject>> Get(const std::string& kind,
                                                  const std::string& id) override {
    std::optional<StoredObject> out;
    absl::Status s = Guard("get", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      const pqxx::result r = tx.exec_params(kSelectOne, kind, id);
      if (!r.empty()) out = ReadRow(r[0]);
    });
    if (!s.ok()) return s;
    return out;
  }

  absl::Status Put(const StoredObject& o) override {
    return Guard("put", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec_params0(kUpsert, o.kind, o.id, o.doc, o.secret,
                      o.updated_ms > 0 ? o.updated_ms : NowMs());
      tx.exec0(kBump);
      tx.commit();
    });
  }

  absl::StatusOr<bool> Delete(const std::string& kind, const std::string& id) override {
    bool existed = false;
    absl::Status s = Guard("delete", [&](pqxx::connection& c) {
      pqxx::work tx(c);
      existed = tx.exec_params0(kDelete, kind, id).affected_rows() > 0;
      if (existed) tx.exec0(kBump);
      tx.commit();
    });
    if (!s.ok()) return s;
    return existed;
  }

  absl::StatusOr<int64_t> Version() override {
    int64_t v = 0;
    absl::Status s = Guard("version", [&](pqxx::connection& c) {
      pqxx::read_transaction tx(c);
      v = tx.exec1(kVersion)[0].as<int64_t>();
    });
    if (!s.ok()) return s;
    return v;
  }

  std::string kind() const override { return "postgres"; }

 private:
  absl::Status Guard(std::string_view what, const std::function<void(pqxx::connection&)>& body) {
    return PgGuard(url_, conn_, what, body);
  }

  const std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
};

// ---- Locks ----

class ProcessLock final : public NamedLock {
 public:
  absl::Status With(const std::string& name, const std::function<absl::Status()>& fn) override {
    std::shared_ptr<std::mutex> m;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& slot = locks_[name];
      if (!slot) slot = std::make_shared<std::mutex>();
      m = slot;
    }
    std::lock_guard<std::mutex> held(*m);
    return fn();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> locks_;
};

// A session advisory lock on a connection of its own, so that `fn` may use the store.
class PostgresLock final : public NamedLock {
 public:
  explicit PostgresLock(std::string url) : url_(std::move(url)) {}

  absl::Status With(const std::string& name, const std::function<absl::Status()>& fn) override {
    // Same-process callers queue here first: one lock connection per name at a time.
    return local_.With(name, [&]() -> absl::Status {
      std::unique_ptr<pqxx::connection> conn;
      absl::Status result;
      absl::Status s = PgGuard(url_, conn, "lock", [&](pqxx::connection& c) {
        pqxx::nontransaction tx(c);
        tx.exec_params("SELECT pg_advisory_lock(hashtextextended($1, 0))", name);
        result = fn();
        tx.exec_params("SELECT pg_advisory_unlock(hashtextextended($1, 0))", name);
      });
      return s.ok() ? result : s;
    });
  }

 private:
  const std::string url_;
  ProcessLock local_;
};

}  // namespace

absl::StatusOr<AccountsStorePtr> MakeSqliteAccountsStore(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", message));
  }
  sqlite3_busy_timeout(db, 5000);
  auto store = std::make_unique<SqliteAccountsStore>(db);
  if (auto s = store->Migrate(); !s.ok()) return s;
  return AccountsStorePtr(std::move(store));
}

absl::StatusOr<AccountsStorePtr> MakePostgresAccountsStore(const std::string& url) {
  auto store = std::make_unique<PostgresAccountsStore>(url);
  if (auto s = store->Migrate(); !s.ok()) return s;
  return AccountsStorePtr(std::move(store));
}

std::unique_ptr<NamedLock> MakeProcessLock() { return std::make_unique<ProcessLock>(); }

std::unique_ptr<NamedLock> MakePostgresLock(const std::string& url) {
  return std::make_unique<PostgresLock>(url);
}

}  // namespace omniroute::accounts

#include "common/config_reload.h"

#include <sys/stat.h>

#include <chrono>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute {
namespace {

// "combos 2->3, api_keys 1->2" for the kinds of objects whose count changed.
std::string CountChanges(const Config& a, const Config& b) {
  std::vector<std::string> out;
  auto note = [&](const char* what, size_t before, size_t after) {
    if (before != after) out.push_back(absl::StrCat(what, " ", before, "->", after));
  };
  note("combos", a.combos.size(), b.combos.size());
  note("aliases", a.aliases.size(), b.aliases.size());
  note("fallback_chains", a.fallback_chains.size(), b.fallback_chains.size());
  note("providers", a.provider_overrides.size(), b.provider_overrides.size());
  note("nodes", a.nodes.size(), b.nodes.size());
  note("connections", a.connections.size(), b.connections.size());
  note("api_keys", a.api_keys.size(), b.api_keys.size());
  note("pricing", a.pricing.size(), b.pricing.size());
  note("budgets", a.budgets.size(), b.budgets.size());
  return out.empty() ? "no count changed" : absl::StrJoin(out, ", ");
}

}  // namespace

std::string SettingsNeedingRestart(const Config& a, const Config& b) {
  std::vector<std::string> out;
  auto note = [&](const char* what, bool differs) {
    if (differs) out.push_back(what);
  };
  note("server.host", a.server.host != b.server.host);
  note("server.port", a.server.port != b.server.port);
  note("server.threads", a.server.threads != b.server.threads);
  note("server.drain_timeout_ms", a.server.drain_timeout_ms != b.server.drain_timeout_ms);
  note("services.router", a.services.router != b.services.router);
  note("services.translator", a.services.translator != b.services.translator);
  note("services.accounts", a.services.accounts != b.services.accounts);
  note("services.usage", a.services.usage != b.services.usage);
  note("storage.sqlite_path", a.storage.sqlite_path != b.storage.sqlite_path);
  note("storage.postgres_url", a.storage.postgres_url != b.storage.postgres_url);
  note("redis.url", a.redis.url != b.redis.url);
  note("data_dir", a.data_dir != b.data_dir);
  note("usage.spool_dir", a.usage.spool_dir != b.usage.spool_dir);
  note("usage.budget_reset_utc", a.usage.budget_reset_utc != b.usage.budget_reset_utc);
  return absl::StrJoin(out, ",");
}

ConfigReloader::ConfigReloader(ConfigPtr current, ConfigApplier apply,
                               ConfigReloaderOptions options)
    : apply_(std::move(apply)), options_(std::move(options)), current_(std::move(current)) {
  if (current_) stamp_ = Stamp(current_->config_path);
}

ConfigReloader::~ConfigReloader() {
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConfigReloader::Start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void ConfigReloader::RequestReload() {
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    requested_ = true;
  }
  loop_cv_.notify_all();
}

ConfigPtr ConfigReloader::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

ConfigReloader::FileStamp ConfigReloader::Stamp(const std::string& path) {
  FileStamp s;
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return s;
  s.exists = true;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  s.size = st.st_size;
  s.inode = st.st_ino;
  return s;
}

absl::Status ConfigReloader::ReloadNow() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string path = current_ ? current_->config_path : options_.flag_path;
  // Stamped before reading: a write that lands while we read is seen by the next poll.
  stamp_ = Stamp(path);
  absl::Status status;
  ConfigPtr next;
  try {
    // Secrets are not read again (the router and usage services never generate them).
    absl::StatusOr<ConfigPtr> loaded = LoadConfig(options_.flag_path, /*generate_secrets=*/false);
    if (!loaded.ok()) {
      status = loaded.status();
    } else {
      auto merged = std::make_shared<Config>(**loaded);
      if (current_) {
        merged->admin_key = current_->admin_key;
        merged->api_key_secret = current_->api_key_secret;
        merged->jwt_secret = current_->jwt_secret;
        merged->initial_password = current_->initial_password;
      }
      next = std::move(merged);
      if (apply_) status = apply_(next);
    }
  } catch (const std::exception& e) {
    status = absl::InternalError(e.what());
  }
  if (!status.ok()) {
    LogError("config reload refused; the config in force stays",
             {{"service", options_.service}, {"error", SV(status.message())}});
    if (options_.on_result) options_.on_result("error");
    return status;
  }
  const std::string changes = current_ ? CountChanges(*current_, *next) : "initial";
  const std::string restart = current_ ? SettingsNeedingRestart(*current_, *next) : "";
  if (restart.empty()) {
    LogInfo("config reloaded",
            {{"service", options_.service}, {"path", next->config_path}, {"changes", changes}});
  } else {
    LogWarn("config reloaded; some changed settings need a restart",
            {{"service", options_.service},
             {"path", next->config_path},
             {"changes", changes},
             {"needs_restart", restart}});
  }
  current_ = std::move(next);
  if (options_.on_result) options_.on_result("ok");
  return absl::OkStatus();
}

void ConfigReloader::Loop() {
  const auto interval = std::chrono::milliseconds(
      options_.poll_interval_ms > 0 ? options_.poll_interval_ms : int64_t{24} * 3600 * 1000);
  std::unique_lock<std::mutex> lock(loop_mu_);
  while (!stopping_) {
    loop_cv_.wait_for(lock, interval, [this] { return stopping_ || requested_; });
    if (stopping_) return;
    bool reload = requested_;
    requested_ = false;
    lock.unlock();
    if (!reload && options_.poll_interval_ms > 0) {
      std::lock_guard<std::mutex> state(mu_);
      const std::string path = current_ ? current_->config_path : options_.flag_path;
      reload = !(Stamp(path) == stamp_);
    }
    if (reload) (void)ReloadNow();
    lock.lock();
  }
}

}  // namespace omniroute

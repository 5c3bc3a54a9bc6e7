#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "common/config.h"

namespace omniroute {

// Applies a newly loaded config to a process's services. An error refuses the config: the
// applier must then leave everything as it was (check first, then swap).
using ConfigApplier = std::function<absl::Status(const ConfigPtr&)>;

struct ConfigReloaderOptions {
  std::string flag_path;            // --config's value, as given to LoadConfig at start
  int64_t poll_interval_ms = 2000;  // file watch (mtime, size, inode); 0 = SIGHUP only
  std::string service;              // for the log lines
  // Called after every attempt: "ok" or "error" (e.g. to count it in a metric).
  std::function<void(const char* result)> on_result;
};

// Reloads the config file on request (SIGHUP) and when the file changes. A new config is
// loaded with LoadConfig (secrets are kept from the config in force: they never reload),
// then applied; an invalid file is refused with one log line naming the key, and the config
// in force stays. One log line per reload says what changed, counted per kind of object,
// and which changed settings need a restart.
class ConfigReloader {
 public:
  ConfigReloader(ConfigPtr current, ConfigApplier apply, ConfigReloaderOptions options);
  ~ConfigReloader();  // stops the watch thread

  // Starts the thread that watches the file and serves RequestReload().
  void Start();
  // Asks for a reload; returns at once (safe from a signal-waiting thread).
  void RequestReload();
  // Loads and applies the file now; the error says why the new config was refused.
  absl::Status ReloadNow();

  ConfigPtr current() const;

 private:
  struct FileStamp {
    bool exists = false;
    int64_t mtime_ns = 0;
    int64_t size = 0;
    uint64_t inode = 0;
    bool operator==(const FileStamp&) const = default;
  };
  static FileStamp Stamp(const std::string& path);
  void Loop();

  const ConfigApplier apply_;
  const ConfigReloaderOptions options_;

  mutable std::mutex mu_;  // guards current_, stamp_; held through a reload
  ConfigPtr current_;
  FileStamp stamp_;

  std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool requested_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

// Settings of `next` that differ from `current` but only take effect after a restart
// (listen address, threads, service addresses, stores, data dir), comma-separated.
std::string SettingsNeedingRestart(const Config& current, const Config& next);

}  // namespace omniroute

#pragma once

// Test helper: a throwaway redis-server on a unix socket in a temporary directory.

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace omniroute::router::testing {

inline bool RedisServerAvailable() {
  return std::system("command -v redis-server >/dev/null 2>&1") == 0;
}

class RedisServer {
 public:
  RedisServer() {
    char tmpl[] = "/tmp/omni-redis-XXXXXX";
    dir_ = mkdtemp(tmpl);
    socket_ = dir_ + "/redis.sock";
  }
  ~RedisServer() {
    Kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts the server and waits until it answers PING.
  bool Start() {
    pid_ = fork();
    if (pid_ == 0) {
      const int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
      execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", socket_.c_str(),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir_.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (redisContext* c = Connect()) {
        redisFree(c);
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      unlink(socket_.c_str());
    }
  }

  // A direct connection for inspecting keys; nullptr when the server does not answer.
  redisContext* Connect() const {
    redisContext* c = redisConnectUnix(socket_.c_str());
    if (c == nullptr || c->err != 0) {
      if (c != nullptr) {
        redisFree(c);
      }
      return nullptr;
    }
    redisReply* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r != nullptr) {
      freeReplyObject(r);
    }
    if (!ok) {
      redisFree(c);
      return nullptr;
    }
    return c;
  }

  // Runs a command (printf-style as redisCommand) on a fresh connection; the reply as text
  // (integer or string), "" for nil or an error, "<down>" when the server does not answer.
  std::string Run(const char* format, const std::string& arg = {}) const {
    redisContext* c = Connect();
    if (c == nullptr) {
      return "<down>";
    }
    redisReply* r = static_cast<redisReply*>(
        arg.empty() ? redisCommand(c, format) : redisCommand(c, format, arg.data(), arg.size()));
    std::string out;
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(r->integer);
    } else if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) {
      out.assign(r->str, r->len);
    }
    if (r != nullptr) {
      freeReplyObject(r);
    }
    redisFree(c);
    return out;
  }

  std::string url() const { return "unix://" + socket_; }

 private:
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

}  // namespace omniroute::router::testing

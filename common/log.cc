#include "common/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace omniroute {

namespace {

bool NeedsEscape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

}  // namespace

void AppendJsonEscaped(std::string& out, std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // The run of characters that go through as they are, in one append.
    size_t j = i;
    while (j < s.size() && !NeedsEscape(static_cast<unsigned char>(s[j]))) ++j;
    out.append(s.data() + i, j - i);
    if (j == s.size()) break;
    const unsigned char c = static_cast<unsigned char>(s[j]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out.append(esc, sizeof esc);
      }
    }
    i = j + 1;
  }
}

void Log(std::string_view level, std::string_view msg, std::initializer_list<LogField> fields) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const int64_t millis_since_epoch = duration_cast<milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(millis_since_epoch / 1000);
  const int millis = static_cast<int>(millis_since_epoch % 1000);
  // The date and time to the second, formatted once a second per thread.
  thread_local std::time_t cached_secs = -1;
  thread_local char cached_ts[64];  // room for any year snprintf could be asked to print
  if (secs != cached_secs) {
    std::tm tm;
    gmtime_r(&secs, &tm);
    std::snprintf(cached_ts, sizeof(cached_ts), "%04d-%02d-%02dT%02d:%02d:%02d",
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                  tm.tm_sec);
    cached_secs = secs;
  }
  const char ms[5] = {'.', static_cast<char>('0' + millis / 100),
                      static_cast<char>('0' + millis / 10 % 10),
                      static_cast<char>('0' + millis % 10), 'Z'};
  thread_local std::string line;  // reused: a line allocates only when it is the longest yet
  line.clear();
  line += "{\"ts\":\"";
  line += cached_ts;
  line.append(ms, sizeof ms);
  line += "\",\"level\":\"";
  line += level;
  line += "\",\"msg\":\"";
  AppendJsonEscaped(line, msg);
  line += '"';
  for (const auto& [k, v] : fields) {
    line += ",\"";
    AppendJsonEscaped(line, k);
    line += "\":\"";
    AppendJsonEscaped(line, v);
    line += '"';
  }
  line += "}\n";
  // A single write keeps concurrent lines whole.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
  if (line.capacity() > 64 * 1024) std::string().swap(line);  // one huge line is not kept
}

}  // namespace omniroute

#pragma once

#include <initializer_list>
#include <string_view>
#include <utility>

namespace omniroute {

using LogField = std::pair<std::string_view, std::string_view>;

// One JSON object per line on stderr: {"ts":..,"level":..,"msg":..,<fields>}.
// Thread-safe; each call is a single write(2).
void Log(std::string_view level, std::string_view msg, std::initializer_list<LogField> fields);
inline void LogInfo(std::string_view msg, std::initializer_list<LogField> fields = {}) {
  Log("info", msg, fields);
}
inline void LogWarn(std::string_view msg, std::initializer_list<LogField> fields = {}) {
  Log("warn", msg, fields);
}
inline void LogError(std::string_view msg, std::initializer_list<LogField> fields = {}) {
  Log("error", msg, fields);
}

// Appends `s` to `out` as the inside of a JSON string (no quotes).
void AppendJsonEscaped(std::string& out, std::string_view s);

}  // namespace omniroute

#pragma once

#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace omniroute {

// One server-sent event. `event` is empty when the stream did not name it.
struct SseEvent {
  std::string_view event;
  std::string_view data;
};

// Incremental SSE parser (WHATWG rules: LF, CR or CRLF line ends; "data" lines joined by
// LF; comments ignored). Feed it bytes as they arrive, in pieces of any size.
class SseParser {
 public:
  explicit SseParser(size_t max_event_bytes = 16 * 1024 * 1024)
      : max_event_bytes_(max_event_bytes) {}

  // Calls on_event for each event completed by `bytes`. Fails when one event exceeds the
  // limit; the parser is unusable afterwards.
  absl::Status Feed(std::string_view bytes, absl::FunctionRef<void(const SseEvent&)> on_event);

  // Delivers a final event that was not followed by a blank line.
  void Finish(absl::FunctionRef<void(const SseEvent&)> on_event);

 private:
  void Line(std::string_view line, absl::FunctionRef<void(const SseEvent&)> on_event);
  void Dispatch(absl::FunctionRef<void(const SseEvent&)> on_event);

  size_t max_event_bytes_;
  std::string partial_;  // bytes of an unfinished line
  std::string event_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

}  // namespace omniroute

#include "common/sse.h"

namespace omniroute {

absl::Status SseParser::Feed(std::string_view bytes,
                             absl::FunctionRef<void(const SseEvent&)> on_event) {
  size_t start = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c != '\n' && c != '\r') {
      last_was_cr_ = false;
      continue;
    }
    if (c == '\n' && last_was_cr_ && i == start && partial_.empty()) {
      // The LF of a CRLF whose CR ended the previous line.
      last_was_cr_ = false;
      start = i + 1;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (partial_.empty()) {
      Line(bytes.substr(start, i - start), on_event);
    } else {
      partial_.append(bytes.substr(start, i - start));
      std::string line = std::move(partial_);
      partial_.clear();
      Line(line, on_event);
    }
    start = i + 1;
  }
  partial_.append(bytes.substr(start));
  if (partial_.size() + data_.size() > max_event_bytes_) {
    return absl::ResourceExhaustedError("SSE event exceeds the size limit");
  }
  return absl::OkStatus();
}

void SseParser::Finish(absl::FunctionRef<void(const SseEvent&)> on_event) {
  if (!partial_.empty()) {
    std::string line = std::move(partial_);
    partial_.clear();
    Line(line, on_event);
  }
  Dispatch(on_event);
}

void SseParser::Line(std::string_view line, absl::FunctionRef<void(const SseEvent&)> on_event) {
  if (line.empty()) {
    Dispatch(on_event);
    return;
  }
  if (line.front() == ':') return;  // comment
  std::string_view field = line;
  std::string_view value;
  if (size_t colon = line.find(':'); colon != std::string_view::npos) {
    field = line.substr(0, colon);
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
  // "id" and "retry" carry nothing the gateway uses.
}

void SseParser::Dispatch(absl::FunctionRef<void(const SseEvent&)> on_event) {
  if (has_data_) on_event(SseEvent{event_, data_});
  event_.clear();
  data_.clear();
  has_data_ = false;
}

}  // namespace omniroute

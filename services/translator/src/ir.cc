#include "ir.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/strings.h"

namespace omniroute::translator {
namespace {

constexpr std::string_view kAnthropicTag = "anthropic:";
constexpr std::string_view kRedactedTag = "anthropic-redacted:";
constexpr std::string_view kGeminiTag = "gemini:";
constexpr std::string_view kOpenAiTag = "openai:";

bool Consume(std::string_view* s, std::string_view prefix) {
  if (s->substr(0, prefix.size()) != prefix) return false;
  s->remove_prefix(prefix.size());
  return true;
}

}  // namespace

std::string EncodeToken(const Block& b, Origin native) {
  if (b.kind == Block::Kind::kRedacted) {
    if (native == Origin::kAnthropic) return b.data;
    return absl::StrCat(AV(kRedactedTag), b.data);
  }
  if (b.signature.empty() || b.origin == native || b.origin == Origin::kNone) {
    return b.signature;
  }
  switch (b.origin) {
    case Origin::kAnthropic:
      return absl::StrCat(AV(kAnthropicTag), b.signature);
    case Origin::kGemini:
      return absl::StrCat(AV(kGeminiTag), b.signature);
    case Origin::kOpenAi:
      return absl::StrCat(AV(kOpenAiTag), b.item_id, ":", b.signature);
    case Origin::kNone:
      break;
  }
  return b.signature;
}

void DecodeToken(std::string_view token, Origin native, Block* b) {
  if (token.empty()) {
    b->origin = Origin::kNone;
    b->signature.clear();
    return;
  }
  std::string_view rest = token;
  if (Consume(&rest, kRedactedTag)) {
    b->kind = Block::Kind::kRedacted;
    b->origin = Origin::kAnthropic;
    b->data.assign(rest);
    b->signature.clear();
    return;
  }
  if (Consume(&rest, kAnthropicTag)) {
    b->origin = Origin::kAnthropic;
  } else if (Consume(&rest, kGeminiTag)) {
    b->origin = Origin::kGemini;
  } else if (Consume(&rest, kOpenAiTag)) {
    b->origin = Origin::kOpenAi;
    const size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      b->item_id.assign(rest.substr(0, colon));
      rest.remove_prefix(colon + 1);
    }
  } else {
    b->origin = native;
  }
  b->signature.assign(rest);
}

bool IsGeminiCarrier(const Block& b) {
  return b.kind == Block::Kind::kThinking && b.text.empty() && b.origin == Origin::kGemini &&
         !b.signature.empty();
}

int64_t BudgetForEffort(std::string_view effort) {
  if (effort == "minimal" || effort == "low") return 1024;
  if (effort == "medium") return 10240;
  return 131072;
}

std::string EffortForBudget(int64_t budget) {
  if (budget <= 1024) return "low";
  if (budget <= 10240) return "medium";
  return "high";
}

namespace {

std::string_view BareModel(std::string_view model) {
  const size_t slash = model.rfind('/');
  if (slash != std::string_view::npos) model.remove_prefix(slash + 1);
  return model;
}

}  // namespace

bool IsOpenAiReasoningModel(std::string_view model) {
  const absl::string_view m = AV(BareModel(model));
  return absl::StartsWith(m, "o1") || absl::StartsWith(m, "o3") || absl::StartsWith(m, "o4") ||
         absl::StartsWith(m, "gpt-5");
}

bool IsOpenAiNonReasoningModel(std::string_view model) {
  const absl::string_view m = AV(BareModel(model));
  return absl::StartsWith(m, "gpt-4") || absl::StartsWith(m, "gpt-3.5");
}

std::string_view OpenAiFinishReason(StopReason r) {
  switch (r) {
    case StopReason::kLength:
      return "length";
    case StopReason::kToolCalls:
      return "tool_calls";
    case StopReason::kContentFilter:
      return "content_filter";
    default:
      return "stop";
  }
}

StopReason FromOpenAiFinishReason(std::string_view s) {
  if (s == "length") return StopReason::kLength;
  if (s == "tool_calls" || s == "function_call") return StopReason::kToolCalls;
  if (s == "content_filter") return StopReason::kContentFilter;
  if (s.empty()) return StopReason::kUnset;
  return StopReason::kStop;
}

int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

std::string FindToolName(const std::vector<Message>& messages, std::string_view id) {
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    for (const Block& b : it->blocks) {
      if (b.kind == Block::Kind::kToolCall && b.id == id) return b.name;
    }
  }
  return "";
}

std::string MediaUrl(const Block& b) {
  if (!b.url.empty()) return b.url;
  return absl::StrCat("data:", b.mime, ";base64,", b.data);
}

Block MediaFromUrl(std::string_view url) {
  Block b;
  b.kind = Block::Kind::kMedia;
  if (!ParseDataUrl(url, &b.mime, &b.data)) {
    b.url.assign(url);
    b.mime = MediaTypeFromUrl(url);
  }
  return b;
}

std::string JoinText(const std::vector<Block>& blocks, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const Block& b : blocks) {
    if (b.kind != Block::Kind::kText) continue;
    if (!first) out.append(sep);
    first = false;
    out.append(b.text);
  }
  return out;
}

// --- SinkDriver -----------------------------------------------------------------------

void SinkDriver::Start(const StreamHead& head) {
  if (started_ || finished_) return;
  started_ = true;
  sink_->Start(head);
}

int SinkDriver::Open(const Block& head) {
  if (!started_) Start(StreamHead{});
  const int index = static_cast<int>(open_.size());
  open_.push_back(!finished_);
  if (finished_) return index;
  if (head.kind == Block::Kind::kToolCall) saw_tool_call_ = true;
  sink_->BlockStart(index, head);
  return index;
}

bool SinkDriver::IsOpen(int index) const {
  return index >= 0 && index < static_cast<int>(open_.size()) && open_[index];
}

void SinkDriver::Delta(int index, std::string_view text) {
  if (!IsOpen(index) || text.empty()) return;
  sink_->Delta(index, text);
}

void SinkDriver::Signature(int index, const Block& token) {
  if (!IsOpen(index) || (token.signature.empty() && token.data.empty())) return;
  sink_->Signature(index, token);
}

void SinkDriver::Close(int index) {
  if (!IsOpen(index)) return;
  open_[index] = false;
  sink_->BlockStop(index);
}

void SinkDriver::CloseAll() {
  for (int i = 0; i < static_cast<int>(open_.size()); ++i) Close(i);
}

void SinkDriver::Finish(StopReason stop, std::string_view stop_sequence, const Usage& usage) {
  if (finished_) return;
  if (!started_) Start(StreamHead{});
  CloseAll();
  finished_ = true;
  if (stop == StopReason::kUnset)
    stop = saw_tool_call_ ? StopReason::kToolCalls : StopReason::kStop;
  sink_->Finish(stop, stop_sequence, usage);
}

void SinkDriver::Error(std::string_view type, std::string_view message) {
  if (finished_) return;
  if (!started_) Start(StreamHead{});
  CloseAll();
  finished_ = true;
  sink_->Error(type, message);
}

void SinkDriver::End(StopReason stop, const Usage& usage) {
  if (finished_) return;
  Finish(stop, "", usage);
}

}  // namespace omniroute::translator

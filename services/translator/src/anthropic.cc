// Anthropic Messages: requests, responses and event streams.

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "formats.h"

namespace omniroute::translator::anthropic {
namespace {

using Kind = Block::Kind;

// Anthropic requires max_tokens; this is what a request without one gets.
constexpr int64_t kDefaultMaxTokens = 4096;
constexpr int64_t kMinThinkingBudget = 1024;
// Larger limits than any model's are capped, which keeps the arithmetic in range.
constexpr int64_t kMaxTokensCap = int64_t{1} << 40;

// --- Reading --------------------------------------------------------------------------

Block ReadSource(const json::object& source) {
  Block b;
  b.kind = Kind::kMedia;
  const std::string_view type = GetString(source, "type");
  if (type == "url") {
    b.url.assign(GetString(source, "url"));
    b.mime = MediaTypeFromUrl(b.url);
  } else if (type == "text") {
    b.kind = Kind::kText;
    b.text.assign(GetString(source, "data"));
  } else {
    b.mime.assign(GetString(source, "media_type"));
    b.data.assign(GetString(source, "data"));
  }
  return b;
}

void ReadBlocks(const json::value& content, std::vector<Block>* out);

bool ReadBlock(const json::object& o, Block* b) {
  const std::string_view type = GetString(o, "type");
  if (type == "text") {
    b->kind = Kind::kText;
    b->text.assign(GetString(o, "text"));
  } else if (type == "image" || type == "document") {
    const json::object* source = GetObject(o, "source");
    if (source == nullptr) return false;
    *b = ReadSource(*source);
    if (type == "document") b->filename.assign(GetString(o, "title"));
  } else if (type == "tool_use") {
    b->kind = Kind::kToolCall;
    b->id.assign(GetString(o, "id"));
    b->name.assign(GetString(o, "name"));
    const json::value* input = Find(o, "input");
    b->arguments = input == nullptr ? std::string("{}") : Serialize(*input);
  } else if (type == "tool_result") {
    b->kind = Kind::kToolResult;
    b->id.assign(GetString(o, "tool_use_id"));
    if (const json::value* c = Find(o, "content")) ReadBlocks(*c, &b->content);
    b->is_error = GetBool(o, "is_error").value_or(false);
  } else if (type == "thinking") {
    b->kind = Kind::kThinking;
    b->text.assign(GetString(o, "thinking"));
    DecodeToken(GetString(o, "signature"), Origin::kAnthropic, b);
  } else if (type == "redacted_thinking") {
    b->kind = Kind::kRedacted;
    b->origin = Origin::kAnthropic;
    b->data.assign(GetString(o, "data"));
  } else {
    return false;  // server tools, citations' search results, containers: no equivalent
  }
  return true;
}

void ReadBlocks(const json::value& content, std::vector<Block>* out) {
  if (const json::string* s = content.if_string()) {
    out->push_back(Block::Text(std::string(s->data(), s->size())));
    return;
  }
  const json::array* a = content.if_array();
  if (a == nullptr) return;
  for (const json::value& v : *a) {
    const json::object* o = v.if_object();
    if (o == nullptr) continue;
    Block b;
    if (ReadBlock(*o, &b)) out->push_back(std::move(b));
  }
}

StopReason ReadStop(std::string_view s) {
  if (s == "max_tokens" || s == "model_context_window_exceeded") return StopReason::kLength;
  if (s == "tool_use") return StopReason::kToolCalls;
  if (s == "refusal") return StopReason::kContentFilter;
  if (s.empty()) return StopReason::kUnset;
  return StopReason::kStop;
}

// Merges the counts present in `u` into `usage` (Anthropic input excludes cache tokens).
void ReadUsage(const json::object& u, Usage* usage) {
  usage->present = true;
  const int64_t cached =
      Find(u, "cache_read_input_tokens") ? GetCount(u, "cache_read_input_tokens") : usage->cached;
  const int64_t written = Find(u, "cache_creation_input_tokens")
                              ? GetCount(u, "cache_creation_input_tokens")
                              : usage->cache_write;
  const int64_t fresh = Find(u, "input_tokens") ? GetCount(u, "input_tokens")
                                                : usage->input - usage->cached - usage->cache_write;
  usage->input = fresh + cached + written;
  usage->cached = cached;
  usage->cache_write = written;
  if (Find(u, "output_tokens")) usage->output = GetCount(u, "output_tokens");
}

// --- Writing --------------------------------------------------------------------------

json::object UsageJson(const Usage& u) {
  const int64_t fresh = u.input - u.cached - u.cache_write;
  return json::object{{"input_tokens", fresh < 0 ? 0 : fresh},
                      {"cache_creation_input_tokens", u.cache_write},
                      {"cache_read_input_tokens", u.cached},
                      {"output_tokens", u.output}};
}

std::string_view StopName(StopReason r, std::string_view stop_sequence) {
  switch (r) {
    case StopReason::kLength:
      return "max_tokens";
    case StopReason::kToolCalls:
      return "tool_use";
    case StopReason::kContentFilter:
      return "refusal";
    default:
      return stop_sequence.empty() ? "end_turn" : "stop_sequence";
  }
}

// Tool ids must match ^[a-zA-Z0-9_-]+$.
std::string ToolId(std::string_view id) {
  std::string out(id);
  for (char& c : out) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  }
  return out;
}

json::value ArgumentsObject(std::string_view arguments) {
  std::optional<json::value> v = ParseValue(arguments);
  if (v && v->is_object()) return std::move(*v);
  return json::object();
}

std::optional<json::object> MediaJson(const Block& b) {
  json::object source;
  std::string_view type;
  if (absl::StartsWith(b.mime, "image/") || (b.mime.empty() && !b.url.empty())) {
    type = "image";
  } else if (b.mime == "application/pdf") {
    type = "document";
  } else {
    return std::nullopt;  // Anthropic reads images and PDFs only
  }
  if (!b.url.empty()) {
    source = json::object{{"type", "url"}, {"url", b.url}};
  } else {
    source = json::object{{"type", "base64"}, {"media_type", b.mime}, {"data", b.data}};
  }
  return json::object{{"type", type}, {"source", std::move(source)}};
}

// Content blocks of a request or a response. `request` drops what Anthropic would refuse:
// reasoning it did not sign.
json::array BlocksJson(const std::vector<Block>& blocks, bool request) {
  json::array out;
  for (const Block& b : blocks) {
    switch (b.kind) {
      case Kind::kText:
        if (!b.text.empty()) out.push_back(json::object{{"type", "text"}, {"text", b.text}});
        break;
      case Kind::kMedia:
        if (auto m = MediaJson(b)) out.push_back(std::move(*m));
        break;
      case Kind::kThinking:
        if (b.signature.empty()) break;
        if (request && b.origin != Origin::kAnthropic) break;
        out.push_back(json::object{{"type", "thinking"},
                                   {"thinking", b.text},
                                   {"signature", EncodeToken(b, Origin::kAnthropic)}});
        break;
      case Kind::kRedacted:
        out.push_back(json::object{{"type", "redacted_thinking"}, {"data", b.data}});
        break;
      case Kind::kToolCall:
        out.push_back(json::object{{"type", "tool_use"},
                                   {"id", ToolId(b.id)},
                                   {"name", b.name},
                                   {"input", ArgumentsObject(b.arguments)}});
        break;
      case Kind::kToolResult: {
        json::object tr{{"type", "tool_result"}, {"tool_use_id", ToolId(b.id)}};
        bool only_text = true;
        for (const Block& c : b.content) only_text &= c.kind == Kind::kText;
        if (only_text) {
          tr["content"] = JoinText(b.content, "\n\n");
        } else {
          tr["content"] = BlocksJson(b.content, request);
        }
        if (b.is_error) tr["is_error"] = true;
        out.push_back(std::move(tr));
        break;
      }
    }
  }
  return out;
}

// Whether the last assistant turn calls a tool without a thinking block Anthropic signed,
// which Anthropic refuses while thinking is on.
bool LastToolTurnUnsigned(const std::vector<Message>& messages) {
  for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
    if (it->role != Role::kAssistant) continue;
    bool tool = false;
    bool signed_reasoning = false;
    for (const Block& b : it->blocks) {
      if (b.kind == Kind::kToolCall) tool = true;
      if (b.kind == Kind::kRedacted ||
          (b.kind == Kind::kThinking && b.origin == Origin::kAnthropic && !b.signature.empty())) {
        signed_reasoning = true;
      }
    }
    return tool && !signed_reasoning;
  }
  return false;
}

void AppendEvent(std::string* out, std::string_view name, json::object data) {
  AppendSse(out, name, data);
}

// --- Stream reader --------------------------------------------------------------------

class Reader final : public StreamReader {
 public:
  explicit Reader(StreamSink* sink) : d_(sink) {}

  void Event(std::string_view event, std::string_view data) override {
    auto parsed = ParseObject(data, "event");
    if (!parsed.ok()) return;
    const json::object& e = *parsed;
    const std::string_view type = GetString(e, "type");
    if (type == "message_start") {
      const json::object* m = GetObject(e, "message");
      StreamHead head;
      if (m != nullptr) {
        head.id.assign(GetString(*m, "id"));
        head.model.assign(GetString(*m, "model"));
        if (const json::object* u = GetObject(*m, "usage")) ReadUsage(*u, &usage_);
      }
      if (head.id.empty()) head.id = DeriveId("msg_", data);
      head.usage = usage_;
      d_.Start(head);
    } else if (type == "content_block_start") {
      const json::object* cb = GetObject(e, "content_block");
      const int64_t index = GetInt(e, "index").value_or(-1);
      if (cb == nullptr) return;
      const std::string_view kind = GetString(*cb, "type");
      Block head;
      if (kind == "text") {
        head.kind = Kind::kText;
      } else if (kind == "thinking") {
        head.kind = Kind::kThinking;
      } else if (kind == "redacted_thinking") {
        head.kind = Kind::kRedacted;
        head.origin = Origin::kAnthropic;
        head.data.assign(GetString(*cb, "data"));
      } else if (kind == "tool_use") {
        head.kind = Kind::kToolCall;
        head.id.assign(GetString(*cb, "id"));
        head.name.assign(GetString(*cb, "name"));
      } else {
        return;  // server tool blocks have no equivalent
      }
      const int ir = d_.Open(head);
      blocks_[index] = ir;
      if (kind == "text") d_.Delta(ir, GetString(*cb, "text"));
      if (kind == "thinking") {
        d_.Delta(ir, GetString(*cb, "thinking"));
        Signature(ir, GetString(*cb, "signature"));
      }
      if (kind == "tool_use") {
        const json::object* input = GetObject(*cb, "input");
        if (input != nullptr && !input->empty()) d_.Delta(ir, Serialize(*input));
      }
    } else if (type == "content_block_delta") {
      auto it = blocks_.find(GetInt(e, "index").value_or(-1));
      const json::object* delta = GetObject(e, "delta");
      if (it == blocks_.end() || delta == nullptr) return;
      const std::string_view dt = GetString(*delta, "type");
      if (dt == "text_delta") d_.Delta(it->second, GetString(*delta, "text"));
      if (dt == "thinking_delta") d_.Delta(it->second, GetString(*delta, "thinking"));
      if (dt == "input_json_delta") d_.Delta(it->second, GetString(*delta, "partial_json"));
      if (dt == "signature_delta") Signature(it->second, GetString(*delta, "signature"));
    } else if (type == "content_block_stop") {
      auto it = blocks_.find(GetInt(e, "index").value_or(-1));
      if (it != blocks_.end()) d_.Close(it->second);
    } else if (type == "message_delta") {
      if (const json::object* u = GetObject(e, "usage")) ReadUsage(*u, &usage_);
      if (const json::object* delta = GetObject(e, "delta")) {
        stop_ = ReadStop(GetString(*delta, "stop_reason"));
        d_.Finish(stop_, GetString(*delta, "stop_sequence"), usage_);
      }
    } else if (type == "message_stop") {
      d_.End(stop_, usage_);
    } else if (type == "error") {
      const json::object* err = GetObject(e, "error");
      d_.Error(err ? GetString(*err, "type") : "api_error", err ? GetString(*err, "message") : "");
    }
  }

  void End() override { d_.End(stop_, usage_); }

 private:
  void Signature(int index, std::string_view token) {
    if (token.empty()) return;
    Block b;
    b.kind = Kind::kThinking;
    DecodeToken(token, Origin::kAnthropic, &b);
    d_.Signature(index, b);
  }

  SinkDriver d_;
  std::map<int64_t, int> blocks_;
  Usage usage_;
  StopReason stop_ = StopReason::kUnset;
};

// --- Stream writer --------------------------------------------------------------------

class Writer final : public StreamSink {
 public:
  Writer(std::string* out, std::string model) : out_(out), model_(std::move(model)) {}

  void Start(const StreamHead& head) override {
    json::object usage = UsageJson(head.usage);
    usage["output_tokens"] = 0;
    AppendEvent(
        out_, "message_start",
        json::object{
            {"type", "message_start"},
            {"message", json::object{{"id", head.id.empty() ? DeriveId("msg_", model_) : head.id},
                                     {"type", "message"},
                                     {"role", "assistant"},
                                     {"model", model_},
                                     {"content", json::array()},
                                     {"stop_reason", nullptr},
                                     {"stop_sequence", nullptr},
                                     {"usage", std::move(usage)}}}});
  }

  void BlockStart(int index, const Block& head) override {
    State& s = blocks_[index];
    s.kind = head.kind;
    FlushCarrier();
    switch (head.kind) {
      case Kind::kText:
        Open(&s, json::object{{"type", "text"}, {"text", ""}});
        break;
      case Kind::kThinking:
        break;  // held until signed: Anthropic clients replay what they get
      case Kind::kRedacted:
        Open(&s, json::object{{"type", "redacted_thinking"}, {"data", head.data}});
        break;
      case Kind::kToolCall:
        Open(&s, json::object{{"type", "tool_use"},
                              {"id", ToolId(head.id)},
                              {"name", head.name},
                              {"input", json::object()}});
        break;
      default:
        break;
    }
  }

  void Delta(int index, std::string_view text) override {
    State& s = blocks_[index];
    switch (s.kind) {
      case Kind::kText:
        BlockDelta(s, json::object{{"type", "text_delta"}, {"text", text}});
        break;
      case Kind::kThinking:
        s.held.append(text);
        // Keep the connection visibly alive while reasoning is held back.
        if (s.held_pieces++ % 64 == 0) {
          AppendEvent(out_, "ping", json::object{{"type", "ping"}});
        }
        break;
      case Kind::kToolCall:
        BlockDelta(s, json::object{{"type", "input_json_delta"}, {"partial_json", text}});
        break;
      default:
        break;
    }
  }

  void Signature(int index, const Block& token) override {
    State& s = blocks_[index];
    if (s.kind != Kind::kThinking) return;
    if (token.kind == Kind::kRedacted) {
      s.redacted = token.data;
    } else {
      s.signature = EncodeToken(token, Origin::kAnthropic);
      s.gemini = token.origin == Origin::kGemini;
    }
  }

  void BlockStop(int index) override {
    State& s = blocks_[index];
    if (s.kind == Kind::kThinking && !s.redacted.empty()) {
      Open(&s, json::object{{"type", "redacted_thinking"}, {"data", s.redacted}});
    } else if (s.kind == Kind::kThinking) {
      if (s.signature.empty()) return;  // unsigned reasoning would be refused on replay
      if (s.gemini && s.held.empty()) {
        // A Gemini signature for the block after it: sent when that block starts. One that
        // nothing follows (Gemini signs the last piece of its text, which has been sent)
        // is left out: a thinking block after the answer makes clients such as Claude Code
        // print nothing (they show the last block), and Gemini does not need text
        // signatures back.
        carrier_ = s.signature;
        return;
      }
      Open(&s, json::object{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      if (!s.held.empty()) {
        BlockDelta(s, json::object{{"type", "thinking_delta"}, {"thinking", s.held}});
      }
      BlockDelta(s, json::object{{"type", "signature_delta"}, {"signature", s.signature}});
    }
    if (s.index < 0) return;
    AppendEvent(out_, "content_block_stop",
                json::object{{"type", "content_block_stop"}, {"index", s.index}});
  }

  void Finish(StopReason stop, std::string_view stop_sequence, const Usage& usage) override {
    json::object delta{{"stop_reason", StopName(stop, stop_sequence)}};
    if (stop_sequence.empty()) {
      delta["stop_sequence"] = nullptr;
    } else {
      delta["stop_sequence"] = stop_sequence;
    }
    AppendEvent(
        out_, "message_delta",
        json::object{
            {"type", "message_delta"}, {"delta", std::move(delta)}, {"usage", UsageJson(usage)}});
    AppendEvent(out_, "message_stop", json::object{{"type", "message_stop"}});
  }

  void Error(std::string_view type, std::string_view message) override {
    AppendEvent(out_, "error",
                json::object{{"type", "error"},
                             {"error", json::object{{"type", type}, {"message", message}}}});
  }

 private:
  struct State {
    Kind kind = Kind::kText;
    int index = -1;  // Anthropic block index once opened
    std::string held;
    int held_pieces = 0;
    std::string signature;
    bool gemini = false;  // the signature is Gemini's
    std::string redacted;
  };

  void FlushCarrier() {
    if (carrier_.empty()) return;
    State s;
    Open(&s, json::object{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
    BlockDelta(s, json::object{{"type", "signature_delta"}, {"signature", carrier_}});
    AppendEvent(out_, "content_block_stop",
                json::object{{"type", "content_block_stop"}, {"index", s.index}});
    carrier_.clear();
  }

  void Open(State* s, json::object block) {
    s->index = next_index_++;
    AppendEvent(out_, "content_block_start",
                json::object{{"type", "content_block_start"},
                             {"index", s->index},
                             {"content_block", std::move(block)}});
  }

  void BlockDelta(const State& s, json::object delta) {
    if (s.index < 0) return;
    AppendEvent(
        out_, "content_block_delta",
        json::object{
            {"type", "content_block_delta"}, {"index", s.index}, {"delta", std::move(delta)}});
  }

  std::string* out_;
  std::string model_;
  std::map<int, State> blocks_;
  int next_index_ = 0;
  std::string carrier_;  // a Gemini signature waiting for the block it belongs to
};

}  // namespace

// --- Requests -------------------------------------------------------------------------

absl::StatusOr<Request> ReadRequest(const json::object& body) {
  Request r;
  if (const json::value* system = Find(body, "system")) {
    Message m;
    m.role = Role::kSystem;
    ReadBlocks(*system, &m.blocks);
    if (!m.blocks.empty()) r.messages.push_back(std::move(m));
  }
  const json::array* messages = GetArray(body, "messages");
  if (messages == nullptr) {
    return absl::InvalidArgumentError("Invalid request: 'messages' must be an array");
  }
  for (const json::value& mv : *messages) {
    const json::object* m = mv.if_object();
    if (m == nullptr) {
      return absl::InvalidArgumentError("Invalid request: each message must be an object");
    }
    const std::string_view role = GetString(*m, "role");
    Message msg;
    if (role == "user") {
      msg.role = Role::kUser;
    } else if (role == "assistant") {
      msg.role = Role::kAssistant;
    } else if (role == "system") {
      msg.role = Role::kSystem;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("Invalid request: unknown message role '", AV(role), "'"));
    }
    if (const json::value* c = Find(*m, "content")) ReadBlocks(*c, &msg.blocks);
    for (Block& b : msg.blocks) {
      if (b.kind == Kind::kToolResult) b.name = FindToolName(r.messages, b.id);
    }
    r.messages.push_back(std::move(msg));
  }
  r.max_tokens = GetInt(body, "max_tokens");
  r.temperature = GetNumber(body, "temperature");
  r.top_p = GetNumber(body, "top_p");
  r.top_k = GetInt(body, "top_k");
  if (const json::array* stops = GetArray(body, "stop_sequences")) {
    for (const json::value& s : *stops) {
      if (s.is_string()) r.stop.emplace_back(AsString(s));
    }
  }
  if (const json::array* tools = GetArray(body, "tools")) {
    for (const json::value& tv : *tools) {
      const json::object* t = tv.if_object();
      if (t == nullptr) continue;
      const std::string_view type = GetString(*t, "type");
      if (!type.empty() && type != "custom") continue;  // server tools
      Tool tool;
      tool.name.assign(GetString(*t, "name"));
      tool.description.assign(GetString(*t, "description"));
      if (const json::value* p = Find(*t, "input_schema")) tool.parameters = *p;
      r.tools.push_back(std::move(tool));
    }
  }
  if (const json::object* tc = GetObject(body, "tool_choice")) {
    const std::string_view type = GetString(*tc, "type");
    if (type == "auto") r.tool_choice.mode = ToolChoice::Mode::kAuto;
    if (type == "any") r.tool_choice.mode = ToolChoice::Mode::kRequired;
    if (type == "none") r.tool_choice.mode = ToolChoice::Mode::kNone;
    if (type == "tool") {
      r.tool_choice.mode = ToolChoice::Mode::kTool;
      r.tool_choice.name.assign(GetString(*tc, "name"));
    }
    if (auto disable = GetBool(*tc, "disable_parallel_tool_use")) {
      r.parallel_tool_calls = !*disable;
    }
  }
  if (const json::object* th = GetObject(body, "thinking")) {
    const std::string_view type = GetString(*th, "type");
    if (type == "enabled") {
      r.thinking = ThinkingMode::kEnabled;
      r.budget = GetInt(*th, "budget_tokens");
    } else if (type == "adaptive") {
      r.thinking = ThinkingMode::kAdaptive;
    } else if (type == "disabled") {
      r.thinking = ThinkingMode::kDisabled;
    }
  }
  if (const json::object* oc = GetObject(body, "output_config")) {
    r.effort.assign(GetString(*oc, "effort"));
  }
  if (const json::object* md = GetObject(body, "metadata")) {
    r.user.assign(GetString(*md, "user_id"));
  }
  return r;
}

json::object WriteRequest(const Request& r, std::string_view model, bool stream) {
  json::object out;
  out["model"] = model;

  // Thinking: a budget below max_tokens, at least 1024 tokens.
  bool thinking = r.thinking == ThinkingMode::kEnabled || r.thinking == ThinkingMode::kAdaptive ||
                  (r.thinking == ThinkingMode::kUnset && !r.effort.empty());
  int64_t budget = 0;
  if (thinking) {
    budget = r.budget.value_or(BudgetForEffort(r.effort.empty() ? "medium" : r.effort));
    if (budget < kMinThinkingBudget) budget = kMinThinkingBudget;
    if (budget > kMaxTokensCap) budget = kMaxTokensCap;
  }
  int64_t max_tokens = r.max_tokens.value_or(0);
  if (max_tokens > kMaxTokensCap) max_tokens = kMaxTokensCap;
  if (max_tokens <= 0) max_tokens = kDefaultMaxTokens + (thinking ? budget : 0);
  if (thinking && budget >= max_tokens) {
    budget = max_tokens - 1;
    if (budget < kMinThinkingBudget) thinking = false;
  }
  if (thinking && LastToolTurnUnsigned(r.messages)) thinking = false;
  // Anthropic refuses thinking with a forced tool choice; the forced call wins.
  if (thinking && !r.tools.empty() &&
      (r.tool_choice.mode == ToolChoice::Mode::kRequired ||
       r.tool_choice.mode == ToolChoice::Mode::kTool)) {
    thinking = false;
  }
  out["max_tokens"] = max_tokens;

  json::array system;
  json::array messages;
  std::string_view last_role;
  for (const Message& m : r.messages) {
    if (m.role == Role::kSystem || m.role == Role::kDeveloper) {
      for (const Block& b : m.blocks) {
        if (b.kind == Kind::kText && !b.text.empty()) {
          system.push_back(json::object{{"type", "text"}, {"text", b.text}});
        }
      }
      continue;
    }
    std::vector<Block> ordered;
    // tool_result blocks lead a user turn.
    for (const Block& b : m.blocks) {
      if (b.kind == Kind::kToolResult) ordered.push_back(b);
    }
    for (const Block& b : m.blocks) {
      if (b.kind != Kind::kToolResult) ordered.push_back(b);
    }
    json::array content = BlocksJson(ordered, true);
    if (content.empty()) continue;
    const std::string_view role = m.role == Role::kAssistant ? "assistant" : "user";
    if (role == last_role && !messages.empty()) {
      json::array& prev = messages.back().get_object()["content"].get_array();
      for (json::value& v : content) prev.push_back(std::move(v));
      continue;
    }
    messages.push_back(json::object{{"role", role}, {"content", std::move(content)}});
    last_role = role;
  }
  if (system.size() == 1) {
    out["system"] = system[0].get_object()["text"];
  } else if (!system.empty()) {
    out["system"] = std::move(system);
  }
  out["messages"] = std::move(messages);

  if (!r.stop.empty()) {
    json::array stop;
    for (const std::string& s : r.stop) stop.push_back(json::string(s));
    out["stop_sequences"] = std::move(stop);
  }
  // Anthropic refuses sampling changes while thinking, and current models take either
  // temperature or top_p.
  const bool temperature = r.temperature && !thinking;
  if (temperature) out["temperature"] = *r.temperature;
  if (r.top_p && !temperature && (!thinking || *r.top_p >= 0.95)) out["top_p"] = *r.top_p;
  if (r.top_k && !thinking) out["top_k"] = *r.top_k;
  if (stream) out["stream"] = true;
  if (!r.tools.empty()) {
    json::array tools;
    for (const Tool& t : r.tools) {
      json::object tool{{"name", t.name}};
      if (!t.description.empty()) tool["description"] = t.description;
      tool["input_schema"] =
          t.parameters.is_object()
              ? t.parameters
              : json::value(json::object{{"type", "object"}, {"properties", json::object()}});
      tools.push_back(std::move(tool));
    }
    out["tools"] = std::move(tools);
  }
  json::object choice;
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kAuto:
      choice["type"] = "auto";
      break;
    case ToolChoice::Mode::kRequired:
      choice["type"] = "any";
      break;
    case ToolChoice::Mode::kNone:
      choice["type"] = "none";
      break;
    case ToolChoice::Mode::kTool:
      choice["type"] = "tool";
      choice["name"] = r.tool_choice.name;
      break;
    case ToolChoice::Mode::kUnset:
      break;
  }
  if (r.parallel_tool_calls && !*r.parallel_tool_calls && !r.tools.empty() &&
      r.tool_choice.mode != ToolChoice::Mode::kNone) {
    if (choice.empty()) choice["type"] = "auto";
    choice["disable_parallel_tool_use"] = true;
  }
  if (!choice.empty() && !r.tools.empty()) out["tool_choice"] = std::move(choice);
  if (thinking) {
    out["thinking"] = json::object{{"type", "enabled"}, {"budget_tokens", budget}};
  } else if (r.thinking == ThinkingMode::kDisabled) {
    out["thinking"] = json::object{{"type", "disabled"}};
  }
  if (!r.user.empty()) out["metadata"] = json::object{{"user_id", r.user}};
  return out;
}

// --- Responses ------------------------------------------------------------------------

absl::StatusOr<Response> ReadResponse(const json::object& body) {
  Response r;
  r.id.assign(GetString(body, "id"));
  r.model.assign(GetString(body, "model"));
  const json::value* content = Find(body, "content");
  if (content == nullptr || !content->is_array()) {
    return absl::InvalidArgumentError("Invalid message: 'content' must be an array");
  }
  Choice c;
  ReadBlocks(*content, &c.blocks);
  c.stop = ReadStop(GetString(body, "stop_reason"));
  c.stop_sequence.assign(GetString(body, "stop_sequence"));
  r.choices.push_back(std::move(c));
  if (const json::object* u = GetObject(body, "usage")) ReadUsage(*u, &r.usage);
  return r;
}

json::object WriteResponse(const Response& r, std::string_view model) {
  json::object out;
  out["id"] = r.id.empty() ? DeriveId("msg_", model) : r.id;
  out["type"] = "message";
  out["role"] = "assistant";
  out["model"] = model;
  static const Choice kEmpty;
  const Choice& c = r.choices.empty() ? kEmpty : r.choices.front();
  out["content"] = BlocksJson(c.blocks, false);
  StopReason stop = c.stop;
  if (stop == StopReason::kUnset) stop = StopReason::kStop;
  out["stop_reason"] = StopName(stop, c.stop_sequence);
  if (c.stop_sequence.empty()) {
    out["stop_sequence"] = nullptr;
  } else {
    out["stop_sequence"] = c.stop_sequence;
  }
  out["usage"] = UsageJson(r.usage);
  return out;
}

// --- Streams --------------------------------------------------------------------------

std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink) {
  return std::make_unique<Reader>(sink);
}

std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions&) {
  return std::make_unique<Writer>(out, std::move(model));
}

}  // namespace omniroute::translator::anthropic

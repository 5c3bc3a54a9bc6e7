// OpenAI Chat Completions: requests, responses and chunk streams.

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "formats.h"

namespace omniroute::translator::chat {
namespace {

using Kind = Block::Kind;

// --- Reading --------------------------------------------------------------------------

void ReadParts(const json::value& content, std::vector<Block>* out) {
  if (const json::string* s = content.if_string()) {
    out->push_back(Block::Text(std::string(s->data(), s->size())));
    return;
  }
  const json::array* parts = content.if_array();
  if (parts == nullptr) return;
  for (const json::value& pv : *parts) {
    const json::object* p = pv.if_object();
    if (p == nullptr) continue;
    const std::string_view type = GetString(*p, "type");
    if (type == "text" || type == "input_text" || type == "output_text") {
      out->push_back(Block::Text(std::string(GetString(*p, "text"))));
    } else if (type == "refusal") {
      out->push_back(Block::Text(std::string(GetString(*p, "refusal"))));
    } else if (type == "image_url") {
      const json::value* iu = Find(*p, "image_url");
      if (iu == nullptr) continue;
      if (iu->is_string()) {
        out->push_back(MediaFromUrl(AsString(*iu)));
      } else if (const json::object* o = iu->if_object()) {
        Block b = MediaFromUrl(GetString(*o, "url"));
        b.detail.assign(GetString(*o, "detail"));
        out->push_back(std::move(b));
      }
    } else if (type == "input_audio") {
      const json::object* a = GetObject(*p, "input_audio");
      if (a == nullptr) continue;
      Block b;
      b.kind = Kind::kMedia;
      b.mime = absl::StrCat("audio/", AV(GetString(*a, "format")));
      b.data.assign(GetString(*a, "data"));
      out->push_back(std::move(b));
    } else if (type == "file") {
      const json::object* f = GetObject(*p, "file");
      if (f == nullptr || !HasString(*f, "file_data")) continue;
      Block b = MediaFromUrl(GetString(*f, "file_data"));
      b.filename.assign(GetString(*f, "filename"));
      out->push_back(std::move(b));
    }
  }
}

// The reasoning an assistant message carries: `thinking_blocks` when present (signed and
// redacted blocks), else `reasoning_content` / `reasoning` as one unsigned block.
void ReadReasoning(const json::object& m, std::vector<Block>* out) {
  if (const json::array* tb = GetArray(m, "thinking_blocks"); tb != nullptr && !tb->empty()) {
    const size_t first = out->size();
    for (const json::value& v : *tb) {
      const json::object* o = v.if_object();
      if (o == nullptr) continue;
      Block b;
      const std::string_view type = GetString(*o, "type");
      if (type == "redacted_thinking") {
        b.kind = Kind::kRedacted;
        b.origin = Origin::kAnthropic;
        b.data.assign(GetString(*o, "data"));
      } else if (type == "thinking") {
        b.kind = Kind::kThinking;
        b.text.assign(GetString(*o, "thinking"));
        DecodeToken(GetString(*o, "signature"), Origin::kAnthropic, &b);
      } else {
        continue;
      }
      out->push_back(std::move(b));
    }
    // A client that rebuilt its message from our stream has the text in reasoning_content
    // and a thinking block that only holds the signature (the stream sends the text once).
    // With one such block the text is unambiguous; Anthropic verifies it with the signature.
    // A Gemini carrier stays empty: its signature belongs to the part after it.
    if (out->size() == first + 1) {
      Block& only = out->back();
      std::string_view text = GetString(m, "reasoning_content");
      if (only.kind == Kind::kThinking && only.text.empty() && only.origin != Origin::kGemini &&
          !text.empty()) {
        only.text.assign(text);
      }
    }
    return;
  }
  std::string_view text = GetString(m, "reasoning_content");
  if (text.empty()) text = GetString(m, "reasoning");
  if (text.empty()) return;
  Block b;
  b.kind = Kind::kThinking;
  b.text.assign(text);
  out->push_back(std::move(b));
}

std::string_view GoogleSignature(const json::object& tool_call) {
  const json::object* extra = GetObject(tool_call, "extra_content");
  if (extra == nullptr) return {};
  const json::object* google = GetObject(*extra, "google");
  return google == nullptr ? std::string_view() : GetString(*google, "thought_signature");
}

Block GeminiCarrier(std::string_view signature) {
  Block b;
  b.kind = Kind::kThinking;
  b.origin = Origin::kGemini;
  b.signature.assign(signature);
  return b;
}

// `seed` makes the ids given to calls that came without one unique.
void ReadAssistant(const json::object& m, std::string_view seed, std::vector<Block>* out) {
  ReadReasoning(m, out);
  if (const json::value* c = Find(m, "content")) {
    std::vector<Block> parts;
    ReadParts(*c, &parts);
    for (Block& b : parts) {
      if (b.kind == Kind::kText && b.text.empty()) continue;
      out->push_back(std::move(b));
    }
  }
  if (std::string_view refusal = GetString(m, "refusal"); !refusal.empty()) {
    out->push_back(Block::Text(std::string(refusal)));
  }
  if (const json::array* calls = GetArray(m, "tool_calls")) {
    for (const json::value& v : *calls) {
      const json::object* tc = v.if_object();
      if (tc == nullptr) continue;
      const json::object* fn = GetObject(*tc, "function");
      if (fn == nullptr) continue;
      if (std::string_view sig = GoogleSignature(*tc); !sig.empty()) {
        out->push_back(GeminiCarrier(sig));
      }
      Block b;
      b.kind = Kind::kToolCall;
      b.id.assign(GetString(*tc, "id"));
      b.name.assign(GetString(*fn, "name"));
      if (b.id.empty()) b.id = DeriveId("call_", absl::StrCat(AV(seed), ":", out->size()));
      if (const json::value* a = Find(*fn, "arguments")) {
        b.arguments = a->is_string() ? std::string(AsString(*a)) : Serialize(*a);
      }
      out->push_back(std::move(b));
    }
  } else if (const json::object* fc = GetObject(m, "function_call")) {
    Block b;
    b.kind = Kind::kToolCall;
    b.name.assign(GetString(*fc, "name"));
    b.id = DeriveId("call_", absl::StrCat(AV(seed), ":", b.name));
    b.arguments.assign(GetString(*fc, "arguments"));
    out->push_back(std::move(b));
  }
}

Usage ReadUsage(const json::object& u) {
  Usage usage;
  usage.present = true;
  usage.input = GetCount(u, "prompt_tokens");
  usage.output = GetCount(u, "completion_tokens");
  if (const json::object* d = GetObject(u, "prompt_tokens_details")) {
    usage.cached = GetCount(*d, "cached_tokens");
  }
  if (const json::object* d = GetObject(u, "completion_tokens_details")) {
    usage.reasoning = GetCount(*d, "reasoning_tokens");
  }
  return usage;
}

// --- Writing --------------------------------------------------------------------------

json::value ContentValue(const std::vector<Block>& blocks) {
  bool only_text = true;
  int texts = 0;
  for (const Block& b : blocks) {
    if (b.kind == Kind::kText) {
      ++texts;
    } else if (b.kind == Kind::kMedia) {
      only_text = false;
    }
  }
  if (only_text && texts <= 1) return json::string(JoinText(blocks));
  json::array parts;
  for (const Block& b : blocks) {
    if (b.kind == Kind::kText) {
      parts.push_back(json::object{{"type", "text"}, {"text", b.text}});
    } else if (b.kind == Kind::kMedia) {
      if (absl::StartsWith(b.mime, "audio/") && !b.data.empty()) {
        parts.push_back(json::object{
            {"type", "input_audio"},
            {"input_audio", json::object{{"data", b.data}, {"format", b.mime.substr(6)}}}});
      } else if (absl::StartsWith(b.mime, "image/") || b.mime.empty()) {
        json::object iu{{"url", MediaUrl(b)}};
        if (!b.detail.empty()) iu["detail"] = b.detail;
        parts.push_back(json::object{{"type", "image_url"}, {"image_url", std::move(iu)}});
      } else if (b.url.empty()) {
        json::object file;
        if (!b.filename.empty()) file["filename"] = b.filename;
        file["file_data"] = MediaUrl(b);
        parts.push_back(json::object{{"type", "file"}, {"file", std::move(file)}});
      }
    }
  }
  return parts;
}

json::object ThinkingBlockJson(const Block& b) {
  if (b.kind == Kind::kRedacted) {
    return json::object{{"type", "redacted_thinking"}, {"data", b.data}};
  }
  return json::object{{"type", "thinking"},
                      {"thinking", b.text},
                      {"signature", EncodeToken(b, Origin::kAnthropic)}};
}

// Fills an assistant message: content, reasoning_content, thinking_blocks, tool_calls.
void WriteAssistant(const std::vector<Block>& blocks, json::object* msg) {
  std::vector<Block> texts;
  std::string reasoning;
  json::array thinking_blocks;
  bool signed_reasoning = false;
  json::array calls;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block& b = blocks[i];
    switch (b.kind) {
      case Kind::kText:
        texts.push_back(b);
        break;
      case Kind::kMedia:
        break;  // Chat assistant messages hold text only
      case Kind::kThinking:
        if (IsGeminiCarrier(b) && i + 1 < blocks.size() && blocks[i + 1].kind == Kind::kToolCall) {
          break;  // written on the tool call
        }
        reasoning.append(b.text);
        if (!b.signature.empty()) signed_reasoning = true;
        thinking_blocks.push_back(ThinkingBlockJson(b));
        break;
      case Kind::kRedacted:
        signed_reasoning = true;
        thinking_blocks.push_back(ThinkingBlockJson(b));
        break;
      case Kind::kToolCall: {
        json::object call{
            {"id", b.id},
            {"type", "function"},
            {"function",
             json::object{{"name", b.name},
                          {"arguments", b.arguments.empty() ? std::string("{}") : b.arguments}}}};
        if (i > 0 && IsGeminiCarrier(blocks[i - 1])) {
          call["extra_content"] = json::object{
              {"google", json::object{{"thought_signature", blocks[i - 1].signature}}}};
        }
        calls.push_back(std::move(call));
        break;
      }
      case Kind::kToolResult:
        break;
    }
  }
  json::value content = ContentValue(texts);
  if (calls.size() > 0 && texts.empty()) content = nullptr;
  (*msg)["content"] = std::move(content);
  if (!reasoning.empty()) (*msg)["reasoning_content"] = reasoning;
  if (signed_reasoning) (*msg)["thinking_blocks"] = std::move(thinking_blocks);
  if (!calls.empty()) (*msg)["tool_calls"] = std::move(calls);
}

json::object UsageJson(const Usage& u) {
  return json::object{
      {"prompt_tokens", u.input},
      {"completion_tokens", u.output},
      {"total_tokens", u.input + u.output},
      {"prompt_tokens_details", json::object{{"cached_tokens", u.cached}}},
      {"completion_tokens_details", json::object{{"reasoning_tokens", u.reasoning}}}};
}

// --- Stream reader --------------------------------------------------------------------

class Reader final : public StreamReader {
 public:
  explicit Reader(StreamSink* sink) : d_(sink) {}

  void Event(std::string_view event, std::string_view data) override {
    if (data == "[DONE]") {
      d_.End(stop_, usage_);
      return;
    }
    auto parsed = ParseObject(data, "chunk");
    if (!parsed.ok()) return;
    const json::object& chunk = *parsed;
    if (const json::object* err = GetObject(chunk, "error")) {
      std::string_view type = GetString(*err, "type");
      d_.Error(type.empty() ? "api_error" : type, GetString(*err, "message"));
      return;
    }
    if (!d_.started()) {
      StreamHead head;
      head.id.assign(GetString(chunk, "id"));
      if (head.id.empty()) head.id = DeriveId("chatcmpl-", data);
      head.model.assign(GetString(chunk, "model"));
      head.created = GetInt(chunk, "created").value_or(0);
      id_ = head.id;
      d_.Start(head);
    }
    if (const json::object* u = GetObject(chunk, "usage")) usage_ = ReadUsage(*u);
    if (const json::array* choices = GetArray(chunk, "choices")) {
      for (const json::value& cv : *choices) {
        const json::object* c = cv.if_object();
        if (c == nullptr || GetInt(*c, "index").value_or(0) != 0) continue;
        if (const json::object* delta = GetObject(*c, "delta")) Delta(*delta);
        std::string_view finish = GetString(*c, "finish_reason");
        if (!finish.empty()) {
          stop_ = FromOpenAiFinishReason(finish);
          finish_seen_ = true;
          d_.CloseAll();
        }
      }
    }
    if (finish_seen_ && usage_.present) d_.Finish(stop_, "", usage_);
  }

  void End() override { d_.End(stop_, usage_); }

 private:
  void CloseCurrent() {
    if (current_ >= 0) d_.Close(current_);
    current_ = -1;
  }

  int OpenKind(Kind kind) {
    if (current_ >= 0 && current_kind_ == kind && d_.IsOpen(current_)) return current_;
    CloseCurrent();
    Block head;
    head.kind = kind;
    current_ = d_.Open(head);
    current_kind_ = kind;
    return current_;
  }

  void Delta(const json::object& delta) {
    std::string_view reasoning = GetString(delta, "reasoning_content");
    if (reasoning.empty()) reasoning = GetString(delta, "reasoning");
    if (!reasoning.empty()) d_.Delta(OpenKind(Kind::kThinking), reasoning);
    if (const json::array* tb = GetArray(delta, "thinking_blocks")) {
      for (const json::value& v : *tb) {
        const json::object* o = v.if_object();
        if (o == nullptr) continue;
        Block b;
        if (GetString(*o, "type") == "redacted_thinking") {
          CloseCurrent();
          b.kind = Kind::kRedacted;
          b.data.assign(GetString(*o, "data"));
          d_.Close(d_.Open(b));
          continue;
        }
        std::string_view text = GetString(*o, "thinking");
        const int index = OpenKind(Kind::kThinking);
        d_.Delta(index, text);
        b.kind = Kind::kThinking;
        DecodeToken(GetString(*o, "signature"), Origin::kAnthropic, &b);
        if (!b.signature.empty() || b.kind == Kind::kRedacted) {
          d_.Signature(index, b);
          CloseCurrent();
        }
      }
    }
    std::string_view content = GetString(delta, "content");
    if (!content.empty()) d_.Delta(OpenKind(Kind::kText), content);
    if (const json::array* calls = GetArray(delta, "tool_calls")) {
      for (const json::value& v : *calls) {
        const json::object* tc = v.if_object();
        if (tc == nullptr) continue;
        const int64_t key = GetInt(*tc, "index").value_or(static_cast<int64_t>(tools_.size()));
        const json::object* fn = GetObject(*tc, "function");
        auto it = tools_.find(key);
        if (it == tools_.end()) {
          CloseCurrent();
          if (std::string_view sig = GoogleSignature(*tc); !sig.empty()) {
            Block carrier;
            carrier.kind = Kind::kThinking;
            const int ci = d_.Open(carrier);
            d_.Signature(ci, GeminiCarrier(sig));
            d_.Close(ci);
          }
          Block head;
          head.kind = Kind::kToolCall;
          head.id.assign(GetString(*tc, "id"));
          if (head.id.empty()) head.id = DeriveId("call_", absl::StrCat(id_, ":", key));
          if (fn != nullptr) head.name.assign(GetString(*fn, "name"));
          it = tools_.emplace(key, d_.Open(head)).first;
          current_ = it->second;
          current_kind_ = Kind::kToolCall;
        }
        if (fn != nullptr) d_.Delta(it->second, GetString(*fn, "arguments"));
      }
    }
  }

  SinkDriver d_;
  std::string id_;
  int current_ = -1;
  Kind current_kind_ = Kind::kText;
  std::map<int64_t, int> tools_;
  StopReason stop_ = StopReason::kUnset;
  bool finish_seen_ = false;
  Usage usage_;
};

// --- Stream writer --------------------------------------------------------------------

class Writer final : public StreamSink {
 public:
  Writer(std::string* out, std::string model, const StreamOptions& options)
      : out_(out),
        model_(std::move(model)),
        include_usage_(options.include_usage),
        now_(options.created) {}

  void Start(const StreamHead& head) override {
    id_ = head.id.empty() ? DeriveId("chatcmpl-", model_) : head.id;
    created_ = head.created > 0 ? head.created : now_ > 0 ? now_ : NowSeconds();
    Chunk(json::object{{"role", "assistant"}, {"content", ""}});
  }

  void BlockStart(int index, const Block& head) override {
    State& s = blocks_[index];
    s.kind = head.kind;
    if (head.kind == Kind::kRedacted) {
      FlushCarrier();
      Chunk(json::object{{"thinking_blocks", json::array{ThinkingBlockJson(head)}}});
    } else if (head.kind == Kind::kToolCall) {
      s.tool_index = next_tool_++;
      json::object call{{"index", s.tool_index},
                        {"id", head.id},
                        {"type", "function"},
                        {"function", json::object{{"name", head.name}, {"arguments", ""}}}};
      if (!carrier_.empty()) {
        call["extra_content"] =
            json::object{{"google", json::object{{"thought_signature", carrier_}}}};
        carrier_.clear();
      }
      Chunk(json::object{{"tool_calls", json::array{std::move(call)}}});
    }
  }

  void Delta(int index, std::string_view text) override {
    State& s = blocks_[index];
    switch (s.kind) {
      case Kind::kText:
        FlushCarrier();
        Chunk(json::object{{"content", text}});
        break;
      case Kind::kThinking:
        FlushCarrier();
        s.has_text = true;
        Chunk(json::object{{"reasoning_content", text}});
        break;
      case Kind::kToolCall:
        s.has_text = true;
        Chunk(json::object{{"tool_calls", json::array{json::object{
                                              {"index", s.tool_index},
                                              {"function", json::object{{"arguments", text}}}}}}});
        break;
      default:
        break;
    }
  }

  void Signature(int index, const Block& token) override {
    State& s = blocks_[index];
    FlushCarrier();
    if (!s.has_text && token.kind == Kind::kThinking && token.origin == Origin::kGemini) {
      carrier_ = token.signature;
      return;
    }
    Block signature = token;
    signature.text.clear();  // the text went out as reasoning_content
    Chunk(json::object{{"thinking_blocks", json::array{ThinkingBlockJson(signature)}}});
  }

  void BlockStop(int index) override {
    State& s = blocks_[index];
    if (s.kind == Kind::kToolCall && !s.has_text) {
      Chunk(json::object{{"tool_calls", json::array{json::object{
                                            {"index", s.tool_index},
                                            {"function", json::object{{"arguments", "{}"}}}}}}});
    }
  }

  void Finish(StopReason stop, std::string_view, const Usage& usage) override {
    FlushCarrier();
    Chunk(json::object(), OpenAiFinishReason(stop));
    if (include_usage_ && usage.present) {
      json::object chunk = Head();
      chunk["choices"] = json::array();
      chunk["usage"] = UsageJson(usage);
      AppendSse(out_, "", chunk);
    }
    out_->append("data: [DONE]\n\n");
  }

  void Error(std::string_view type, std::string_view message) override {
    AppendSse(out_, "",
              json::object{{"error", json::object{{"message", message},
                                                  {"type", type},
                                                  {"param", nullptr},
                                                  {"code", nullptr}}}});
  }

 private:
  struct State {
    Kind kind = Kind::kText;
    int tool_index = 0;
    bool has_text = false;
  };

  json::object Head() const {
    return json::object{
        {"id", id_}, {"object", "chat.completion.chunk"}, {"created", created_}, {"model", model_}};
  }

  void Chunk(json::object delta, std::string_view finish = {}) {
    json::object chunk = Head();
    json::object choice{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr}};
    if (finish.empty()) {
      choice["finish_reason"] = nullptr;
    } else {
      choice["finish_reason"] = finish;
    }
    chunk["choices"] = json::array{std::move(choice)};
    AppendSse(out_, "", chunk);
  }

  // A Gemini signature that no tool call claimed goes out as a thinking block.
  void FlushCarrier() {
    if (carrier_.empty()) return;
    Block b = GeminiCarrier(carrier_);
    carrier_.clear();
    Chunk(json::object{{"thinking_blocks", json::array{ThinkingBlockJson(b)}}});
  }

  std::string* out_;
  std::string model_;
  bool include_usage_;
  int64_t now_;
  std::string id_;
  int64_t created_ = 0;
  std::map<int, State> blocks_;
  int next_tool_ = 0;
  std::string carrier_;
};

}  // namespace

// --- Requests -------------------------------------------------------------------------

absl::StatusOr<Request> ReadRequest(const json::object& body) {
  Request r;
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
    if (role == "system" || role == "developer") {
      msg.role = role == "system" ? Role::kSystem : Role::kDeveloper;
      if (const json::value* c = Find(*m, "content")) ReadParts(*c, &msg.blocks);
    } else if (role == "user") {
      msg.role = Role::kUser;
      if (const json::value* c = Find(*m, "content")) ReadParts(*c, &msg.blocks);
    } else if (role == "assistant") {
      msg.role = Role::kAssistant;
      ReadAssistant(*m, absl::StrCat("request:", r.messages.size()), &msg.blocks);
    } else if (role == "tool" || role == "function") {
      Block b;
      b.kind = Kind::kToolResult;
      b.id.assign(GetString(*m, role == "tool" ? "tool_call_id" : "name"));
      b.name = FindToolName(r.messages, b.id);
      if (const json::value* c = Find(*m, "content")) ReadParts(*c, &b.content);
      // Consecutive tool messages answer one assistant turn together.
      if (!r.messages.empty() && r.messages.back().role == Role::kUser &&
          !r.messages.back().blocks.empty() &&
          r.messages.back().blocks.back().kind == Kind::kToolResult) {
        r.messages.back().blocks.push_back(std::move(b));
        continue;
      }
      msg.role = Role::kUser;
      msg.blocks.push_back(std::move(b));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("Invalid request: unknown message role '", AV(role), "'"));
    }
    r.messages.push_back(std::move(msg));
  }

  r.max_tokens = GetInt(body, "max_completion_tokens");
  if (!r.max_tokens) r.max_tokens = GetInt(body, "max_tokens");
  r.temperature = GetNumber(body, "temperature");
  r.top_p = GetNumber(body, "top_p");
  r.top_k = GetInt(body, "top_k");
  r.presence_penalty = GetNumber(body, "presence_penalty");
  r.frequency_penalty = GetNumber(body, "frequency_penalty");
  r.seed = GetInt(body, "seed");
  r.n = GetInt(body, "n");
  if (const json::value* stop = Find(body, "stop")) {
    if (stop->is_string()) {
      r.stop.emplace_back(AsString(*stop));
    } else if (const json::array* a = stop->if_array()) {
      for (const json::value& s : *a) {
        if (s.is_string()) r.stop.emplace_back(AsString(s));
      }
    }
  }
  if (const json::object* so = GetObject(body, "stream_options")) {
    r.include_usage = GetBool(*so, "include_usage").value_or(false);
  }
  if (const json::array* tools = GetArray(body, "tools")) {
    for (const json::value& tv : *tools) {
      const json::object* t = tv.if_object();
      if (t == nullptr || GetString(*t, "type") != "function") continue;
      const json::object* fn = GetObject(*t, "function");
      if (fn == nullptr) continue;
      Tool tool;
      tool.name.assign(GetString(*fn, "name"));
      tool.description.assign(GetString(*fn, "description"));
      if (const json::value* p = Find(*fn, "parameters")) tool.parameters = *p;
      tool.strict = GetBool(*fn, "strict");
      r.tools.push_back(std::move(tool));
    }
  }
  if (const json::value* tc = Find(body, "tool_choice")) {
    const std::string_view s = AsString(*tc);
    if (s == "auto") r.tool_choice.mode = ToolChoice::Mode::kAuto;
    if (s == "none") r.tool_choice.mode = ToolChoice::Mode::kNone;
    if (s == "required") r.tool_choice.mode = ToolChoice::Mode::kRequired;
    if (const json::object* o = tc->if_object()) {
      if (const json::object* fn = GetObject(*o, "function")) {
        r.tool_choice.mode = ToolChoice::Mode::kTool;
        r.tool_choice.name.assign(GetString(*fn, "name"));
      }
    }
  }
  r.parallel_tool_calls = GetBool(body, "parallel_tool_calls");
  if (std::string_view effort = GetString(body, "reasoning_effort"); !effort.empty()) {
    if (effort == "none") {
      r.thinking = ThinkingMode::kDisabled;
    } else {
      r.thinking = ThinkingMode::kEnabled;
      r.effort.assign(effort);
    }
  }
  if (const json::object* th = GetObject(body, "thinking")) {
    const std::string_view type = GetString(*th, "type");
    if (type == "enabled") {
      r.thinking = ThinkingMode::kEnabled;
      r.budget = GetInt(*th, "budget_tokens");
    } else if (type == "disabled") {
      r.thinking = ThinkingMode::kDisabled;
    }
  }
  if (const json::object* rf = GetObject(body, "response_format")) {
    const std::string_view type = GetString(*rf, "type");
    if (type == "text") r.format = OutputFormat::kText;
    if (type == "json_object") r.format = OutputFormat::kJsonObject;
    if (type == "json_schema") {
      r.format = OutputFormat::kJsonSchema;
      if (const json::object* js = GetObject(*rf, "json_schema")) {
        r.schema_name.assign(GetString(*js, "name"));
        r.schema_description.assign(GetString(*js, "description"));
        if (const json::value* s = Find(*js, "schema")) r.schema = *s;
        r.schema_strict = GetBool(*js, "strict");
      }
    }
  }
  r.user.assign(GetString(body, "user"));
  return r;
}

json::object WriteRequest(const Request& r, std::string_view model, bool stream) {
  json::object out;
  out["model"] = model;
  json::array messages;
  for (const Message& m : r.messages) {
    switch (m.role) {
      case Role::kSystem:
      case Role::kDeveloper:
        // "developer" is not known to most OpenAI-compatible providers.
        messages.push_back(
            json::object{{"role", "system"}, {"content", JoinText(m.blocks, "\n\n")}});
        break;
      case Role::kUser: {
        std::vector<Block> rest;
        std::vector<Block> tool_media;
        for (const Block& b : m.blocks) {
          if (b.kind != Kind::kToolResult) {
            rest.push_back(b);
            continue;
          }
          std::vector<Block> texts;
          for (const Block& c : b.content) {
            (c.kind == Kind::kMedia ? tool_media : texts).push_back(c);
          }
          messages.push_back(json::object{
              {"role", "tool"}, {"tool_call_id", b.id}, {"content", JoinText(texts, "\n\n")}});
        }
        // Chat tool messages hold text only: images a tool returned follow as user input.
        rest.insert(rest.begin(), tool_media.begin(), tool_media.end());
        if (!rest.empty()) {
          messages.push_back(json::object{{"role", "user"}, {"content", ContentValue(rest)}});
        }
        break;
      }
      case Role::kAssistant: {
        json::object msg{{"role", "assistant"}};
        WriteAssistant(m.blocks, &msg);
        messages.push_back(std::move(msg));
        break;
      }
    }
  }
  out["messages"] = std::move(messages);
  if (r.max_tokens) {
    out[IsOpenAiReasoningModel(model) ? "max_completion_tokens" : "max_tokens"] = *r.max_tokens;
  }
  // OpenAI's reasoning models refuse sampling parameters.
  const bool sampling = !IsOpenAiReasoningModel(model);
  if (r.temperature && sampling) out["temperature"] = *r.temperature;
  if (r.top_p && sampling) out["top_p"] = *r.top_p;
  if (r.n) out["n"] = *r.n;
  if (!r.stop.empty()) {
    // OpenAI takes up to four.
    json::array stop;
    for (size_t i = 0; i < r.stop.size() && i < 4; ++i) stop.push_back(json::string(r.stop[i]));
    out["stop"] = std::move(stop);
  }
  if (r.seed) out["seed"] = *r.seed;
  if (r.presence_penalty && sampling) out["presence_penalty"] = *r.presence_penalty;
  if (r.frequency_penalty && sampling) out["frequency_penalty"] = *r.frequency_penalty;
  if (!r.tools.empty()) {
    json::array tools;
    for (const Tool& t : r.tools) {
      json::object fn{{"name", t.name}};
      if (!t.description.empty()) fn["description"] = t.description;
      fn["parameters"] =
          t.parameters.is_null()
              ? json::value(json::object{{"type", "object"}, {"properties", json::object()}})
              : t.parameters;
      if (t.strict) fn["strict"] = *t.strict;
      tools.push_back(json::object{{"type", "function"}, {"function", std::move(fn)}});
    }
    out["tools"] = std::move(tools);
  }
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kAuto:
      out["tool_choice"] = "auto";
      break;
    case ToolChoice::Mode::kNone:
      out["tool_choice"] = "none";
      break;
    case ToolChoice::Mode::kRequired:
      out["tool_choice"] = "required";
      break;
    case ToolChoice::Mode::kTool:
      out["tool_choice"] = json::object{{"type", "function"},
                                        {"function", json::object{{"name", r.tool_choice.name}}}};
      break;
    case ToolChoice::Mode::kUnset:
      break;
  }
  if (r.parallel_tool_calls && !r.tools.empty())
    out["parallel_tool_calls"] = *r.parallel_tool_calls;
  if ((r.thinking == ThinkingMode::kEnabled || r.thinking == ThinkingMode::kAdaptive) &&
      !IsOpenAiNonReasoningModel(model)) {
    std::string effort = r.effort;
    if (effort == "max" || effort == "xhigh") effort = "high";
    if (effort.empty()) effort = r.budget ? EffortForBudget(*r.budget) : "medium";
    out["reasoning_effort"] = effort;
  }
  switch (r.format) {
    case OutputFormat::kJsonObject:
      out["response_format"] = json::object{{"type", "json_object"}};
      break;
    case OutputFormat::kJsonSchema: {
      json::object js{{"name", r.schema_name.empty() ? std::string("response") : r.schema_name}};
      if (!r.schema_description.empty()) js["description"] = r.schema_description;
      js["schema"] = r.schema;
      if (r.schema_strict) js["strict"] = *r.schema_strict;
      out["response_format"] =
          json::object{{"type", "json_schema"}, {"json_schema", std::move(js)}};
      break;
    }
    case OutputFormat::kText:
      out["response_format"] = json::object{{"type", "text"}};
      break;
    case OutputFormat::kUnset:
      break;
  }
  if (!r.user.empty()) out["user"] = r.user;
  if (stream) {
    out["stream"] = true;
    // Always asked for: usage is recorded for every request.
    out["stream_options"] = json::object{{"include_usage", true}};
  }
  return out;
}

// --- Responses ------------------------------------------------------------------------

absl::StatusOr<Response> ReadResponse(const json::object& body) {
  Response r;
  r.id.assign(GetString(body, "id"));
  r.model.assign(GetString(body, "model"));
  r.created = GetInt(body, "created").value_or(0);
  const json::array* choices = GetArray(body, "choices");
  if (choices == nullptr) {
    return absl::InvalidArgumentError("Invalid chat completion: 'choices' must be an array");
  }
  for (const json::value& cv : *choices) {
    const json::object* c = cv.if_object();
    if (c == nullptr) continue;
    Choice choice;
    if (const json::object* m = GetObject(*c, "message")) {
      ReadAssistant(*m, absl::StrCat(r.id.empty() ? Serialize(body) : r.id, ":", r.choices.size()),
                    &choice.blocks);
    }
    choice.stop = FromOpenAiFinishReason(GetString(*c, "finish_reason"));
    r.choices.push_back(std::move(choice));
  }
  if (const json::object* u = GetObject(body, "usage")) r.usage = ReadUsage(*u);
  return r;
}

json::object WriteResponse(const Response& r, std::string_view model) {
  json::object out;
  out["id"] = r.id.empty() ? DeriveId("chatcmpl-", model) : r.id;
  out["object"] = "chat.completion";
  out["created"] = r.created > 0 ? r.created : NowSeconds();
  out["model"] = model;
  json::array choices;
  int index = 0;
  for (const Choice& c : r.choices) {
    json::object msg{{"role", "assistant"}};
    WriteAssistant(c.blocks, &msg);
    msg["refusal"] = nullptr;
    StopReason stop = c.stop;
    if (stop == StopReason::kUnset) stop = StopReason::kStop;
    choices.push_back(json::object{{"index", index++},
                                   {"message", std::move(msg)},
                                   {"logprobs", nullptr},
                                   {"finish_reason", OpenAiFinishReason(stop)}});
  }
  out["choices"] = std::move(choices);
  if (r.usage.present) out["usage"] = UsageJson(r.usage);
  return out;
}

// --- Streams --------------------------------------------------------------------------

std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink) {
  return std::make_unique<Reader>(sink);
}

std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options) {
  return std::make_unique<Writer>(out, std::move(model), options);
}

}  // namespace omniroute::translator::chat

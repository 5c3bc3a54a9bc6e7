// Google Gemini generateContent: requests, responses and streamGenerateContent (alt=sse).

#include <deque>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "formats.h"

namespace omniroute::translator::gemini {
namespace {

// Google's documented values that make Gemini skip the thought signature check of a part.
// Clients put them on calls that have no signature (Gemini CLI does); they vouch for
// nothing, so they are not carried to other providers, and a request to Gemini 3 gets one
// again where needed.
constexpr std::string_view kSkipSignatureValidator = "skip_thought_signature_validator";

bool IsSkipSentinel(std::string_view sig) {
  return sig == kSkipSignatureValidator || sig == "context_engineering_is_the_way_to_go";
}

using Kind = Block::Kind;

// Gemini 2.5 accepts thinking budgets up to 32768 tokens.
constexpr int64_t kMaxThinkingBudget = 32768;

// Thinking budget for an OpenAI effort on Gemini (whose budgets are smaller than Claude's).
int64_t GeminiBudget(std::string_view effort) {
  if (effort == "minimal" || effort == "low") return 1024;
  if (effort == "medium") return 8192;
  return 24576;
}

// Gemini's OpenAPI schema subset spells types in capitals; JSON Schema in lower case.
json::value LowerTypes(const json::value& v) {
  if (const json::object* o = v.if_object()) {
    json::object out;
    for (const json::key_value_pair& kv : *o) {
      if (kv.key() == "type" && kv.value().is_string()) {
        out[kv.key()] = absl::AsciiStrToLower(AV(AsString(kv.value())));
      } else {
        out[kv.key()] = LowerTypes(kv.value());
      }
    }
    return out;
  }
  if (const json::array* a = v.if_array()) {
    json::array out;
    for (const json::value& e : *a) out.push_back(LowerTypes(e));
    return out;
  }
  return v;
}

StopReason ReadStop(std::string_view s) {
  if (s == "MAX_TOKENS") return StopReason::kLength;
  if (s == "SAFETY" || s == "RECITATION" || s == "BLOCKLIST" || s == "PROHIBITED_CONTENT" ||
      s == "SPII" || s == "IMAGE_SAFETY") {
    return StopReason::kContentFilter;
  }
  if (s.empty()) return StopReason::kUnset;
  return StopReason::kStop;
}

std::string_view StopName(StopReason r) {
  switch (r) {
    case StopReason::kLength:
      return "MAX_TOKENS";
    case StopReason::kContentFilter:
      return "SAFETY";
    default:
      return "STOP";
  }
}

Usage ReadUsage(const json::object& u) {
  Usage usage;
  usage.present = true;
  usage.input = GetCount(u, "promptTokenCount") + GetCount(u, "toolUsePromptTokenCount");
  usage.cached = GetCount(u, "cachedContentTokenCount");
  usage.reasoning = GetCount(u, "thoughtsTokenCount");
  usage.output = GetCount(u, "candidatesTokenCount") + usage.reasoning;
  return usage;
}

json::object UsageJson(const Usage& u) {
  json::object out{{"promptTokenCount", u.input},
                   {"candidatesTokenCount", u.output > u.reasoning ? u.output - u.reasoning : 0},
                   {"totalTokenCount", u.input + u.output}};
  if (u.cached > 0) out["cachedContentTokenCount"] = u.cached;
  if (u.reasoning > 0) out["thoughtsTokenCount"] = u.reasoning;
  return out;
}

Block Carrier(std::string_view signature) {
  Block b;
  b.kind = Kind::kThinking;
  DecodeToken(signature, Origin::kGemini, &b);
  return b;
}

// A tool result as Gemini's response object, and back.
json::value ResultObject(const Block& b) {
  const std::string text = JoinText(b.content, "\n\n");
  if (!b.is_error) {
    std::optional<json::value> v = ParseValue(text);
    if (v && v->is_object()) return std::move(*v);
  }
  return json::object{{b.is_error ? "error" : "output", text}};
}

void ReadResult(const json::value& response, Block* b) {
  if (const json::object* o = response.if_object(); o != nullptr && o->size() == 1) {
    const json::key_value_pair& kv = *o->begin();
    if (kv.value().is_string() && (kv.key() == "output" || kv.key() == "result" ||
                                   kv.key() == "content" || kv.key() == "error")) {
      b->is_error = kv.key() == "error";
      b->content.push_back(Block::Text(std::string(AsString(kv.value()))));
      return;
    }
  }
  b->content.push_back(Block::Text(Serialize(response)));
}

// Reads the parts of one content. Tool calls without an id get one from `next_id`;
// results without an id answer the oldest open call of the same name.
class PartReader {
 public:
  explicit PartReader(std::string id_seed) : id_seed_(std::move(id_seed)) {}

  void Read(const json::array& parts, std::vector<Block>* out) {
    bool in_thought = false;
    for (const json::value& pv : parts) {
      const json::object* p = pv.if_object();
      if (p == nullptr) continue;
      std::string_view sig = GetString(*p, "thoughtSignature");
      if (IsSkipSentinel(sig)) sig = {};
      if (GetBool(*p, "thought").value_or(false) && HasString(*p, "text")) {
        // Consecutive thought parts form one run; a signature closes it.
        if (!in_thought) {
          Block b;
          b.kind = Kind::kThinking;
          out->push_back(std::move(b));
          in_thought = true;
        }
        out->back().text.append(GetString(*p, "text"));
        if (!sig.empty()) {
          DecodeToken(sig, Origin::kGemini, &out->back());
          in_thought = false;
        }
        continue;
      }
      in_thought = false;
      if (!sig.empty()) out->push_back(Carrier(sig));
      if (HasString(*p, "text")) {
        if (!GetString(*p, "text").empty()) {
          out->push_back(Block::Text(std::string(GetString(*p, "text"))));
        }
      } else if (const json::object* d = GetObject(*p, "inlineData")) {
        Block b;
        b.kind = Kind::kMedia;
        b.mime.assign(GetString(*d, "mimeType"));
        b.data.assign(GetString(*d, "data"));
        out->push_back(std::move(b));
      } else if (const json::object* f = GetObject(*p, "fileData")) {
        Block b;
        b.kind = Kind::kMedia;
        b.mime.assign(GetString(*f, "mimeType"));
        b.url.assign(GetString(*f, "fileUri"));
        out->push_back(std::move(b));
      } else if (const json::object* fc = GetObject(*p, "functionCall")) {
        Block b;
        b.kind = Kind::kToolCall;
        b.name.assign(GetString(*fc, "name"));
        b.id.assign(GetString(*fc, "id"));
        if (b.id.empty()) b.id = DeriveId("call_", absl::StrCat(id_seed_, ":", count_++));
        const json::value* args = Find(*fc, "args");
        b.arguments = args == nullptr ? std::string("{}") : Serialize(*args);
        open_calls_[b.name].push_back(b.id);
        out->push_back(std::move(b));
      } else if (const json::object* fr = GetObject(*p, "functionResponse")) {
        Block b;
        b.kind = Kind::kToolResult;
        b.name.assign(GetString(*fr, "name"));
        b.id.assign(GetString(*fr, "id"));
        std::deque<std::string>& open = open_calls_[b.name];
        if (b.id.empty() && !open.empty()) b.id = open.front();
        if (b.id.empty()) b.id = DeriveId("call_", absl::StrCat(id_seed_, ":", count_++));
        for (auto it = open.begin(); it != open.end(); ++it) {
          if (*it == b.id) {
            open.erase(it);
            break;
          }
        }
        if (const json::value* resp = Find(*fr, "response")) ReadResult(*resp, &b);
        out->push_back(std::move(b));
      }
    }
  }

 private:
  std::string id_seed_;
  int count_ = 0;
  std::map<std::string, std::deque<std::string>> open_calls_;
};

// Writes blocks as parts. A Gemini signature carried by an empty reasoning block goes on
// the part after it; reasoning Gemini did not sign is dropped from requests.
json::array PartsJson(const std::vector<Block>& blocks, bool request) {
  json::array parts;
  std::string pending;
  auto add = [&](json::object part) {
    if (!pending.empty()) {
      part["thoughtSignature"] = pending;
      pending.clear();
    }
    parts.push_back(std::move(part));
  };
  for (const Block& b : blocks) {
    switch (b.kind) {
      case Kind::kText:
        if (!b.text.empty()) add(json::object{{"text", b.text}});
        break;
      case Kind::kMedia:
        if (!b.data.empty()) {
          add(json::object{{"inlineData", json::object{{"mimeType", b.mime}, {"data", b.data}}}});
        } else {
          add(json::object{
              {"fileData",
               json::object{{"mimeType", b.mime.empty() ? std::string("image/jpeg") : b.mime},
                            {"fileUri", b.url}}}});
        }
        break;
      case Kind::kThinking:
        if (IsGeminiCarrier(b)) {
          pending = b.signature;
          break;
        }
        if (request && (b.origin != Origin::kGemini || b.signature.empty())) break;
        {
          json::object part{{"text", b.text}, {"thought", true}};
          if (!b.signature.empty()) part["thoughtSignature"] = EncodeToken(b, Origin::kGemini);
          parts.push_back(std::move(part));
        }
        break;
      case Kind::kRedacted:
        if (!request) {
          parts.push_back(json::object{{"text", ""},
                                       {"thought", true},
                                       {"thoughtSignature", EncodeToken(b, Origin::kGemini)}});
        }
        break;
      case Kind::kToolCall: {
        std::optional<json::value> args = ParseValue(b.arguments);
        json::object call;
        if (!b.id.empty()) call["id"] = b.id;
        call["name"] = b.name;
        call["args"] = args && args->is_object() ? std::move(*args) : EmptyObject();
        add(json::object{{"functionCall", std::move(call)}});
        break;
      }
      case Kind::kToolResult: {
        json::object fr;
        if (!b.id.empty()) fr["id"] = b.id;
        fr["name"] = b.name.empty() ? b.id : b.name;
        fr["response"] = ResultObject(b);
        add(json::object{{"functionResponse", std::move(fr)}});
        break;
      }
    }
  }
  if (!pending.empty()) {
    if (!parts.empty()) {
      json::object& last = parts.back().get_object();
      if (Find(last, "thoughtSignature") == nullptr) last["thoughtSignature"] = pending;
    } else if (!request) {
      parts.push_back(json::object{{"text", ""}, {"thoughtSignature", pending}});
    }
  }
  return parts;
}

json::object Chunk(json::array parts, std::string_view model, std::string_view id) {
  return json::object{
      {"candidates", json::array{json::object{
                         {"content", json::object{{"parts", std::move(parts)}, {"role", "model"}}},
                         {"index", 0}}}},
      {"modelVersion", model},
      {"responseId", id}};
}

// --- Stream reader --------------------------------------------------------------------

class Reader final : public StreamReader {
 public:
  explicit Reader(StreamSink* sink) : d_(sink) {}

  void Event(std::string_view event, std::string_view data) override {
    auto parsed = ParseObject(data, "chunk");
    if (!parsed.ok()) return;
    const json::object& chunk = *parsed;
    if (const json::object* err = GetObject(chunk, "error")) {
      std::string_view status = GetString(*err, "status");
      d_.Error(status.empty() ? "api_error" : status, GetString(*err, "message"));
      return;
    }
    if (const json::object* u = GetObject(chunk, "usageMetadata")) usage_ = ReadUsage(*u);
    if (!d_.started()) {
      StreamHead head;
      head.id.assign(GetString(chunk, "responseId"));
      if (head.id.empty()) head.id = DeriveId("", data);
      head.model.assign(GetString(chunk, "modelVersion"));
      head.usage = usage_;
      id_seed_ = absl::StrCat("call:", head.id);
      d_.Start(head);
    }
    const json::array* candidates = GetArray(chunk, "candidates");
    const json::object* cand =
        candidates && !candidates->empty() ? (*candidates)[0].if_object() : nullptr;
    if (cand == nullptr) {
      if (const json::object* pf = GetObject(chunk, "promptFeedback");
          pf != nullptr && HasString(*pf, "blockReason")) {
        d_.Finish(StopReason::kContentFilter, "", usage_);
      }
      return;
    }
    if (const json::object* content = GetObject(*cand, "content")) {
      if (const json::array* parts = GetArray(*content, "parts")) {
        for (const json::value& pv : *parts) {
          if (const json::object* p = pv.if_object()) Part(*p);
        }
      }
    }
    std::string_view finish = GetString(*cand, "finishReason");
    if (!finish.empty()) {
      stop_ = ReadStop(finish);
      if (stop_ == StopReason::kStop && d_.saw_tool_call()) stop_ = StopReason::kToolCalls;
      CloseCurrent();
      d_.Finish(stop_, "", usage_);
    }
  }

  void End() override {
    if (!d_.finished()) CloseCurrent();
    d_.End(stop_, usage_);
  }

 private:
  void CloseCurrent() {
    if (current_ >= 0) d_.Close(current_);
    current_ = -1;
    if (!trailing_signature_.empty()) {
      const std::string sig = std::move(trailing_signature_);
      trailing_signature_.clear();
      EmitCarrier(sig);
    }
  }

  int Open(Kind kind) {
    if (current_ >= 0 && current_kind_ == kind) return current_;
    CloseCurrent();
    Block head;
    head.kind = kind;
    current_ = d_.Open(head);
    current_kind_ = kind;
    return current_;
  }

  void EmitCarrier(std::string_view sig) {
    CloseCurrent();
    Block b = Carrier(sig);
    Block head;
    head.kind = Kind::kThinking;
    const int i = d_.Open(head);
    d_.Signature(i, b);
    d_.Close(i);
  }

  void Part(const json::object& p) {
    const std::string_view sig = GetString(p, "thoughtSignature");
    if (GetBool(p, "thought").value_or(false)) {
      const int i = Open(Kind::kThinking);
      d_.Delta(i, GetString(p, "text"));
      if (!sig.empty()) {
        Block b = Carrier(sig);
        d_.Signature(i, b);
        CloseCurrent();
      }
      return;
    }
    if (!sig.empty()) {
      if (HasString(p, "text") && current_ >= 0 && current_kind_ == Kind::kText) {
        // Gemini signs the last text part of an answer. The text already streaming stays one
        // block; the signature follows it (a carrier after the text, which a request puts
        // back on the last text part).
        std::string_view text = GetString(p, "text");
        if (!text.empty()) d_.Delta(current_, text);
        trailing_signature_.assign(sig);
        return;
      }
      EmitCarrier(sig);
    }
    if (HasString(p, "text")) {
      std::string_view text = GetString(p, "text");
      if (!text.empty()) d_.Delta(Open(Kind::kText), text);
    } else if (const json::object* fc = GetObject(p, "functionCall")) {
      CloseCurrent();
      Block head;
      head.kind = Kind::kToolCall;
      head.name.assign(GetString(*fc, "name"));
      head.id.assign(GetString(*fc, "id"));
      if (head.id.empty()) head.id = DeriveId("call_", absl::StrCat(id_seed_, ":", calls_++));
      const int i = d_.Open(head);
      const json::value* args = Find(*fc, "args");
      d_.Delta(i, args == nullptr ? std::string("{}") : Serialize(*args));
      d_.Close(i);
    }
  }

  SinkDriver d_;
  std::string id_seed_;
  int calls_ = 0;
  int current_ = -1;
  Kind current_kind_ = Kind::kText;
  std::string trailing_signature_;  // of the text block being streamed
  StopReason stop_ = StopReason::kUnset;
  Usage usage_;
};

// --- Stream writer --------------------------------------------------------------------

class Writer final : public StreamSink {
 public:
  Writer(std::string* out, std::string model) : out_(out), model_(std::move(model)) {}

  void Start(const StreamHead& head) override {
    id_ = head.id.empty() ? DeriveId("", model_) : head.id;
  }

  void BlockStart(int index, const Block& head) override {
    State& s = blocks_[index];
    s.head = head;
    if (head.kind == Kind::kRedacted) {
      Emit(json::object{{"text", ""},
                        {"thought", true},
                        {"thoughtSignature", EncodeToken(head, Origin::kGemini)}});
    }
  }

  void Delta(int index, std::string_view text) override {
    State& s = blocks_[index];
    switch (s.head.kind) {
      case Kind::kText:
        Emit(json::object{{"text", text}});
        break;
      case Kind::kThinking:
        s.has_text = true;
        Emit(json::object{{"text", text}, {"thought", true}});
        break;
      case Kind::kToolCall:
        s.args.append(text);
        break;
      default:
        break;
    }
  }

  void Signature(int index, const Block& token) override {
    State& s = blocks_[index];
    if (!s.has_text && token.kind == Kind::kThinking && token.origin == Origin::kGemini) {
      pending_ = token.signature;
      return;
    }
    Emit(json::object{{"text", ""},
                      {"thought", true},
                      {"thoughtSignature", EncodeToken(token, Origin::kGemini)}});
  }

  void BlockStop(int index) override {
    State& s = blocks_[index];
    if (s.head.kind != Kind::kToolCall) return;
    std::optional<json::value> args = ParseValue(s.args.empty() ? "{}" : s.args);
    json::object call;
    if (!s.head.id.empty()) call["id"] = s.head.id;
    call["name"] = s.head.name;
    call["args"] = args && args->is_object() ? std::move(*args) : EmptyObject();
    Emit(json::object{{"functionCall", std::move(call)}});
  }

  void Finish(StopReason stop, std::string_view, const Usage& usage) override {
    json::object part{{"text", ""}};
    if (!pending_.empty()) part["thoughtSignature"] = pending_;
    pending_.clear();
    json::object chunk{
        {"candidates",
         json::array{json::object{
             {"content", json::object{{"parts", json::array{std::move(part)}}, {"role", "model"}}},
             {"finishReason", StopName(stop)},
             {"index", 0}}}}};
    if (usage.present) chunk["usageMetadata"] = UsageJson(usage);
    chunk["modelVersion"] = model_;
    chunk["responseId"] = id_;
    AppendSse(out_, "", chunk);
  }

  void Error(std::string_view type, std::string_view message) override {
    AppendSse(
        out_, "",
        json::object{
            {"error", json::object{{"code", 500}, {"message", message}, {"status", "INTERNAL"}}}});
  }

 private:
  struct State {
    Block head;
    bool has_text = false;
    std::string args;
  };

  void Emit(json::object part) {
    if (!pending_.empty() && Find(part, "thoughtSignature") == nullptr) {
      part["thoughtSignature"] = pending_;
      pending_.clear();
    }
    AppendSse(out_, "", Chunk(json::array{std::move(part)}, model_, id_));
  }

  std::string* out_;
  std::string model_;
  std::string id_;
  std::map<int, State> blocks_;
  std::string pending_;
};

}  // namespace

// --- Requests -------------------------------------------------------------------------

absl::StatusOr<Request> ReadRequest(const json::object& body) {
  Request r;
  if (const json::object* si = GetObject(body, "systemInstruction")) {
    Message m;
    m.role = Role::kSystem;
    if (const json::array* parts = GetArray(*si, "parts")) {
      for (const json::value& pv : *parts) {
        const json::object* p = pv.if_object();
        if (p != nullptr && HasString(*p, "text")) {
          m.blocks.push_back(Block::Text(std::string(GetString(*p, "text"))));
        }
      }
    }
    if (!m.blocks.empty()) r.messages.push_back(std::move(m));
  }
  const json::array* contents = GetArray(body, "contents");
  if (contents == nullptr) {
    return absl::InvalidArgumentError("Invalid request: 'contents' must be an array");
  }
  PartReader reader("request");
  for (const json::value& cv : *contents) {
    const json::object* c = cv.if_object();
    if (c == nullptr) {
      return absl::InvalidArgumentError("Invalid request: each content must be an object");
    }
    Message m;
    m.role = GetString(*c, "role") == "model" ? Role::kAssistant : Role::kUser;
    if (const json::array* parts = GetArray(*c, "parts")) reader.Read(*parts, &m.blocks);
    r.messages.push_back(std::move(m));
  }
  if (const json::array* tools = GetArray(body, "tools")) {
    for (const json::value& tv : *tools) {
      const json::object* t = tv.if_object();
      const json::array* decls = t ? GetArray(*t, "functionDeclarations") : nullptr;
      if (decls == nullptr) continue;  // search, code execution: no equivalent
      for (const json::value& dv : *decls) {
        const json::object* d = dv.if_object();
        if (d == nullptr) continue;
        Tool tool;
        tool.name.assign(GetString(*d, "name"));
        tool.description.assign(GetString(*d, "description"));
        if (const json::value* p = Find(*d, "parametersJsonSchema")) {
          tool.parameters = *p;
        } else if (const json::value* p = Find(*d, "parameters")) {
          tool.parameters = LowerTypes(*p);
        }
        r.tools.push_back(std::move(tool));
      }
    }
  }
  if (const json::object* tc = GetObject(body, "toolConfig")) {
    if (const json::object* fc = GetObject(*tc, "functionCallingConfig")) {
      const std::string_view mode = GetString(*fc, "mode");
      const json::array* allowed = GetArray(*fc, "allowedFunctionNames");
      if (mode == "AUTO" || mode == "VALIDATED") r.tool_choice.mode = ToolChoice::Mode::kAuto;
      if (mode == "NONE") r.tool_choice.mode = ToolChoice::Mode::kNone;
      if (mode == "ANY") {
        if (allowed != nullptr && allowed->size() == 1 && (*allowed)[0].is_string()) {
          r.tool_choice.mode = ToolChoice::Mode::kTool;
          r.tool_choice.name.assign(AsString((*allowed)[0]));
        } else {
          r.tool_choice.mode = ToolChoice::Mode::kRequired;
        }
      }
    }
  }
  if (const json::object* gc = GetObject(body, "generationConfig")) {
    r.temperature = GetNumber(*gc, "temperature");
    r.top_p = GetNumber(*gc, "topP");
    r.top_k = GetInt(*gc, "topK");
    r.n = GetInt(*gc, "candidateCount");
    r.max_tokens = GetInt(*gc, "maxOutputTokens");
    r.seed = GetInt(*gc, "seed");
    r.presence_penalty = GetNumber(*gc, "presencePenalty");
    r.frequency_penalty = GetNumber(*gc, "frequencyPenalty");
    if (const json::array* stops = GetArray(*gc, "stopSequences")) {
      for (const json::value& s : *stops) {
        if (s.is_string()) r.stop.emplace_back(AsString(s));
      }
    }
    if (GetString(*gc, "responseMimeType") == "application/json") {
      r.format = OutputFormat::kJsonObject;
      if (const json::value* s = Find(*gc, "responseJsonSchema")) {
        r.format = OutputFormat::kJsonSchema;
        r.schema = *s;
      } else if (const json::value* s = Find(*gc, "responseSchema")) {
        r.format = OutputFormat::kJsonSchema;
        r.schema = LowerTypes(*s);
      }
    }
    if (const json::object* tc = GetObject(*gc, "thinkingConfig")) {
      if (auto budget = GetInt(*tc, "thinkingBudget")) {
        if (*budget == 0) {
          r.thinking = ThinkingMode::kDisabled;
        } else if (*budget < 0) {
          r.thinking = ThinkingMode::kAdaptive;
        } else {
          r.thinking = ThinkingMode::kEnabled;
          r.budget = *budget;
        }
      }
      if (std::string_view level = GetString(*tc, "thinkingLevel"); !level.empty()) {
        if (r.thinking == ThinkingMode::kUnset) r.thinking = ThinkingMode::kEnabled;
        r.effort = absl::AsciiStrToLower(AV(level));
      }
      r.include_thoughts = GetBool(*tc, "includeThoughts");
    }
  }
  return r;
}

namespace {

// Gemini 3 and later validate the thought signatures of function calls.
bool RequiresCallSignatures(std::string_view model) {
  const size_t slash = model.rfind('/');
  if (slash != std::string_view::npos) model.remove_prefix(slash + 1);
  if (!absl::StartsWith(AV(model), "gemini-")) return false;
  model.remove_prefix(7);
  int major = 0;
  size_t i = 0;
  while (i < model.size() && model[i] >= '0' && model[i] <= '9') {
    major = major * 10 + (model[i] - '0');
    if (major > 1000) break;
    ++i;
  }
  return i > 0 && major >= 3;
}

}  // namespace

json::object WriteRequest(const Request& r, std::string_view model, bool stream) {
  json::object out;
  json::array contents;
  json::array system;
  std::string_view last_role;
  for (const Message& m : r.messages) {
    if (m.role == Role::kSystem || m.role == Role::kDeveloper) {
      for (const Block& b : m.blocks) {
        if (b.kind == Kind::kText && !b.text.empty()) {
          system.push_back(json::object{{"text", b.text}});
        }
      }
      continue;
    }
    std::vector<Block> blocks = m.blocks;
    for (Block& b : blocks) {
      if (b.kind == Kind::kToolResult && b.name.empty()) b.name = FindToolName(r.messages, b.id);
    }
    json::array parts = PartsJson(blocks, true);
    if (parts.empty()) continue;
    const std::string_view role = m.role == Role::kAssistant ? "model" : "user";
    if (role == last_role && !contents.empty()) {
      json::array& prev = contents.back().get_object()["parts"].get_array();
      for (json::value& v : parts) prev.push_back(std::move(v));
      continue;
    }
    contents.push_back(json::object{{"role", role}, {"parts", std::move(parts)}});
    last_role = role;
  }
  if (RequiresCallSignatures(model)) {
    // Gemini 3 refuses a function call turn whose calls carry no thoughtSignature (400
    // "Function call is missing a thought_signature"). History from another provider, or
    // from a client that dropped the signature, has none: Google's documented sentinel
    // skips the check for that turn. A real signature is never replaced.
    for (json::value& c : contents) {
      json::object& content = c.get_object();
      if (GetString(content, "role") != "model") continue;
      json::object* first_call = nullptr;
      bool has_signature = false;
      for (json::value& p : content["parts"].get_array()) {
        json::object& part = p.get_object();
        if (Find(part, "functionCall") == nullptr) continue;
        if (first_call == nullptr) first_call = &part;
        if (Find(part, "thoughtSignature") != nullptr) has_signature = true;
      }
      if (first_call != nullptr && !has_signature) {
        (*first_call)["thoughtSignature"] = kSkipSignatureValidator;
      }
    }
  }
  out["contents"] = std::move(contents);
  if (!system.empty()) out["systemInstruction"] = json::object{{"parts", std::move(system)}};
  if (!r.tools.empty()) {
    json::array decls;
    for (const Tool& t : r.tools) {
      json::object d{{"name", t.name}};
      if (!t.description.empty()) d["description"] = t.description;
      if (t.parameters.is_object()) d["parametersJsonSchema"] = t.parameters;
      decls.push_back(std::move(d));
    }
    out["tools"] = json::array{json::object{{"functionDeclarations", std::move(decls)}}};
  }
  json::object fcc;
  switch (r.tool_choice.mode) {
    case ToolChoice::Mode::kAuto:
      fcc["mode"] = "AUTO";
      break;
    case ToolChoice::Mode::kNone:
      fcc["mode"] = "NONE";
      break;
    case ToolChoice::Mode::kRequired:
      fcc["mode"] = "ANY";
      break;
    case ToolChoice::Mode::kTool:
      fcc["mode"] = "ANY";
      fcc["allowedFunctionNames"] = json::array{json::string(r.tool_choice.name)};
      break;
    case ToolChoice::Mode::kUnset:
      break;
  }
  if (!fcc.empty() && !r.tools.empty()) {
    out["toolConfig"] = json::object{{"functionCallingConfig", std::move(fcc)}};
  }
  json::object gc;
  if (r.temperature) gc["temperature"] = *r.temperature;
  if (r.top_p) gc["topP"] = *r.top_p;
  if (r.top_k) gc["topK"] = *r.top_k;
  if (r.n) gc["candidateCount"] = *r.n;
  if (r.max_tokens) gc["maxOutputTokens"] = *r.max_tokens;
  if (!r.stop.empty()) {
    json::array stop;
    for (const std::string& s : r.stop) stop.push_back(json::string(s));
    gc["stopSequences"] = std::move(stop);
  }
  if (r.seed) gc["seed"] = *r.seed;
  if (r.presence_penalty) gc["presencePenalty"] = *r.presence_penalty;
  if (r.frequency_penalty) gc["frequencyPenalty"] = *r.frequency_penalty;
  if (r.format == OutputFormat::kJsonObject || r.format == OutputFormat::kJsonSchema) {
    gc["responseMimeType"] = "application/json";
    if (r.format == OutputFormat::kJsonSchema && !r.schema.is_null()) {
      gc["responseJsonSchema"] = r.schema;
    }
  }
  json::object thinking;
  const bool on = r.thinking == ThinkingMode::kEnabled || r.thinking == ThinkingMode::kAdaptive ||
                  (r.thinking == ThinkingMode::kUnset && !r.effort.empty());
  if (r.thinking == ThinkingMode::kDisabled) {
    thinking["thinkingBudget"] = 0;
  } else if (on) {
    int64_t budget = -1;
    if (r.budget) {
      budget = *r.budget < kMaxThinkingBudget ? *r.budget : kMaxThinkingBudget;
    } else if (!r.effort.empty()) {
      budget = GeminiBudget(r.effort);
    }
    thinking["thinkingBudget"] = budget;
    thinking["includeThoughts"] = r.include_thoughts.value_or(true);
  } else if (r.include_thoughts) {
    thinking["includeThoughts"] = *r.include_thoughts;
  }
  if (!thinking.empty()) gc["thinkingConfig"] = std::move(thinking);
  if (!gc.empty()) out["generationConfig"] = std::move(gc);
  return out;
}

// --- Responses ------------------------------------------------------------------------

absl::StatusOr<Response> ReadResponse(const json::object& body) {
  Response r;
  r.id.assign(GetString(body, "responseId"));
  r.model.assign(GetString(body, "modelVersion"));
  const json::array* candidates = GetArray(body, "candidates");
  if (candidates == nullptr && GetObject(body, "promptFeedback") == nullptr) {
    return absl::InvalidArgumentError("Invalid Gemini response: no 'candidates'");
  }
  PartReader reader(absl::StrCat("call:", r.id.empty() ? Serialize(body) : r.id));
  if (candidates != nullptr) {
    for (const json::value& cv : *candidates) {
      const json::object* c = cv.if_object();
      if (c == nullptr) continue;
      Choice choice;
      if (const json::object* content = GetObject(*c, "content")) {
        if (const json::array* parts = GetArray(*content, "parts")) {
          reader.Read(*parts, &choice.blocks);
        }
      }
      choice.stop = ReadStop(GetString(*c, "finishReason"));
      bool calls = false;
      for (const Block& b : choice.blocks) calls |= b.kind == Kind::kToolCall;
      if (calls && (choice.stop == StopReason::kStop || choice.stop == StopReason::kUnset)) {
        choice.stop = StopReason::kToolCalls;
      }
      r.choices.push_back(std::move(choice));
    }
  }
  if (r.choices.empty()) {
    Choice blocked;
    blocked.stop = StopReason::kContentFilter;
    r.choices.push_back(std::move(blocked));
  }
  if (const json::object* u = GetObject(body, "usageMetadata")) r.usage = ReadUsage(*u);
  return r;
}

json::object WriteResponse(const Response& r, std::string_view model) {
  json::array candidates;
  int index = 0;
  for (const Choice& c : r.choices) {
    json::array parts = PartsJson(c.blocks, false);
    if (parts.empty()) parts.push_back(json::object{{"text", ""}});
    candidates.push_back(
        json::object{{"content", json::object{{"parts", std::move(parts)}, {"role", "model"}}},
                     {"finishReason", StopName(c.stop)},
                     {"index", index++}});
  }
  json::object out{{"candidates", std::move(candidates)}};
  if (r.usage.present) out["usageMetadata"] = UsageJson(r.usage);
  out["modelVersion"] = model;
  out["responseId"] = r.id.empty() ? DeriveId("", model) : r.id;
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

}  // namespace omniroute::translator::gemini

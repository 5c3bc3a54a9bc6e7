// OpenAI Responses: requests, responses and semantic event streams.

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "formats.h"

namespace omniroute::translator::responses {
namespace {

using Kind = Block::Kind;

// --- Reading --------------------------------------------------------------------------

void ReadContent(const json::value& content, std::vector<Block>* out) {
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
    if (type == "input_text" || type == "output_text" || type == "text") {
      out->push_back(Block::Text(std::string(GetString(*p, "text"))));
    } else if (type == "refusal") {
      out->push_back(Block::Text(std::string(GetString(*p, "refusal"))));
    } else if (type == "input_image") {
      if (!HasString(*p, "image_url")) continue;  // file ids: no equivalent
      Block b = MediaFromUrl(GetString(*p, "image_url"));
      std::string_view detail = GetString(*p, "detail");
      if (detail != "auto") b.detail.assign(detail);
      out->push_back(std::move(b));
    } else if (type == "input_file") {
      Block b;
      if (HasString(*p, "file_data")) {
        std::string_view fd = GetString(*p, "file_data");
        b = absl::StartsWith(AV(fd), "data:") ? MediaFromUrl(fd) : Block();
        if (b.kind != Kind::kMedia) {
          b.kind = Kind::kMedia;
          b.mime = "application/pdf";
          b.data.assign(fd);
        }
      } else if (HasString(*p, "file_url")) {
        b = MediaFromUrl(GetString(*p, "file_url"));
      } else {
        continue;
      }
      b.filename.assign(GetString(*p, "filename"));
      out->push_back(std::move(b));
    }
  }
}

Block ReadReasoning(const json::object& item) {
  Block b;
  b.kind = Kind::kThinking;
  std::vector<std::string> texts;
  if (const json::array* summary = GetArray(item, "summary")) {
    for (const json::value& v : *summary) {
      if (const json::object* s = v.if_object()) texts.emplace_back(GetString(*s, "text"));
    }
  }
  if (texts.empty()) {
    if (const json::array* content = GetArray(item, "content")) {
      for (const json::value& v : *content) {
        if (const json::object* s = v.if_object()) texts.emplace_back(GetString(*s, "text"));
      }
    }
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    if (i > 0) b.text.append("\n\n");
    b.text.append(texts[i]);
  }
  DecodeToken(GetString(item, "encrypted_content"), Origin::kOpenAi, &b);
  if (b.origin == Origin::kOpenAi && b.item_id.empty()) b.item_id.assign(GetString(item, "id"));
  return b;
}

Block ReadFunctionCall(const json::object& item) {
  Block b;
  b.kind = Kind::kToolCall;
  b.id.assign(GetString(item, "call_id"));
  if (b.id.empty()) b.id.assign(GetString(item, "id"));
  b.name.assign(GetString(item, "name"));
  b.arguments.assign(GetString(item, "arguments"));
  return b;
}

Usage ReadUsage(const json::object& u) {
  Usage usage;
  usage.present = true;
  usage.input = GetCount(u, "input_tokens");
  usage.output = GetCount(u, "output_tokens");
  if (const json::object* d = GetObject(u, "input_tokens_details")) {
    usage.cached = GetCount(*d, "cached_tokens");
  }
  if (const json::object* d = GetObject(u, "output_tokens_details")) {
    usage.reasoning = GetCount(*d, "reasoning_tokens");
  }
  return usage;
}

// --- Writing --------------------------------------------------------------------------

json::object UsageJson(const Usage& u) {
  return json::object{{"input_tokens", u.input},
                      {"input_tokens_details", json::object{{"cached_tokens", u.cached}}},
                      {"output_tokens", u.output},
                      {"output_tokens_details", json::object{{"reasoning_tokens", u.reasoning}}},
                      {"total_tokens", u.input + u.output}};
}

json::array InputParts(const std::vector<Block>& blocks) {
  json::array parts;
  for (const Block& b : blocks) {
    if (b.kind == Kind::kText) {
      parts.push_back(json::object{{"type", "input_text"}, {"text", b.text}});
    } else if (b.kind == Kind::kMedia) {
      if (absl::StartsWith(b.mime, "image/") || (b.mime.empty() && !b.url.empty())) {
        json::object p{{"type", "input_image"}, {"image_url", MediaUrl(b)}};
        p["detail"] = b.detail.empty() ? std::string("auto") : b.detail;
        parts.push_back(std::move(p));
      } else if (!b.data.empty()) {
        json::object p{{"type", "input_file"}};
        p["filename"] = b.filename.empty() ? std::string("file") : b.filename;
        p["file_data"] = MediaUrl(b);
        parts.push_back(std::move(p));
      } else {
        parts.push_back(json::object{{"type", "input_file"}, {"file_url", b.url}});
      }
    }
  }
  return parts;
}

json::object ReasoningItem(const Block& b, std::string id) {
  json::object item{{"id", b.origin == Origin::kOpenAi && !b.item_id.empty() ? b.item_id : id},
                    {"type", "reasoning"}};
  json::array summary;
  if (!b.text.empty()) summary.push_back(json::object{{"type", "summary_text"}, {"text", b.text}});
  item["summary"] = std::move(summary);
  std::string token = EncodeToken(b, Origin::kOpenAi);
  if (!token.empty()) item["encrypted_content"] = std::move(token);
  return item;
}

json::object MessageItem(std::string id, std::string_view text, std::string_view status) {
  return json::object{
      {"id", std::move(id)},
      {"type", "message"},
      {"status", status},
      {"role", "assistant"},
      {"content", json::array{json::object{
                      {"type", "output_text"}, {"text", text}, {"annotations", json::array()}}}}};
}

json::object FunctionCallItem(std::string id, const Block& b, std::string_view status) {
  return json::object{{"id", std::move(id)},      {"type", "function_call"}, {"status", status},
                      {"arguments", b.arguments}, {"call_id", b.id},         {"name", b.name}};
}

// Output items of a response, in block order.
json::array OutputItems(const std::vector<Block>& blocks, std::string_view seed) {
  json::array out;
  std::string text;
  bool in_text = false;
  auto flush = [&]() {
    if (!in_text) return;
    out.push_back(
        MessageItem(DeriveId("msg_", absl::StrCat(AV(seed), ":", out.size())), text, "completed"));
    text.clear();
    in_text = false;
  };
  for (const Block& b : blocks) {
    switch (b.kind) {
      case Kind::kText:
        text.append(b.text);
        in_text = true;
        break;
      case Kind::kThinking:
      case Kind::kRedacted:
        flush();
        out.push_back(ReasoningItem(b, DeriveId("rs_", absl::StrCat(AV(seed), ":", out.size()))));
        break;
      case Kind::kToolCall: {
        flush();
        Block call = b;
        if (call.arguments.empty()) call.arguments = "{}";
        out.push_back(FunctionCallItem(DeriveId("fc_", absl::StrCat(AV(seed), ":", out.size())),
                                       call, "completed"));
        break;
      }
      default:
        break;
    }
  }
  flush();
  return out;
}

std::string_view Status(StopReason stop) {
  return stop == StopReason::kLength || stop == StopReason::kContentFilter ? "incomplete"
                                                                           : "completed";
}

json::value IncompleteDetails(StopReason stop) {
  if (stop == StopReason::kLength) return json::object{{"reason", "max_output_tokens"}};
  if (stop == StopReason::kContentFilter) return json::object{{"reason", "content_filter"}};
  return nullptr;
}

json::object ResponseObject(std::string_view id, int64_t created, std::string_view model,
                            std::string_view status) {
  return json::object{
      {"id", id},         {"object", "response"},    {"created_at", created},
      {"status", status}, {"error", nullptr},        {"incomplete_details", nullptr},
      {"model", model},   {"output", json::array()}, {"usage", nullptr}};
}

// --- Stream reader --------------------------------------------------------------------

class Reader final : public StreamReader {
 public:
  explicit Reader(StreamSink* sink) : d_(sink) {}

  void Event(std::string_view event, std::string_view data) override {
    auto parsed = ParseObject(data, "event");
    if (!parsed.ok()) return;
    const json::object& e = *parsed;
    std::string_view type = GetString(e, "type");
    if (type.empty()) type = event;
    const int64_t out_index = GetInt(e, "output_index").value_or(-1);
    if (type == "response.created" || type == "response.in_progress") {
      const json::object* resp = GetObject(e, "response");
      if (resp == nullptr || d_.started()) return;
      StreamHead head;
      head.id.assign(GetString(*resp, "id"));
      if (head.id.empty()) head.id = DeriveId("resp_", data);
      head.model.assign(GetString(*resp, "model"));
      head.created = GetInt(*resp, "created_at").value_or(0);
      d_.Start(head);
    } else if (type == "response.output_item.added") {
      const json::object* item = GetObject(e, "item");
      if (item == nullptr) return;
      const std::string_view it = GetString(*item, "type");
      if (it == "reasoning") {
        Block head;
        head.kind = Kind::kThinking;
        items_[out_index] = Item{d_.Open(head), Kind::kThinking};
      } else if (it == "function_call") {
        Block head = ReadFunctionCall(*item);
        head.arguments.clear();
        items_[out_index] = Item{d_.Open(head), Kind::kToolCall};
      }
    } else if (type == "response.output_text.delta" || type == "response.refusal.delta") {
      auto it = items_.find(out_index);
      if (it == items_.end()) {
        Block head;
        head.kind = Kind::kText;
        it = items_.emplace(out_index, Item{d_.Open(head), Kind::kText}).first;
      }
      it->second.has_text = true;
      d_.Delta(it->second.index, GetString(e, "delta"));
    } else if (type == "response.reasoning_summary_text.delta" ||
               type == "response.reasoning_text.delta") {
      auto it = items_.find(out_index);
      if (it == items_.end()) return;
      const int64_t part = GetInt(e, "summary_index").value_or(0);
      if (it->second.has_text && part != it->second.part) d_.Delta(it->second.index, "\n\n");
      it->second.part = part;
      it->second.has_text = true;
      d_.Delta(it->second.index, GetString(e, "delta"));
    } else if (type == "response.function_call_arguments.delta") {
      auto it = items_.find(out_index);
      if (it == items_.end()) return;
      it->second.has_text = true;
      d_.Delta(it->second.index, GetString(e, "delta"));
    } else if (type == "response.output_item.done") {
      const json::object* item = GetObject(e, "item");
      if (item == nullptr) return;
      auto it = items_.find(out_index);
      if (it == items_.end()) {
        // An item that arrives whole, without deltas.
        const std::string_view item_type = GetString(*item, "type");
        Block head;
        if (item_type == "message") {
          head.kind = Kind::kText;
        } else if (item_type == "reasoning") {
          head.kind = Kind::kThinking;
        } else if (item_type == "function_call") {
          head = ReadFunctionCall(*item);
          head.arguments.clear();
        } else {
          return;
        }
        it = items_.emplace(out_index, Item{d_.Open(head), head.kind}).first;
      }
      Item& state = it->second;
      if (state.kind == Kind::kThinking) {
        Block b = ReadReasoning(*item);
        if (!state.has_text) d_.Delta(state.index, b.text);
        d_.Signature(state.index, b);
      } else if (state.kind == Kind::kToolCall && !state.has_text) {
        d_.Delta(state.index, GetString(*item, "arguments"));
      } else if (state.kind == Kind::kText && !state.has_text) {
        std::vector<Block> content;
        if (const json::value* c = Find(*item, "content")) ReadContent(*c, &content);
        d_.Delta(state.index, JoinText(content));
      }
      d_.Close(state.index);
    } else if (type == "response.completed" || type == "response.incomplete") {
      const json::object* resp = GetObject(e, "response");
      Usage usage;
      StopReason stop = StopReason::kUnset;
      if (resp != nullptr) {
        if (const json::object* u = GetObject(*resp, "usage")) usage = ReadUsage(*u);
        if (GetString(*resp, "status") == "incomplete") {
          const json::object* details = GetObject(*resp, "incomplete_details");
          stop = details != nullptr && GetString(*details, "reason") == "content_filter"
                     ? StopReason::kContentFilter
                     : StopReason::kLength;
        }
      }
      d_.Finish(stop, "", usage);
    } else if (type == "response.failed") {
      const json::object* resp = GetObject(e, "response");
      const json::object* err = resp ? GetObject(*resp, "error") : nullptr;
      d_.Error(err ? GetString(*err, "code") : "api_error",
               err ? GetString(*err, "message") : "response failed");
    } else if (type == "error") {
      std::string_view code = GetString(e, "code");
      d_.Error(code.empty() ? "api_error" : code, GetString(e, "message"));
    }
  }

  void End() override { d_.End(StopReason::kUnset, Usage{}); }

 private:
  struct Item {
    int index = -1;
    Kind kind = Kind::kText;
    bool has_text = false;
    int64_t part = 0;
  };

  SinkDriver d_;
  std::map<int64_t, Item> items_;
};

// --- Stream writer --------------------------------------------------------------------

class Writer final : public StreamSink {
 public:
  Writer(std::string* out, std::string model, int64_t now)
      : out_(out), model_(std::move(model)), now_(now) {}

  void Start(const StreamHead& head) override {
    id_ = head.id.empty() ? DeriveId("resp_", model_) : head.id;
    created_ = head.created > 0 ? head.created : now_ > 0 ? now_ : NowSeconds();
    Emit("response.created",
         json::object{{"response", ResponseObject(id_, created_, model_, "in_progress")}});
    Emit("response.in_progress",
         json::object{{"response", ResponseObject(id_, created_, model_, "in_progress")}});
  }

  void BlockStart(int index, const Block& head) override {
    State& s = blocks_[index];
    s.head = head;
    s.output_index = next_output_++;
    const std::string seed = absl::StrCat(id_, ":", s.output_index);
    switch (head.kind) {
      case Kind::kText:
        s.item_id = DeriveId("msg_", seed);
        Emit("response.output_item.added",
             json::object{{"output_index", s.output_index},
                          {"item", json::object{{"id", s.item_id},
                                                {"type", "message"},
                                                {"status", "in_progress"},
                                                {"role", "assistant"},
                                                {"content", json::array()}}}});
        Emit("response.content_part.added",
             json::object{{"item_id", s.item_id},
                          {"output_index", s.output_index},
                          {"content_index", 0},
                          {"part", json::object{{"type", "output_text"},
                                                {"text", ""},
                                                {"annotations", json::array()}}}});
        break;
      case Kind::kThinking:
      case Kind::kRedacted:
        s.item_id = DeriveId("rs_", seed);
        Emit("response.output_item.added",
             json::object{{"output_index", s.output_index},
                          {"item", json::object{{"id", s.item_id},
                                                {"type", "reasoning"},
                                                {"summary", json::array()}}}});
        break;
      case Kind::kToolCall:
        s.item_id = DeriveId("fc_", seed);
        Emit("response.output_item.added",
             json::object{{"output_index", s.output_index},
                          {"item", FunctionCallItem(s.item_id, head, "in_progress")}});
        break;
      default:
        break;
    }
  }

  void Delta(int index, std::string_view text) override {
    State& s = blocks_[index];
    s.head.text.append(text);
    switch (s.head.kind) {
      case Kind::kText:
        Emit("response.output_text.delta", json::object{{"item_id", s.item_id},
                                                        {"output_index", s.output_index},
                                                        {"content_index", 0},
                                                        {"delta", text},
                                                        {"logprobs", json::array()}});
        break;
      case Kind::kThinking:
        if (!s.part_open) {
          s.part_open = true;
          Emit("response.reasoning_summary_part.added",
               json::object{{"item_id", s.item_id},
                            {"output_index", s.output_index},
                            {"summary_index", 0},
                            {"part", json::object{{"type", "summary_text"}, {"text", ""}}}});
        }
        Emit("response.reasoning_summary_text.delta", json::object{{"item_id", s.item_id},
                                                                   {"output_index", s.output_index},
                                                                   {"summary_index", 0},
                                                                   {"delta", text}});
        break;
      case Kind::kToolCall:
        Emit("response.function_call_arguments.delta",
             json::object{
                 {"item_id", s.item_id}, {"output_index", s.output_index}, {"delta", text}});
        break;
      default:
        break;
    }
  }

  void Signature(int index, const Block& token) override {
    State& s = blocks_[index];
    s.head.kind = token.kind;
    s.head.signature = token.signature;
    s.head.data = token.data;
    s.head.origin = token.origin;
    s.head.item_id = token.item_id;
  }

  void BlockStop(int index) override {
    State& s = blocks_[index];
    json::object item;
    switch (s.head.kind) {
      case Kind::kText:
        Emit("response.output_text.done", json::object{{"item_id", s.item_id},
                                                       {"output_index", s.output_index},
                                                       {"content_index", 0},
                                                       {"text", s.head.text},
                                                       {"logprobs", json::array()}});
        Emit("response.content_part.done",
             json::object{{"item_id", s.item_id},
                          {"output_index", s.output_index},
                          {"content_index", 0},
                          {"part", json::object{{"type", "output_text"},
                                                {"text", s.head.text},
                                                {"annotations", json::array()}}}});
        item = MessageItem(s.item_id, s.head.text, "completed");
        break;
      case Kind::kThinking:
      case Kind::kRedacted:
        if (s.part_open) {
          Emit("response.reasoning_summary_text.done",
               json::object{{"item_id", s.item_id},
                            {"output_index", s.output_index},
                            {"summary_index", 0},
                            {"text", s.head.text}});
          Emit("response.reasoning_summary_part.done",
               json::object{
                   {"item_id", s.item_id},
                   {"output_index", s.output_index},
                   {"summary_index", 0},
                   {"part", json::object{{"type", "summary_text"}, {"text", s.head.text}}}});
        }
        item = ReasoningItem(s.head, s.item_id);
        break;
      case Kind::kToolCall: {
        Block call = s.head;
        call.arguments = call.text.empty() ? std::string("{}") : call.text;
        if (call.text.empty()) {
          Emit("response.function_call_arguments.delta",
               json::object{
                   {"item_id", s.item_id}, {"output_index", s.output_index}, {"delta", "{}"}});
        }
        Emit("response.function_call_arguments.done", json::object{{"item_id", s.item_id},
                                                                   {"output_index", s.output_index},
                                                                   {"arguments", call.arguments}});
        item = FunctionCallItem(s.item_id, call, "completed");
        break;
      }
      default:
        return;
    }
    output_.push_back(item);
    Emit("response.output_item.done",
         json::object{{"output_index", s.output_index}, {"item", std::move(item)}});
  }

  void Finish(StopReason stop, std::string_view, const Usage& usage) override {
    const std::string_view status = Status(stop);
    json::object resp = ResponseObject(id_, created_, model_, status);
    resp["incomplete_details"] = IncompleteDetails(stop);
    resp["output"] = std::move(output_);
    if (usage.present) resp["usage"] = UsageJson(usage);
    Emit(status == "completed" ? "response.completed" : "response.incomplete",
         json::object{{"response", std::move(resp)}});
  }

  void Error(std::string_view type, std::string_view message) override {
    json::object resp = ResponseObject(id_, created_, model_, "failed");
    resp["error"] = json::object{{"code", type}, {"message", message}};
    resp["output"] = std::move(output_);
    Emit("response.failed", json::object{{"response", std::move(resp)}});
  }

 private:
  struct State {
    Block head;  // text accumulates the block's text, reasoning or arguments
    int output_index = 0;
    std::string item_id;
    bool part_open = false;
  };

  void Emit(std::string_view type, json::object fields) {
    json::object data{{"type", type}};
    for (json::key_value_pair& kv : fields) data[kv.key()] = std::move(kv.value());
    data["sequence_number"] = seq_++;
    AppendSse(out_, type, data);
  }

  std::string* out_;
  std::string model_;
  int64_t now_;
  std::string id_;
  int64_t created_ = 0;
  std::map<int, State> blocks_;
  int next_output_ = 0;
  int64_t seq_ = 0;
  json::array output_;
};

}  // namespace

// --- Requests -------------------------------------------------------------------------

absl::StatusOr<Request> ReadRequest(const json::object& body) {
  Request r;
  if (std::string_view prev = GetString(body, "previous_response_id"); !prev.empty()) {
    return absl::InvalidArgumentError(
        "previous_response_id cannot be honoured by this provider: send the whole "
        "conversation in 'input'");
  }
  if (std::string_view instructions = GetString(body, "instructions"); !instructions.empty()) {
    Message m;
    m.role = Role::kSystem;
    m.blocks.push_back(Block::Text(std::string(instructions)));
    r.messages.push_back(std::move(m));
  }
  const json::value* input = Find(body, "input");
  if (input == nullptr || (!input->is_string() && !input->is_array())) {
    return absl::InvalidArgumentError("Invalid request: 'input' must be a string or an array");
  }
  if (input->is_string()) {
    Message m;
    m.role = Role::kUser;
    m.blocks.push_back(Block::Text(std::string(AsString(*input))));
    r.messages.push_back(std::move(m));
  }
  // Items of one assistant turn (reasoning, message, calls) form one message; so do the
  // outputs of the calls that answer it.
  auto turn = [&r](Role role) -> Message& {
    if (r.messages.empty() || r.messages.back().role != role) {
      Message m;
      m.role = role;
      r.messages.push_back(std::move(m));
    }
    return r.messages.back();
  };
  bool user_open = false;  // the last user message holds only tool results so far
  if (const json::array* items = input->if_array()) {
    for (const json::value& iv : *items) {
      const json::object* item = iv.if_object();
      if (item == nullptr) {
        return absl::InvalidArgumentError("Invalid request: each input item must be an object");
      }
      std::string_view type = GetString(*item, "type");
      if (type.empty() && Find(*item, "role") != nullptr) type = "message";
      if (type == "message") {
        const std::string_view role = GetString(*item, "role");
        std::vector<Block> blocks;
        if (const json::value* c = Find(*item, "content")) ReadContent(*c, &blocks);
        if (role == "assistant") {
          Message& m = turn(Role::kAssistant);
          for (Block& b : blocks) m.blocks.push_back(std::move(b));
        } else {
          Message m;
          m.role = role == "system"      ? Role::kSystem
                   : role == "developer" ? Role::kDeveloper
                                         : Role::kUser;
          if (m.role == Role::kUser && user_open) {
            for (Block& b : blocks) r.messages.back().blocks.push_back(std::move(b));
          } else {
            m.blocks = std::move(blocks);
            r.messages.push_back(std::move(m));
          }
        }
        user_open = false;
      } else if (type == "reasoning") {
        turn(Role::kAssistant).blocks.push_back(ReadReasoning(*item));
        user_open = false;
      } else if (type == "function_call") {
        turn(Role::kAssistant).blocks.push_back(ReadFunctionCall(*item));
        user_open = false;
      } else if (type == "function_call_output") {
        Block b;
        b.kind = Kind::kToolResult;
        b.id.assign(GetString(*item, "call_id"));
        b.name = FindToolName(r.messages, b.id);
        if (const json::value* o = Find(*item, "output")) ReadContent(*o, &b.content);
        if (!user_open) {
          Message m;
          m.role = Role::kUser;
          r.messages.push_back(std::move(m));
          user_open = true;
        }
        r.messages.back().blocks.push_back(std::move(b));
      }
      // Built-in tool calls, custom tools and item references have no equivalent.
    }
  }
  r.max_tokens = GetInt(body, "max_output_tokens");
  r.temperature = GetNumber(body, "temperature");
  r.top_p = GetNumber(body, "top_p");
  if (const json::array* tools = GetArray(body, "tools")) {
    for (const json::value& tv : *tools) {
      const json::object* t = tv.if_object();
      if (t == nullptr || GetString(*t, "type") != "function") continue;
      Tool tool;
      tool.name.assign(GetString(*t, "name"));
      tool.description.assign(GetString(*t, "description"));
      if (const json::value* p = Find(*t, "parameters")) tool.parameters = *p;
      tool.strict = GetBool(*t, "strict");
      r.tools.push_back(std::move(tool));
    }
  }
  if (const json::value* tc = Find(body, "tool_choice")) {
    const std::string_view s = AsString(*tc);
    if (s == "auto") r.tool_choice.mode = ToolChoice::Mode::kAuto;
    if (s == "none") r.tool_choice.mode = ToolChoice::Mode::kNone;
    if (s == "required") r.tool_choice.mode = ToolChoice::Mode::kRequired;
    if (const json::object* o = tc->if_object(); o != nullptr && HasString(*o, "name")) {
      r.tool_choice.mode = ToolChoice::Mode::kTool;
      r.tool_choice.name.assign(GetString(*o, "name"));
    }
  }
  r.parallel_tool_calls = GetBool(body, "parallel_tool_calls");
  if (const json::object* reasoning = GetObject(body, "reasoning")) {
    const std::string_view effort = GetString(*reasoning, "effort");
    if (effort == "none") {
      r.thinking = ThinkingMode::kDisabled;
    } else if (!effort.empty()) {
      r.thinking = ThinkingMode::kEnabled;
      r.effort.assign(effort);
    }
    const std::string_view summary = GetString(*reasoning, "summary");
    if (!summary.empty()) r.include_thoughts = summary != "none";
  }
  if (const json::object* text = GetObject(body, "text")) {
    if (const json::object* f = GetObject(*text, "format")) {
      const std::string_view type = GetString(*f, "type");
      if (type == "text") r.format = OutputFormat::kText;
      if (type == "json_object") r.format = OutputFormat::kJsonObject;
      if (type == "json_schema") {
        r.format = OutputFormat::kJsonSchema;
        r.schema_name.assign(GetString(*f, "name"));
        r.schema_description.assign(GetString(*f, "description"));
        if (const json::value* s = Find(*f, "schema")) r.schema = *s;
        r.schema_strict = GetBool(*f, "strict");
      }
    }
  }
  r.user.assign(GetString(body, "user"));
  if (r.user.empty()) r.user.assign(GetString(body, "safety_identifier"));
  return r;
}

json::object WriteRequest(const Request& r, std::string_view model, bool stream) {
  json::object out;
  out["model"] = model;
  std::string instructions;
  size_t first = 0;
  for (; first < r.messages.size() && r.messages[first].role == Role::kSystem; ++first) {
    if (!instructions.empty()) instructions.append("\n\n");
    instructions.append(JoinText(r.messages[first].blocks, "\n\n"));
  }
  if (!instructions.empty()) out["instructions"] = instructions;
  json::array input;
  for (size_t i = first; i < r.messages.size(); ++i) {
    const Message& m = r.messages[i];
    if (m.role == Role::kSystem || m.role == Role::kDeveloper) {
      input.push_back(json::object{{"type", "message"},
                                   {"role", m.role == Role::kSystem ? "system" : "developer"},
                                   {"content", InputParts(m.blocks)}});
      continue;
    }
    if (m.role == Role::kUser) {
      std::vector<Block> rest;
      for (const Block& b : m.blocks) {
        if (b.kind != Kind::kToolResult) {
          rest.push_back(b);
          continue;
        }
        input.push_back(json::object{{"type", "function_call_output"},
                                     {"call_id", b.id},
                                     {"output", JoinText(b.content, "\n\n")}});
      }
      if (!rest.empty()) {
        input.push_back(
            json::object{{"type", "message"}, {"role", "user"}, {"content", InputParts(rest)}});
      }
      continue;
    }
    // Assistant turn: reasoning OpenAI issued, text, calls.
    std::string text;
    auto flush = [&]() {
      if (text.empty()) return;
      input.push_back(json::object{
          {"type", "message"},
          {"role", "assistant"},
          {"content", json::array{json::object{{"type", "output_text"}, {"text", text}}}}});
      text.clear();
    };
    for (const Block& b : m.blocks) {
      if (b.kind == Kind::kText) {
        text.append(b.text);
      } else if (b.kind == Kind::kThinking && b.origin == Origin::kOpenAi && !b.signature.empty()) {
        flush();
        json::object item{{"type", "reasoning"}};
        if (!b.item_id.empty()) item["id"] = b.item_id;
        json::array summary;
        if (!b.text.empty()) {
          summary.push_back(json::object{{"type", "summary_text"}, {"text", b.text}});
        }
        item["summary"] = std::move(summary);
        item["encrypted_content"] = b.signature;
        input.push_back(std::move(item));
      } else if (b.kind == Kind::kToolCall) {
        flush();
        input.push_back(
            json::object{{"type", "function_call"},
                         {"call_id", b.id},
                         {"name", b.name},
                         {"arguments", b.arguments.empty() ? std::string("{}") : b.arguments}});
      }
    }
    flush();
  }
  out["input"] = std::move(input);
  if (!r.tools.empty()) {
    json::array tools;
    for (const Tool& t : r.tools) {
      json::object tool{{"type", "function"}, {"name", t.name}};
      if (!t.description.empty()) tool["description"] = t.description;
      tool["parameters"] =
          t.parameters.is_null()
              ? json::value(json::object{{"type", "object"}, {"properties", json::object()}})
              : t.parameters;
      // Responses makes function tools strict unless told otherwise.
      tool["strict"] = t.strict.value_or(false);
      tools.push_back(std::move(tool));
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
      out["tool_choice"] = json::object{{"type", "function"}, {"name", r.tool_choice.name}};
      break;
    case ToolChoice::Mode::kUnset:
      break;
  }
  if (r.parallel_tool_calls && !r.tools.empty())
    out["parallel_tool_calls"] = *r.parallel_tool_calls;
  if (r.max_tokens) out["max_output_tokens"] = *r.max_tokens;
  // OpenAI's reasoning models refuse sampling parameters, GPT-4 ones reasoning effort.
  if (r.temperature && !IsOpenAiReasoningModel(model)) out["temperature"] = *r.temperature;
  if (r.top_p && !IsOpenAiReasoningModel(model)) out["top_p"] = *r.top_p;
  const bool thinking = (r.thinking == ThinkingMode::kEnabled ||
                         r.thinking == ThinkingMode::kAdaptive ||
                         (r.thinking == ThinkingMode::kUnset && !r.effort.empty())) &&
                        !IsOpenAiNonReasoningModel(model);
  if (thinking) {
    std::string effort = r.effort;
    if (effort == "max" || effort == "xhigh") effort = "high";
    if (effort.empty()) effort = r.budget ? EffortForBudget(*r.budget) : "medium";
    json::object reasoning{{"effort", effort}};
    if (r.include_thoughts.value_or(true)) reasoning["summary"] = "auto";
    out["reasoning"] = std::move(reasoning);
  }
  switch (r.format) {
    case OutputFormat::kJsonObject:
      out["text"] = json::object{{"format", json::object{{"type", "json_object"}}}};
      break;
    case OutputFormat::kJsonSchema: {
      json::object f{{"type", "json_schema"},
                     {"name", r.schema_name.empty() ? std::string("response") : r.schema_name}};
      if (!r.schema_description.empty()) f["description"] = r.schema_description;
      f["schema"] = r.schema;
      if (r.schema_strict) f["strict"] = *r.schema_strict;
      out["text"] = json::object{{"format", std::move(f)}};
      break;
    }
    default:
      break;
  }
  // Stateless: the gateway sends whole conversations, and ChatGPT's backend refuses storage.
  out["store"] = false;
  if (thinking) out["include"] = json::array{"reasoning.encrypted_content"};
  if (stream) out["stream"] = true;
  if (!r.user.empty()) out["user"] = r.user;
  return out;
}

// --- Responses ------------------------------------------------------------------------

absl::StatusOr<Response> ReadResponse(const json::object& body) {
  Response r;
  r.id.assign(GetString(body, "id"));
  r.model.assign(GetString(body, "model"));
  r.created = GetInt(body, "created_at").value_or(0);
  const json::array* output = GetArray(body, "output");
  if (output == nullptr) {
    return absl::InvalidArgumentError("Invalid response object: 'output' must be an array");
  }
  Choice c;
  for (const json::value& iv : *output) {
    const json::object* item = iv.if_object();
    if (item == nullptr) continue;
    const std::string_view type = GetString(*item, "type");
    if (type == "reasoning") {
      c.blocks.push_back(ReadReasoning(*item));
    } else if (type == "message") {
      if (const json::value* content = Find(*item, "content")) ReadContent(*content, &c.blocks);
    } else if (type == "function_call") {
      c.blocks.push_back(ReadFunctionCall(*item));
    }
  }
  bool calls = false;
  for (const Block& b : c.blocks) calls |= b.kind == Kind::kToolCall;
  c.stop = calls ? StopReason::kToolCalls : StopReason::kStop;
  if (GetString(body, "status") == "incomplete") {
    const json::object* details = GetObject(body, "incomplete_details");
    c.stop = details != nullptr && GetString(*details, "reason") == "content_filter"
                 ? StopReason::kContentFilter
                 : StopReason::kLength;
  }
  r.choices.push_back(std::move(c));
  if (const json::object* u = GetObject(body, "usage")) r.usage = ReadUsage(*u);
  return r;
}

json::object WriteResponse(const Response& r, std::string_view model) {
  static const Choice kEmpty;
  const Choice& c = r.choices.empty() ? kEmpty : r.choices.front();
  const std::string id = r.id.empty() ? DeriveId("resp_", model) : r.id;
  json::object out =
      ResponseObject(id, r.created > 0 ? r.created : NowSeconds(), model, Status(c.stop));
  out["incomplete_details"] = IncompleteDetails(c.stop);
  out["output"] = OutputItems(c.blocks, id);
  if (r.usage.present) out["usage"] = UsageJson(r.usage);
  return out;
}

// --- Streams --------------------------------------------------------------------------

std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink) {
  return std::make_unique<Reader>(sink);
}

std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options) {
  return std::make_unique<Writer>(out, std::move(model), options.created);
}

}  // namespace omniroute::translator::responses

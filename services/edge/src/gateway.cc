#include "gateway.h"

#include <arpa/inet.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace omniroute::edge {
namespace json = boost::json;

absl::StatusOr<ChatRequestInfo> ParseChatRequest(std::string_view body) {
  ChatRequestInfo info;
  json::error_code ec;
  json::parse_options opts;
  opts.max_depth = 256;
  info.body = json::parse(body, ec, {}, opts);
  if (ec) {
    return absl::InvalidArgumentError(
        "We could not parse the JSON body of your request. (HINT: This likely means you "
        "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
        "what was sent was not valid JSON.)");
  }
  json::object* obj = info.body.if_object();
  if (!obj) return absl::InvalidArgumentError("The request body must be a JSON object.");
  const json::value* model = obj->if_contains("model");
  if (!model || model->is_null()) {
    return absl::InvalidArgumentError("you must provide a model parameter");
  }
  if (!model->is_string()) return absl::InvalidArgumentError("model must be a string");
  info.model = std::string(model->get_string());
  if (const json::value* stream = obj->if_contains("stream")) {
    if (stream->is_bool()) {
      info.stream = stream->get_bool();
    } else if (!stream->is_null()) {
      return absl::InvalidArgumentError("stream must be a boolean");
    }
  }
  return info;
}

absl::StatusOr<ChatRequestInfo> ParseGeminiRequest(std::string_view body, std::string model,
                                                   bool stream) {
  ChatRequestInfo info;
  json::error_code ec;
  json::parse_options opts;
  opts.max_depth = 256;
  info.body = json::parse(body, ec, {}, opts);
  if (ec) return absl::InvalidArgumentError("Invalid JSON payload received.");
  if (!info.body.is_object()) {
    return absl::InvalidArgumentError("Invalid JSON payload received: expected an object.");
  }
  if (model.empty()) return absl::InvalidArgumentError("The model is missing from the path.");
  info.model = std::move(model);
  info.stream = stream;
  return info;
}

bool ParseGeminiPath(std::string_view path, std::string* model, std::string* method) {
  std::string_view rest;
  if (absl::StartsWith(AV(path), "/v1beta/models/")) {
    rest = path.substr(15);
  } else if (absl::StartsWith(AV(path), "/v1/models/")) {
    rest = path.substr(11);
  } else {
    return false;
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  *model = std::string(rest.substr(0, colon));
  *method = std::string(rest.substr(colon + 1));
  return true;
}

std::string RewriteModel(ChatRequestInfo& info, std::string_view upstream_model) {
  json::object& obj = info.body.as_object();
  obj["model"] = upstream_model;
  return json::serialize(info.body);
}

namespace {

int64_t Int(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v) return 0;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->get_double());
  return 0;
}

const json::object* Obj(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v ? v->if_object() : nullptr;
}

}  // namespace

absl::StatusOr<std::string> CompletionsRequestToChat(std::string_view body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return absl::InvalidArgumentError("We could not parse the JSON body of your request.");
  }
  json::object& in = v.as_object();
  std::string prompt;
  if (const json::value* p = in.if_contains("prompt")) {
    if (p->is_string()) {
      prompt = std::string(p->get_string());
    } else if (const json::array* parts = p->if_array()) {
      for (const json::value& part : *parts) {
        if (!part.is_string()) {
          return absl::InvalidArgumentError(
              "prompt: only strings are supported (token arrays cannot be sent to a chat model)");
        }
        prompt += std::string_view(part.get_string());
      }
    } else if (!p->is_null()) {
      return absl::InvalidArgumentError("prompt must be a string or an array of strings");
    }
  }
  json::object out;
  for (const auto& [key, value] : in) {
    // Fields chat has no place for.
    if (key == "prompt" || key == "suffix" || key == "echo" || key == "best_of" ||
        key == "logprobs") {
      continue;
    }
    out[key] = value;
  }
  out["messages"] = json::array{json::object{{"role", "user"}, {"content", prompt}}};
  return json::serialize(out);
}

namespace {

// A chat.completion(.chunk) object as a text_completion one.
json::object ToTextCompletion(const json::object& chat, bool chunk) {
  json::object out;
  std::string id = "cmpl-";
  if (const json::value* v = chat.if_contains("id"); v && v->is_string()) {
    std::string_view chat_id = v->get_string();
    if (absl::StartsWith(AV(chat_id), "chatcmpl-")) chat_id.remove_prefix(9);
    id.append(chat_id);
  }
  out["id"] = id;
  out["object"] = "text_completion";
  if (const json::value* v = chat.if_contains("created")) out["created"] = *v;
  if (const json::value* v = chat.if_contains("model")) out["model"] = *v;
  json::array choices;
  if (const json::value* v = chat.if_contains("choices"); v && v->is_array()) {
    for (const json::value& c : v->get_array()) {
      const json::object* choice = c.if_object();
      if (!choice) continue;
      const json::object* msg = Obj(*choice, chunk ? "delta" : "message");
      std::string text;
      if (msg) {
        if (const json::value* t = msg->if_contains("content"); t && t->is_string()) {
          text = std::string(std::string_view(t->get_string()));
        }
      }
      json::object tc{{"text", text}, {"index", Int(*choice, "index")}, {"logprobs", nullptr}};
      const json::value* finish = choice->if_contains("finish_reason");
      tc["finish_reason"] = finish ? *finish : json::value(nullptr);
      choices.push_back(std::move(tc));
    }
  }
  out["choices"] = std::move(choices);
  if (const json::value* v = chat.if_contains("usage"); v && !v->is_null()) out["usage"] = *v;
  return out;
}

}  // namespace

std::string ChatResponseToCompletions(std::string_view chat_body) {
  json::error_code ec;
  json::value v = json::parse(chat_body, ec);
  if (ec || !v.is_object()) return std::string(chat_body);
  return json::serialize(ToTextCompletion(v.as_object(), /*chunk=*/false));
}

std::string ChatChunkToCompletions(std::string_view chunk_data) {
  json::error_code ec;
  json::value v = json::parse(chunk_data, ec);
  if (ec || !v.is_object() || v.as_object().contains("error")) return std::string(chunk_data);
  return json::serialize(ToTextCompletion(v.as_object(), /*chunk=*/true));
}

std::string UpstreamErrorMessage(std::string_view body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return {};
  const json::object* root = v.if_object();
  if (!root) {
    // Gemini may answer a one-element array.
    if (const json::array* a = v.if_array(); a && !a->empty()) root = (*a)[0].if_object();
  }
  if (!root) return {};
  const json::object* err = Obj(*root, "error");
  const json::object* holder = err ? err : root;
  if (const json::value* m = holder->if_contains("message"); m && m->is_string()) {
    return std::string(std::string_view(m->get_string()).substr(0, 1000));
  }
  return {};
}

int64_t MaxOutputTokens(const ChatRequestInfo& info) {
  const json::object* root = info.body.if_object();
  if (!root) return 0;
  for (std::string_view key : {"max_completion_tokens", "max_tokens", "max_output_tokens"}) {
    if (int64_t v = Int(*root, key); v > 0) return v;
  }
  if (const json::object* gen = Obj(*root, "generationConfig")) {
    return std::max<int64_t>(0, Int(*gen, "maxOutputTokens"));
  }
  return 0;
}

namespace {

size_t SkipSpace(std::string_view text, size_t i) {
  while (i < text.size() &&
         (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t')) {
    ++i;
  }
  return i;
}

// The end (one past the closing quote) of the JSON string whose opening quote is at `i`;
// npos when it is not terminated. `escaped` tells whether it holds a backslash.
size_t StringEnd(std::string_view text, size_t i, bool* escaped) {
  for (++i; i < text.size(); ++i) {
    if (text[i] == '\\') {
      *escaped = true;
      ++i;
    } else if (text[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// The usage object of a provider answer, as text: the value of the member `key` of the
// top-level object, or else of the object in the top-level member `parent` (when given).
// One pass that follows only strings and nesting — much cheaper than parsing the answer,
// which is read on every request for these few numbers. `ok` turns false when the text is
// not balanced JSON.
std::string_view FindUsageObject(std::string_view text, std::string_view key,
                                 std::string_view parent, bool* ok) {
  size_t found_begin = std::string_view::npos;  // the '{' of the best match so far
  size_t found_end = std::string_view::npos;    // one past its '}', once seen
  int found_depth = 3;                          // the nesting of its member (1 or 2)
  int depth = 0;
  std::string_view member;  // the last member name seen at depth 1
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '"') {
      bool escaped = false;
      const size_t end = StringEnd(text, i, &escaped);
      if (end == std::string_view::npos) break;
      const std::string_view name = text.substr(i + 1, end - i - 2);
      i = end;
      if (escaped || depth < 1 || depth > 2) continue;
      size_t j = SkipSpace(text, i);
      if (j >= text.size() || text[j] != ':') continue;  // a value, not a member name
      if (depth == 1) member = name;
      if (name != key || depth >= found_depth) continue;
      if (depth == 2 && (parent.empty() || member != parent)) continue;
      j = SkipSpace(text, j + 1);
      if (j >= text.size() || text[j] != '{') continue;
      found_begin = j;
      found_end = std::string_view::npos;
      found_depth = depth;
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth < 0) break;
      // The matched object closes when the nesting is back at its member's.
      if (depth == found_depth && found_end == std::string_view::npos &&
          found_begin != std::string_view::npos && i > found_begin) {
        found_end = i + 1;
      }
    }
    ++i;
  }
  *ok = depth == 0 && i >= text.size();
  if (!*ok || found_end == std::string_view::npos) return {};
  return text.substr(found_begin, found_end - found_begin);
}

}  // namespace

bool ExtractUsage(Format format, std::string_view text, TokenUsage* usage) {
  std::string_view key = "usage";
  std::string_view parent;
  if (format == common::v1::FORMAT_ANTHROPIC) {
    parent = "message";  // message_start carries {"message":{"usage":..}}
  } else if (format == common::v1::FORMAT_OPENAI_RESPONSES) {
    parent = "response";  // response.completed carries {"response":{"usage":..}}
  } else if (format == common::v1::FORMAT_GEMINI) {
    key = "usageMetadata";
  }
  bool ok = true;
  const std::string_view found = FindUsageObject(text, key, parent, &ok);
  if (!ok) return false;
  if (found.empty()) return true;
  // The small object's tree lives in a stack buffer, freed at once.
  unsigned char scratch[2048];
  json::monotonic_resource arena(scratch, sizeof scratch);
  json::error_code ec;
  json::value v = json::parse(found, ec, &arena);
  if (ec) return false;
  const json::object* u = v.if_object();
  if (!u) return true;
  switch (format) {
    case common::v1::FORMAT_ANTHROPIC: {
      const int64_t cache_read = Int(*u, "cache_read_input_tokens");
      const int64_t cache_write = Int(*u, "cache_creation_input_tokens");
      if (u->contains("input_tokens")) {
        usage->input = Int(*u, "input_tokens") + cache_read + cache_write;
        usage->cached = cache_read;
        usage->cache_creation = cache_write;
      }
      if (u->contains("output_tokens")) usage->output = Int(*u, "output_tokens");
      break;
    }
    case common::v1::FORMAT_GEMINI:
      usage->input = Int(*u, "promptTokenCount");
      usage->reasoning = Int(*u, "thoughtsTokenCount");
      usage->output = Int(*u, "candidatesTokenCount") + usage->reasoning;
      usage->cached = Int(*u, "cachedContentTokenCount");
      break;
    case common::v1::FORMAT_OPENAI_RESPONSES:
      usage->input = Int(*u, "input_tokens");
      usage->output = Int(*u, "output_tokens");
      if (const json::object* d = Obj(*u, "input_tokens_details")) {
        usage->cached = Int(*d, "cached_tokens");
      }
      if (const json::object* d = Obj(*u, "output_tokens_details")) {
        usage->reasoning = Int(*d, "reasoning_tokens");
      }
      break;
    default:
      usage->input = Int(*u, "prompt_tokens");
      usage->output = Int(*u, "completion_tokens");
      if (const json::object* d = Obj(*u, "prompt_tokens_details")) {
        usage->cached = Int(*d, "cached_tokens");
      }
      if (const json::object* d = Obj(*u, "completion_tokens_details")) {
        usage->reasoning = Int(*d, "reasoning_tokens");
      }
      break;
  }
  usage->present = true;
  return true;
}

std::string_view PresentedKey(std::string_view authorization, std::string_view x_api_key,
                              std::string_view x_goog_api_key, std::string_view query) {
  authorization = SV(absl::StripAsciiWhitespace(AV(authorization)));
  if (authorization.size() > 7 && absl::StartsWithIgnoreCase(AV(authorization), "bearer ")) {
    return SV(absl::StripAsciiWhitespace(AV(authorization.substr(7))));
  }
  if (!x_api_key.empty()) return SV(absl::StripAsciiWhitespace(AV(x_api_key)));
  if (!x_goog_api_key.empty()) return SV(absl::StripAsciiWhitespace(AV(x_goog_api_key)));
  return QueryParam(query, "key");
}

std::string_view QueryParam(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name) {
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return {};
}

std::string NormalizePath(std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  while (absl::StartsWith(AV(path), "/v1/v1/") || path == "/v1/v1") path.remove_prefix(3);
  std::string out(path);
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  if (out == "/chat/completions" || out == "/models" || out == "/completions" ||
      out == "/responses" || out == "/messages" || absl::StartsWith(AV(out), "/models/") ||
      absl::StartsWith(AV(out), "/responses/") || absl::StartsWith(AV(out), "/messages/")) {
    out.insert(0, "/v1");
  }
  return out;
}

namespace {

std::string RandomHexDigits(size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n, '0');
  uint64_t bits = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i % 16 == 0) bits = rng();
    out[i] = kDigits[bits & 15];
    bits >>= 4;
  }
  return out;
}

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string ChildTraceparent(std::string_view incoming) {
  // version "-" trace-id (32) "-" parent-id (16) "-" flags (2)
  if (incoming.size() >= 55 && incoming[2] == '-' && incoming[35] == '-' &&
      incoming[52] == '-' && IsLowerHex(incoming.substr(0, 2)) &&
      IsLowerHex(incoming.substr(3, 32)) && IsLowerHex(incoming.substr(53, 2)) &&
      incoming.substr(0, 2) != "ff" && incoming.substr(3, 32) != std::string(32, '0')) {
    return absl::StrCat("00-", AV(incoming.substr(3, 32)), "-", RandomHexDigits(16), "-",
                        AV(incoming.substr(53, 2)));
  }
  std::string trace = RandomHexDigits(32);
  if (trace == std::string(32, '0')) trace[31] = '1';
  return absl::StrCat("00-", trace, "-", RandomHexDigits(16), "-01");
}

std::string NewRequestId() {
  // The time in milliseconds (11 hex digits), then 52 random bits: ids sort by time, so the
  // usage store's index on them grows at one end instead of splitting pages everywhere.
  const uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  std::string id = "req_";
  id.resize(4 + 11);
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 11; ++i) id[4 + 10 - i] = kDigits[(ms >> (4 * i)) & 15];
  id += RandomHexDigits(13);
  return id;
}

Format FormatForPath(std::string_view path, bool anthropic_version) {
  std::string model;
  std::string method;
  if (path == "/v1/responses" || absl::StartsWith(AV(path), "/v1/responses/")) {
    return common::v1::FORMAT_OPENAI_RESPONSES;
  }
  if (path == "/v1/messages" || absl::StartsWith(AV(path), "/v1/messages/")) {
    return common::v1::FORMAT_ANTHROPIC;
  }
  if (absl::StartsWith(AV(path), "/v1beta") || ParseGeminiPath(path, &model, &method)) {
    return common::v1::FORMAT_GEMINI;
  }
  return anthropic_version ? common::v1::FORMAT_ANTHROPIC : common::v1::FORMAT_OPENAI_CHAT;
}

std::string_view CookieValue(std::string_view cookie_header, std::string_view name) {
  std::string_view rest = cookie_header;
  while (!rest.empty()) {
    const size_t semi = rest.find(';');
    std::string_view pair = SV(absl::StripAsciiWhitespace(AV(rest.substr(0, semi))));
    const size_t eq = pair.find('=');
    if (eq != std::string_view::npos &&
        SV(absl::StripTrailingAsciiWhitespace(AV(pair.substr(0, eq)))) == name) {
      std::string_view value = SV(absl::StripLeadingAsciiWhitespace(AV(pair.substr(eq + 1))));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      return value;
    }
    if (semi == std::string_view::npos) break;
    rest.remove_prefix(semi + 1);
  }
  return {};
}

std::string JwtSubject(std::string_view claims_json) {
  json::error_code ec;
  json::value v = json::parse(claims_json, ec);
  if (ec || !v.is_object()) return {};
  const json::value* sub = v.as_object().if_contains("sub");
  if (!sub) return {};
  if (sub->is_string()) return std::string(std::string_view(sub->get_string()));
  if (sub->is_int64()) return std::to_string(sub->get_int64());
  if (sub->is_uint64()) return std::to_string(sub->get_uint64());
  return {};
}

namespace {

// Whether `path` is `prefix` or below it.
bool UnderPath(std::string_view path, std::string_view prefix) {
  return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
}

// /api/providers/{id}/routing
bool IsProviderRoutingPath(std::string_view path) {
  constexpr std::string_view kPrefix = "/api/providers/";
  constexpr std::string_view kSuffix = "/routing";
  if (!path.starts_with(kPrefix) || !path.ends_with(kSuffix)) return false;
  const std::string_view id =
      path.substr(kPrefix.size(), path.size() - kPrefix.size() - kSuffix.size());
  return !id.empty() && id.find('/') == std::string_view::npos;
}

}  // namespace

bool IsRouterAdminPath(std::string_view path) {
  static constexpr std::string_view kRouterPaths[] = {
      "/api/health",  "/api/resilience", "/api/routing",        "/api/settings/routing",
      "/api/settings/resilience", "/api/combos", "/api/aliases", "/api/fallback-chains"};
  if (IsProviderRoutingPath(path)) return true;
  for (std::string_view prefix : kRouterPaths) {
    if (UnderPath(path, prefix)) return true;
  }
  return false;
}

bool IsAccountsAdminPath(std::string_view path) {
  static constexpr std::string_view kAccountsPaths[] = {
      "/api/keys",  "/api/providers", "/api/provider-nodes",    "/api/provider-models",
      "/api/oauth", "/api/auth",      "/api/settings/security"};
  if (IsProviderRoutingPath(path)) return false;
  for (std::string_view prefix : kAccountsPaths) {
    if (UnderPath(path, prefix)) return true;
  }
  return false;
}

bool IsUnauthenticatedAdminRoute(std::string_view method, std::string_view path) {
  return (method == "POST" && path == "/api/auth/login") ||
         (method == "GET" && path == "/api/oauth/callback");
}

std::chrono::milliseconds CredentialCacheTtl(int64_t expires_at_ms, int64_t now_ms,
                                             std::chrono::milliseconds default_ttl) {
  if (expires_at_ms <= 0) return default_ttl;
  return std::chrono::milliseconds(std::max<int64_t>(0, expires_at_ms - 60000 - now_ms));
}

std::optional<IpAddress> ParseIpAddress(std::string_view text) {
  text = SV(absl::StripAsciiWhitespace(AV(text)));
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (const size_t zone = text.find('%'); zone != std::string_view::npos) {
    text = text.substr(0, zone);
  }
  if (text.empty() || text.size() > 45) return std::nullopt;
  const std::string z(text);  // inet_pton wants a terminated string
  IpAddress ip;
  if (z.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, z.c_str(), ip.bytes.data()) != 1) return std::nullopt;
    ip.v4 = true;
    return ip;
  }
  if (inet_pton(AF_INET6, z.c_str(), ip.bytes.data()) != 1) return std::nullopt;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.bytes.data(), kMapped, sizeof(kMapped)) == 0) {
    IpAddress v4;
    v4.v4 = true;
    std::memcpy(v4.bytes.data(), ip.bytes.data() + 12, 4);
    return v4;
  }
  return ip;
}

namespace {

// Clears the bits of `ip` past `prefix`.
void MaskTo(IpAddress& ip, int prefix) {
  const int total = ip.v4 ? 32 : 128;
  for (int bit = prefix; bit < total; ++bit) {
    ip.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
}

}  // namespace

bool IpNetwork::Contains(const IpAddress& ip) const {
  if (ip.v4 != base.v4) return false;
  const int full = prefix / 8;
  if (std::memcmp(ip.bytes.data(), base.bytes.data(), static_cast<size_t>(full)) != 0) {
    return false;
  }
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00u >> rest);
  return (ip.bytes[full] & mask) == base.bytes[full];
}

std::optional<IpNetwork> ParseIpNetwork(std::string_view text) {
  text = SV(absl::StripAsciiWhitespace(AV(text)));
  const size_t slash = text.find('/');
  // The address of a CIDR written "[v6]/n" or "v6/n" (brackets dropped by ParseIpAddress).
  std::optional<IpAddress> address = ParseIpAddress(text.substr(0, slash));
  if (!address) return std::nullopt;
  // A mapped IPv6 block parsed as IPv4 counts its prefix from the IPv4 part.
  const bool written_v6 = text.substr(0, slash).find(':') != std::string_view::npos;
  IpNetwork net;
  net.base = *address;
  const int total = address->v4 ? 32 : 128;
  net.prefix = total;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    int prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      prefix = prefix * 10 + (c - '0');
    }
    if (address->v4 && written_v6) {
      if (prefix > 128) return std::nullopt;
      if (prefix < 96) {
        // Wider than the mapped range: an IPv6 block after all.
        net.base = IpAddress();
        net.base.bytes[10] = 0xff;
        net.base.bytes[11] = 0xff;
        std::memcpy(net.base.bytes.data() + 12, address->bytes.data(), 4);
        net.prefix = prefix;
        MaskTo(net.base, prefix);
        return net;
      }
      prefix -= 96;
    }
    if (prefix > total) return std::nullopt;
    net.prefix = prefix;
  }
  MaskTo(net.base, net.prefix);
  return net;
}

IpAccessRules IpAccessRules::Parse(const std::vector<std::string>& allowlist,
                                   const std::vector<std::string>& denylist,
                                   std::vector<std::string>* invalid) {
  IpAccessRules rules;
  auto add = [invalid](const std::vector<std::string>& entries, std::vector<IpNetwork>* out) {
    for (const std::string& entry : entries) {
      if (std::optional<IpNetwork> net = ParseIpNetwork(entry)) {
        out->push_back(*net);
      } else if (invalid) {
        invalid->push_back(entry);
      }
    }
  };
  add(allowlist, &rules.allow_);
  add(denylist, &rules.deny_);
  return rules;
}

bool IpAccessRules::Allowed(const std::optional<IpAddress>& ip) const {
  if (!ip) return allow_.empty();
  for (const IpNetwork& net : deny_) {
    if (net.Contains(*ip)) return false;
  }
  if (allow_.empty()) return true;
  for (const IpNetwork& net : allow_) {
    if (net.Contains(*ip)) return true;
  }
  return false;
}

// ---- Subscription quota ----

namespace {

// A response header without surrounding blanks.
std::string_view Value(HeaderLookup header, std::string_view name) {
  return SV(absl::StripAsciiWhitespace(AV(header(name))));
}

// A finite, non-negative number; nullopt otherwise.
std::optional<double> QuotaNumber(std::string_view text) {
  double v = 0;
  if (text.empty() || !absl::SimpleAtod(AV(text), &v) || !std::isfinite(v) || v < 0) {
    return std::nullopt;
  }
  return v;
}

// Epoch seconds (or milliseconds, when the value is that large) as ms; 0 when unusable.
int64_t QuotaEpochMs(std::string_view text) {
  const std::optional<double> v = QuotaNumber(text);
  if (!v || *v < 1 || *v > 1e14) return 0;
  return static_cast<int64_t>(*v > 1e11 ? *v : *v * 1000);
}

struct ClaudeWindow {
  const char* name;
  const char* claim;  // its anthropic-ratelimit-unified-representative-claim
  int minutes;
  std::string_view utilization;
  std::string_view reset;
};
constexpr ClaudeWindow kClaudeWindows[] = {
    {"5h", "five_hour", 300, "anthropic-ratelimit-unified-5h-utilization",
     "anthropic-ratelimit-unified-5h-reset"},
    {"7d", "seven_day", 10080, "anthropic-ratelimit-unified-7d-utilization",
     "anthropic-ratelimit-unified-7d-reset"},
};

struct CodexWindow {
  const char* name;
  std::string_view used_percent;
  std::string_view window_minutes;
  std::string_view reset_at;
  std::string_view reset_after_seconds;
};
constexpr CodexWindow kCodexWindows[] = {
    {"primary", "x-codex-primary-used-percent", "x-codex-primary-window-minutes",
     "x-codex-primary-reset-at", "x-codex-primary-reset-after-seconds"},
    {"secondary", "x-codex-secondary-used-percent", "x-codex-secondary-window-minutes",
     "x-codex-secondary-reset-at", "x-codex-secondary-reset-after-seconds"},
};

constexpr double kQuotaReportStep = 1;  // used-percent points
constexpr int64_t kQuotaReportIntervalMs = 30000;
constexpr int64_t kQuotaResetSlackMs = 60000;  // relative resets drift between responses

}  // namespace

std::optional<accounts::v1::QuotaReport> ExtractQuota(HeaderLookup header, int64_t now_ms) {
  std::optional<accounts::v1::QuotaReport> out;
  auto add = [&](const char* name, double used_percent, int64_t resets_at_ms, int minutes) {
    if (!out) {
      out.emplace();
      out->set_reported_at_ms(now_ms);
    }
    accounts::v1::QuotaWindow* w = out->add_windows();
    w->set_name(name);
    w->set_used_percent(std::min(used_percent, 100.0));
    w->set_resets_at_ms(resets_at_ms);
    w->set_window_minutes(minutes);
  };
  // Claude Code (OAuth): fractions of each window.
  for (const ClaudeWindow& cw : kClaudeWindows) {
    const std::optional<double> used = QuotaNumber(Value(header, cw.utilization));
    if (used) add(cw.name, *used * 100, QuotaEpochMs(Value(header, cw.reset)), cw.minutes);
  }
  if (out && Value(header, "anthropic-ratelimit-unified-status") == "rejected") {
    // The window the refusal names is spent, whatever its utilization says.
    const std::string_view claim =
        Value(header, "anthropic-ratelimit-unified-representative-claim");
    for (const ClaudeWindow& cw : kClaudeWindows) {
      if (claim != cw.claim) continue;
      for (auto& w : *out->mutable_windows()) {
        if (w.name() == cw.name) w.set_used_percent(100);
      }
    }
  }
  // Codex (ChatGPT backend): percents, with the window's length.
  for (const CodexWindow& xw : kCodexWindows) {
    const std::optional<double> used = QuotaNumber(Value(header, xw.used_percent));
    if (!used) continue;
    int64_t resets_at = QuotaEpochMs(Value(header, xw.reset_at));
    if (resets_at == 0) {
      if (const auto after = QuotaNumber(Value(header, xw.reset_after_seconds));
          after && *after < 1e9) {
        resets_at = now_ms + static_cast<int64_t>(*after * 1000);
      }
    }
    int minutes = 0;
    if (const auto m = QuotaNumber(Value(header, xw.window_minutes)); m && *m >= 1 && *m < 1e7) {
      minutes = static_cast<int>(*m);
    }
    add(xw.name, *used, resets_at, minutes);
  }
  return out;
}

bool QuotaReportDue(const accounts::v1::QuotaReport& last, const accounts::v1::QuotaReport& next) {
  if (next.reported_at_ms() - last.reported_at_ms() >= kQuotaReportIntervalMs) return true;
  if (last.windows_size() != next.windows_size()) return true;
  for (const auto& w : next.windows()) {
    const accounts::v1::QuotaWindow* old = nullptr;
    for (const auto& l : last.windows()) {
      if (l.name() == w.name()) old = &l;
    }
    if (old == nullptr) return true;
    if (std::abs(w.used_percent() - old->used_percent()) >= kQuotaReportStep) return true;
    if (std::llabs(w.resets_at_ms() - old->resets_at_ms()) > kQuotaResetSlackMs) return true;
  }
  return false;
}

}  // namespace omniroute::edge

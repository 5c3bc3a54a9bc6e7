#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "absl/status/statusor.h"
#include "common/format.h"

namespace omniroute::edge {

// What the edge needs to know of a client's JSON request.
struct ChatRequestInfo {
  boost::json::value body;  // the parsed request, kept whole (unknown fields included)
  std::string model;
  bool stream = false;
};

// Parses a request body of a client API. The model and stream flag come from the body
// (OpenAI, Anthropic, Responses). INVALID_ARGUMENT for invalid JSON, a body that is not an
// object, or a missing/non-string model.
absl::StatusOr<ChatRequestInfo> ParseChatRequest(std::string_view body);

// A Gemini request: the model and the stream flag are in the path.
absl::StatusOr<ChatRequestInfo> ParseGeminiRequest(std::string_view body, std::string model,
                                                   bool stream);

// The output-token cap the request sets in any client format (max_tokens,
// max_completion_tokens, max_output_tokens, generationConfig.maxOutputTokens); 0 = none.
int64_t MaxOutputTokens(const ChatRequestInfo& info);

// Serialises `info.body` with "model" replaced by `upstream_model`.
std::string RewriteModel(ChatRequestInfo& info, std::string_view upstream_model);

// A Gemini call path: "/v1beta/models/{model}:{method}" (also "/v1/models/..."). The model
// may carry our provider prefix ("glm/glm-4.7"). False when `path` is not one.
bool ParseGeminiPath(std::string_view path, std::string* model, std::string* method);

// Token counts as the provider reported them.
struct TokenUsage {
  int64_t input = 0;      // including cached input
  int64_t output = 0;     // including reasoning
  int64_t cached = 0;          // cache reads, part of input
  int64_t cache_creation = 0;  // cache writes, part of input
  int64_t reasoning = 0;
  bool present = false;
};

// Reads the usage object of a provider answer (whole body, or one stream event's JSON) of
// `format`; leaves `usage` untouched when there is none. Returns false on invalid JSON.
bool ExtractUsage(Format format, std::string_view json, TokenUsage* usage);

// The client key a request presents: "Authorization: Bearer", "x-api-key",
// "x-goog-api-key", or the "key" query parameter. Empty when none.
std::string_view PresentedKey(std::string_view authorization, std::string_view x_api_key,
                              std::string_view x_goog_api_key, std::string_view query);

// Normalises a request path: drops the query, folds "/v1/v1/" into "/v1/", and maps the
// unprefixed OpenAI paths ("/chat/completions", "/models") onto "/v1/...".
std::string NormalizePath(std::string_view target);

// The value of query parameter `name` in `target` (undecoded), or empty.
std::string_view QueryParam(std::string_view target, std::string_view name);

// Legacy text completions (POST /v1/completions) ride on chat: the request becomes a chat
// request with the prompt as one user message; answers and stream events come back as
// `text_completion` objects. INVALID_ARGUMENT for a body chat cannot carry (token arrays).
absl::StatusOr<std::string> CompletionsRequestToChat(std::string_view body);
std::string ChatResponseToCompletions(std::string_view chat_body);
std::string ChatChunkToCompletions(std::string_view chunk_data);

// The message of a provider's error body in any of the four formats (error.message, or a
// top-level message); empty when there is none.
std::string UpstreamErrorMessage(std::string_view body);

// The W3C `traceparent` to send upstream: the client's trace with a new span id, or a new
// sampled trace when the client sent none (or an invalid one).
std::string ChildTraceparent(std::string_view incoming);

// A new request id: "req_" + 24 hex characters, unique enough across replicas.
std::string NewRequestId();

}  // namespace omniroute::edge

#pragma once

// Readers and writers of each wire format, to and from the neutral model in ir.h.
// Writers of requests produce what the provider expects; writers of responses and streams
// produce what the client expects.

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "convert.h"
#include "ir.h"

namespace omniroute::translator {

// OpenAI Chat Completions.
namespace chat {
absl::StatusOr<Request> ReadRequest(const json::object& body);
json::object WriteRequest(const Request& r, std::string_view model, bool stream);
absl::StatusOr<Response> ReadResponse(const json::object& body);
json::object WriteResponse(const Response& r, std::string_view model);
std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink);
std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options);
}  // namespace chat

// Anthropic Messages.
namespace anthropic {
absl::StatusOr<Request> ReadRequest(const json::object& body);
json::object WriteRequest(const Request& r, std::string_view model, bool stream);
absl::StatusOr<Response> ReadResponse(const json::object& body);
json::object WriteResponse(const Response& r, std::string_view model);
std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink);
std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options);
}  // namespace anthropic

// Google Gemini generateContent.
namespace gemini {
absl::StatusOr<Request> ReadRequest(const json::object& body);
json::object WriteRequest(const Request& r, std::string_view model, bool stream);
absl::StatusOr<Response> ReadResponse(const json::object& body);
json::object WriteResponse(const Response& r, std::string_view model);
std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink);
std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options);
}  // namespace gemini

// OpenAI Responses.
namespace responses {
absl::StatusOr<Request> ReadRequest(const json::object& body);
json::object WriteRequest(const Request& r, std::string_view model, bool stream);
absl::StatusOr<Response> ReadResponse(const json::object& body);
json::object WriteResponse(const Response& r, std::string_view model);
std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink);
std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options);
}  // namespace responses

// Appends one SSE event ("event: NAME" line when `name` is not empty).
void AppendSse(std::string* out, std::string_view name, const json::value& data);

}  // namespace omniroute::translator

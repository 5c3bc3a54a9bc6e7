#include "formats.h"

namespace omniroute::translator::responses {

absl::StatusOr<Request> ReadRequest(const json::object& body) {
  return absl::UnimplementedError("responses");
}
json::object WriteRequest(const Request& r, std::string_view model, bool stream) { return {}; }
absl::StatusOr<Response> ReadResponse(const json::object& body) {
  return absl::UnimplementedError("responses");
}
json::object WriteResponse(const Response& r, std::string_view model) { return {}; }
std::unique_ptr<StreamReader> MakeStreamReader(StreamSink* sink) { return nullptr; }
std::unique_ptr<StreamSink> MakeStreamWriter(std::string* out, std::string model,
                                             const StreamOptions& options) {
  return nullptr;
}

}  // namespace omniroute::translator::responses

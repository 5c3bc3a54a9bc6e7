#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/format.h"

namespace omniroute::translator {

// Converts a client request body of format `from` into a provider request of format `to`
// for `upstream_model`, streaming when `stream`. The same format on both ends returns the
// body unchanged. InvalidArgument when the body is not a valid request of `from`.
absl::StatusOr<std::string> ConvertRequest(Format from, Format to, std::string_view body,
                                           std::string_view upstream_model, bool stream);

// Converts a whole provider response of format `from` into the client's format `to`,
// naming `client_model` as the model. The same format returns the body unchanged.
absl::StatusOr<std::string> ConvertResponse(Format from, Format to, std::string_view body,
                                            std::string_view client_model);

struct StreamOptions {
  // OpenAI Chat clients: end with a usage chunk (choices []) before [DONE]. The converter
  // cannot see the client's stream_options, so it sends usage unless told otherwise.
  bool include_usage = true;
  // Timestamp (seconds since the epoch) for `created` fields when the upstream gave none;
  // 0 reads the clock.
  int64_t created = 0;
};

// Converts one provider SSE stream into the client's SSE format, piece by piece.
class StreamConverter {
 public:
  virtual ~StreamConverter() = default;

  // `from` is the provider's format, `to` the client's. The same format on both ends
  // passes bytes through unchanged; nullptr when a format is not one of the four.
  static std::unique_ptr<StreamConverter> Make(Format from, Format to, std::string client_model,
                                               StreamOptions options = {});

  // Consumes upstream bytes (any split) and appends the client bytes they complete.
  virtual absl::Status Feed(std::string_view bytes, std::string* out) = 0;

  // The upstream ended: appends what is still owed, including the closing events the
  // upstream did not send.
  virtual absl::Status Finish(std::string* out) = 0;
};

using StreamConverterPtr = std::unique_ptr<StreamConverter>;

// Whether `f` is one of the four formats the converter knows.
bool IsConvertible(Format f);

}  // namespace omniroute::translator

#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "omniroute/common/v1/common.pb.h"

namespace omniroute {

using Format = common::v1::Format;
using AuthStyle = common::v1::AuthStyle;

// "openai", "responses", "anthropic", "gemini" (the config file's names).
std::string_view FormatName(Format f);
bool ParseFormat(std::string_view name, Format* out);
std::string_view AuthStyleName(AuthStyle a);
bool ParseAuthStyle(std::string_view name, AuthStyle* out);

// An error as a client of `format` expects it: HTTP status and JSON body.
struct HttpError {
  int status = 500;
  std::string body;
};

// Builds the error body of `format` for an HTTP status. `code` is OpenAI's machine code
// (e.g. "model_not_found"); empty leaves it null.
HttpError MakeHttpError(Format format, int status, std::string_view message,
                        std::string_view code = {});

// An error as an SSE event of `format`'s stream, for failures after the stream started.
std::string StreamErrorEvent(Format format, int status, std::string_view message,
                             std::string_view code = {});

// Maps an absl status to the HTTP status a client sees.
int HttpStatusFromStatus(const absl::Status& s);

// Same as MakeHttpError with the status derived from an absl status.
HttpError ToHttpError(Format format, const absl::Status& s, std::string_view code = {});

}  // namespace omniroute

namespace omniroute {

// The path below a provider's base URL for a request of `format`
// ("/chat/completions", "/responses", "/messages", "/models/M:generateContent", ...).
std::string UpstreamPath(Format format, std::string_view model, bool stream);

}  // namespace omniroute

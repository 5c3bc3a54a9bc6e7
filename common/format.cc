#include "common/format.h"

#include "common/strings.h"

#include <boost/json.hpp>

#include "absl/strings/ascii.h"

namespace omniroute {
namespace {

std::string_view OpenAiType(int status) {
  switch (status) {
    case 400:
    case 404:
    case 405:
    case 409:
    case 413:
    case 422:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

std::string_view AnthropicType(int status) {
  switch (status) {
    case 400:
    case 405:
    case 409:
    case 422:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

std::string_view GoogleStatus(int status) {
  switch (status) {
    case 400:
    case 413:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
      return "NOT_FOUND";
    case 409:
      return "ABORTED";
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 501:
      return "UNIMPLEMENTED";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    default:
      return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

}  // namespace

std::string_view FormatName(Format f) {
  switch (f) {
    case common::v1::FORMAT_OPENAI_CHAT:
      return "openai";
    case common::v1::FORMAT_OPENAI_RESPONSES:
      return "responses";
    case common::v1::FORMAT_ANTHROPIC:
      return "anthropic";
    case common::v1::FORMAT_GEMINI:
      return "gemini";
    default:
      return "unspecified";
  }
}

bool ParseFormat(std::string_view name, Format* out) {
  if (name == "openai") {
    *out = common::v1::FORMAT_OPENAI_CHAT;
  } else if (name == "responses") {
    *out = common::v1::FORMAT_OPENAI_RESPONSES;
  } else if (name == "anthropic") {
    *out = common::v1::FORMAT_ANTHROPIC;
  } else if (name == "gemini") {
    *out = common::v1::FORMAT_GEMINI;
  } else {
    return false;
  }
  return true;
}

std::string_view AuthStyleName(AuthStyle a) {
  switch (a) {
    case common::v1::AUTH_STYLE_BEARER:
      return "bearer";
    case common::v1::AUTH_STYLE_X_API_KEY:
      return "x-api-key";
    case common::v1::AUTH_STYLE_GOOG_API_KEY:
      return "goog-api-key";
    case common::v1::AUTH_STYLE_NONE:
      return "none";
    default:
      return "unspecified";
  }
}

bool ParseAuthStyle(std::string_view name, AuthStyle* out) {
  if (name == "bearer") {
    *out = common::v1::AUTH_STYLE_BEARER;
  } else if (name == "x-api-key") {
    *out = common::v1::AUTH_STYLE_X_API_KEY;
  } else if (name == "goog-api-key") {
    *out = common::v1::AUTH_STYLE_GOOG_API_KEY;
  } else if (name == "none") {
    *out = common::v1::AUTH_STYLE_NONE;
  } else {
    return false;
  }
  return true;
}

HttpError MakeHttpError(Format format, int status, std::string_view message,
                        std::string_view code) {
  namespace json = boost::json;
  json::object root;
  switch (format) {
    case common::v1::FORMAT_ANTHROPIC: {
      root["type"] = "error";
      root["error"] = json::object{{"type", AnthropicType(status)}, {"message", message}};
      break;
    }
    case common::v1::FORMAT_GEMINI: {
      root["error"] = json::object{
          {"code", status}, {"message", message}, {"status", GoogleStatus(status)}};
      break;
    }
    default: {
      json::object err{{"message", message}, {"type", OpenAiType(status)}, {"param", nullptr}};
      if (code.empty()) {
        err["code"] = nullptr;
      } else {
        err["code"] = code;
      }
      root["error"] = std::move(err);
      break;
    }
  }
  return HttpError{status, json::serialize(root)};
}

std::string StreamErrorEvent(Format format, int status, std::string_view message,
                             std::string_view code) {
  namespace json = boost::json;
  switch (format) {
    case common::v1::FORMAT_ANTHROPIC:
      return "event: error\ndata: " + MakeHttpError(format, status, message).body + "\n\n";
    case common::v1::FORMAT_OPENAI_RESPONSES: {
      json::object ev{{"type", "error"},
                      {"code", code.empty() ? json::value(nullptr) : json::value(code)},
                      {"message", message},
                      {"param", nullptr}};
      return "event: error\ndata: " + json::serialize(ev) + "\n\n";
    }
    default:
      return "data: " + MakeHttpError(format, status, message, code).body + "\n\n";
  }
}

int HttpStatusFromStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kCancelled:
      return 499;
    default:
      return 500;
  }
}

HttpError ToHttpError(Format format, const absl::Status& s, std::string_view code) {
  return MakeHttpError(format, HttpStatusFromStatus(s), SV(s.message()), code);
}

}  // namespace omniroute

namespace omniroute {

std::string UpstreamPath(Format format, std::string_view model, bool stream) {
  switch (format) {
    case common::v1::FORMAT_OPENAI_RESPONSES:
      return "/responses";
    case common::v1::FORMAT_ANTHROPIC:
      return "/messages";
    case common::v1::FORMAT_GEMINI: {
      std::string path = "/models/";
      path.append(model);
      path.append(stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
      return path;
    }
    default:
      return "/chat/completions";
  }
}

}  // namespace omniroute

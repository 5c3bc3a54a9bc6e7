#include "convert.h"

#include "absl/strings/str_cat.h"
#include "common/sse.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "formats.h"

namespace omniroute::translator {
namespace {

absl::Status NotConvertible(Format from, Format to) {
  return absl::InvalidArgumentError(
      absl::StrCat("Cannot convert from ", AV(FormatName(from)), " to ", AV(FormatName(to))));
}

absl::StatusOr<Request> ReadRequest(Format f, const json::object& body) {
  switch (f) {
    case common::v1::FORMAT_OPENAI_CHAT:
      return chat::ReadRequest(body);
    case common::v1::FORMAT_ANTHROPIC:
      return anthropic::ReadRequest(body);
    case common::v1::FORMAT_GEMINI:
      return gemini::ReadRequest(body);
    case common::v1::FORMAT_OPENAI_RESPONSES:
      return responses::ReadRequest(body);
    default:
      return absl::InvalidArgumentError("unknown request format");
  }
}

json::object WriteRequest(Format f, const Request& r, std::string_view model, bool stream) {
  switch (f) {
    case common::v1::FORMAT_ANTHROPIC:
      return anthropic::WriteRequest(r, model, stream);
    case common::v1::FORMAT_GEMINI:
      return gemini::WriteRequest(r, model, stream);
    case common::v1::FORMAT_OPENAI_RESPONSES:
      return responses::WriteRequest(r, model, stream);
    default:
      return chat::WriteRequest(r, model, stream);
  }
}

absl::StatusOr<Response> ReadResponse(Format f, const json::object& body) {
  switch (f) {
    case common::v1::FORMAT_OPENAI_CHAT:
      return chat::ReadResponse(body);
    case common::v1::FORMAT_ANTHROPIC:
      return anthropic::ReadResponse(body);
    case common::v1::FORMAT_GEMINI:
      return gemini::ReadResponse(body);
    case common::v1::FORMAT_OPENAI_RESPONSES:
      return responses::ReadResponse(body);
    default:
      return absl::InvalidArgumentError("unknown response format");
  }
}

json::object WriteResponse(Format f, const Response& r, std::string_view model) {
  switch (f) {
    case common::v1::FORMAT_ANTHROPIC:
      return anthropic::WriteResponse(r, model);
    case common::v1::FORMAT_GEMINI:
      return gemini::WriteResponse(r, model);
    case common::v1::FORMAT_OPENAI_RESPONSES:
      return responses::WriteResponse(r, model);
    default:
      return chat::WriteResponse(r, model);
  }
}

class PassThrough final : public StreamConverter {
 public:
  // Interface
  absl::Status Feed(std::string_view bytes, std::string* out) override {
    out->append(bytes);
    return absl::OkStatus();
  }
  absl::Status Finish(std::string* out) override { return absl::OkStatus(); }
};

class Converter final : public StreamConverter {
 public:
  Converter(Format from, Format to, std::string model, const StreamOptions& options) {
    switch (to) {
      case common::v1::FORMAT_ANTHROPIC:
        writer_ = anthropic::MakeStreamWriter(&buffer_, std::move(model), options);
        break;
      case common::v1::FORMAT_GEMINI:
        writer_ = gemini::MakeStreamWriter(&buffer_, std::move(model), options);
        break;
      case common::v1::FORMAT_OPENAI_RESPONSES:
        writer_ = responses::MakeStreamWriter(&buffer_, std::move(model), options);
        break;
      default:
        writer_ = chat::MakeStreamWriter(&buffer_, std::move(model), options);
        break;
    }
    switch (from) {
      case common::v1::FORMAT_ANTHROPIC:
        reader_ = anthropic::MakeStreamReader(writer_.get());
        break;
      case common::v1::FORMAT_GEMINI:
        reader_ = gemini::MakeStreamReader(writer_.get());
        break;
      case common::v1::FORMAT_OPENAI_RESPONSES:
        reader_ = responses::MakeStreamReader(writer_.get());
        break;
      default:
        reader_ = chat::MakeStreamReader(writer_.get());
        break;
    }
  }

  // Interface
  absl::Status Feed(std::string_view bytes, std::string* out) override {
    if (ended_) return absl::FailedPreconditionError("stream already finished");
    absl::Status s =
        parser_.Feed(bytes, [this](const SseEvent& e) { reader_->Event(e.event, e.data); });
    Drain(out);
    return s;
  }

  absl::Status Finish(std::string* out) override {
    if (!ended_) {
      ended_ = true;
      parser_.Finish([this](const SseEvent& e) { reader_->Event(e.event, e.data); });
      reader_->End();
    }
    Drain(out);
    return absl::OkStatus();
  }

 private:
  void Drain(std::string* out) {
    out->append(buffer_);
    buffer_.clear();
  }

  std::string buffer_;
  std::unique_ptr<StreamSink> writer_;
  std::unique_ptr<StreamReader> reader_;
  SseParser parser_;
  bool ended_ = false;
};

}  // namespace

void AppendSse(std::string* out, std::string_view name, const json::value& data) {
  if (!name.empty()) {
    out->append("event: ");
    out->append(name);
    out->push_back('\n');
  }
  out->append("data: ");
  SerializeTo(data, out);
  out->append("\n\n");
}

bool IsConvertible(Format f) {
  return f == common::v1::FORMAT_OPENAI_CHAT || f == common::v1::FORMAT_OPENAI_RESPONSES ||
         f == common::v1::FORMAT_ANTHROPIC || f == common::v1::FORMAT_GEMINI;
}

absl::StatusOr<std::string> ConvertRequest(Format from, Format to, std::string_view body,
                                           std::string_view upstream_model, bool stream) {
  if (!IsConvertible(from) || !IsConvertible(to)) return NotConvertible(from, to);
  if (from == to) return std::string(body);
  ASSIGN_OR_RETURN(json::object parsed, ParseObject(body, "request body"));
  ASSIGN_OR_RETURN(Request request, ReadRequest(from, parsed));
  return Serialize(WriteRequest(to, request, upstream_model, stream));
}

absl::StatusOr<std::string> ConvertResponse(Format from, Format to, std::string_view body,
                                            std::string_view client_model) {
  if (!IsConvertible(from) || !IsConvertible(to)) return NotConvertible(from, to);
  if (from == to) return std::string(body);
  ASSIGN_OR_RETURN(json::object parsed, ParseObject(body, "response body"));
  ASSIGN_OR_RETURN(Response response, ReadResponse(from, parsed));
  return Serialize(WriteResponse(to, response, client_model));
}

std::unique_ptr<StreamConverter> StreamConverter::Make(Format from, Format to,
                                                       std::string client_model,
                                                       StreamOptions options) {
  if (from == to) return std::make_unique<PassThrough>();
  if (!IsConvertible(from) || !IsConvertible(to)) return nullptr;
  return std::make_unique<Converter>(from, to, std::move(client_model), options);
}

}  // namespace omniroute::translator

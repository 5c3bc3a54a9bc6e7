#include "local_translator.h"

#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "convert.h"

namespace omniroute::translator {
namespace {

absl::Status Unsupported(Format from, Format to) {
  return absl::UnimplementedError(absl::StrCat("translation from ", AV(FormatName(from)), " to ",
                                               AV(FormatName(to)), " is not supported"));
}

bool Supported(Format from, Format to) {
  return from == to || (IsConvertible(from) && IsConvertible(to));
}

// Same format on both sides: bytes pass through unchanged.
class PassThroughStream final : public StreamTranslation {
 public:
  // Interface
  void Push(std::string data, bool last, Callback<std::string> done) override {
    done(std::move(data));
  }
};

// Different formats: the conversion library's per-stream state machine.
class ConvertingStream final : public StreamTranslation {
 public:
  explicit ConvertingStream(StreamConverterPtr converter) : converter_(std::move(converter)) {}

  // Interface
  void Push(std::string data, bool last, Callback<std::string> done) override {
    std::string out;
    absl::Status s = converter_->Feed(data, &out);
    if (s.ok() && last) s = converter_->Finish(&out);
    if (!s.ok()) {
      done(s);
      return;
    }
    done(std::move(out));
  }

 private:
  StreamConverterPtr converter_;
};

class LocalTranslator final : public Translator {
 public:
  // Interface
  void TranslateRequest(const v1::TranslateRequestIn& in,
                        Callback<v1::TranslateRequestOut> done) override {
    if (!Supported(in.from(), in.to())) {
      done(Unsupported(in.from(), in.to()));
      return;
    }
    v1::TranslateRequestOut out;
    if (in.from() == in.to()) {
      out.set_body(in.body());
    } else {
      absl::StatusOr<std::string> body =
          ConvertRequest(in.from(), in.to(), in.body(), in.upstream_model(), in.stream());
      if (!body.ok()) {
        done(body.status());
        return;
      }
      out.set_body(std::move(body).value());
    }
    out.set_path(UpstreamPath(in.to(), in.upstream_model(), in.stream()));
    done(std::move(out));
  }

  void TranslateResponse(const v1::TranslateResponseIn& in,
                         Callback<v1::TranslateResponseOut> done) override {
    if (!Supported(in.from(), in.to())) {
      done(Unsupported(in.from(), in.to()));
      return;
    }
    v1::TranslateResponseOut out;
    if (in.from() == in.to()) {
      out.set_body(in.body());
    } else {
      absl::StatusOr<std::string> body = ConvertResponse(in.from(), in.to(), in.body(), in.model());
      if (!body.ok()) {
        done(body.status());
        return;
      }
      out.set_body(std::move(body).value());
    }
    done(std::move(out));
  }

  StreamTranslationPtr OpenStream(Format from, Format to, const std::string& model) override {
    if (from == to) return std::make_unique<PassThroughStream>();
    StreamConverterPtr converter = StreamConverter::Make(from, to, model);
    if (converter == nullptr) return nullptr;
    return std::make_unique<ConvertingStream>(std::move(converter));
  }
};

}  // namespace

TranslatorPtr MakeLocalTranslator() { return std::make_shared<LocalTranslator>(); }

}  // namespace omniroute::translator

#include "local_translator.h"

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace omniroute::translator {
namespace {

absl::Status Unsupported(Format from, Format to) {
  return absl::UnimplementedError(absl::StrCat("translation from ", AV(FormatName(from)), " to ",
                                               AV(FormatName(to)), " is not supported yet"));
}

// Same format on both sides: bytes pass through unchanged.
class PassThroughStream final : public StreamTranslation {
 public:
  void Push(std::string data, bool last, Callback<std::string> done) override {
    done(std::move(data));
  }
};

class LocalTranslator final : public Translator {
 public:
  // Interface
  void TranslateRequest(const v1::TranslateRequestIn& in,
                        Callback<v1::TranslateRequestOut> done) override {
    if (in.from() != in.to()) {
      done(Unsupported(in.from(), in.to()));
      return;
    }
    v1::TranslateRequestOut out;
    out.set_body(in.body());
    out.set_path(UpstreamPath(in.to(), in.upstream_model(), in.stream()));
    done(std::move(out));
  }

  void TranslateResponse(const v1::TranslateResponseIn& in,
                         Callback<v1::TranslateResponseOut> done) override {
    if (in.from() != in.to()) {
      done(Unsupported(in.from(), in.to()));
      return;
    }
    v1::TranslateResponseOut out;
    out.set_body(in.body());
    done(std::move(out));
  }

  StreamTranslationPtr OpenStream(Format from, Format to, const std::string& model) override {
    if (from != to) return nullptr;
    return std::make_unique<PassThroughStream>();
  }
};

}  // namespace

TranslatorPtr MakeLocalTranslator() { return std::make_shared<LocalTranslator>(); }

}  // namespace omniroute::translator

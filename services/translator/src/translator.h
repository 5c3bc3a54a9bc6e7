#pragma once

#include <memory>
#include <string>

#include "common/callback.h"
#include "common/format.h"
#include "omniroute/translator/v1/translator.pb.h"

namespace omniroute::translator {

// Translates one upstream SSE stream into the client's format, piece by piece.
class StreamTranslation {
 public:
  virtual ~StreamTranslation() = default;

  // Feeds raw upstream bytes (`last` when the upstream ended); `done` receives the client
  // bytes produced so far (possibly empty). Calls must not overlap: wait for `done`.
  virtual void Push(std::string data, bool last, Callback<std::string> done) = 0;
};

using StreamTranslationPtr = std::unique_ptr<StreamTranslation>;

// Converts bodies between client and provider formats.
class Translator {
 public:
  virtual ~Translator() = default;

  // Client request body → provider request body and the path below the base URL.
  virtual void TranslateRequest(const v1::TranslateRequestIn& in,
                                Callback<v1::TranslateRequestOut> done) = 0;

  // Provider response body → client response body.
  virtual void TranslateResponse(const v1::TranslateResponseIn& in,
                                 Callback<v1::TranslateResponseOut> done) = 0;

  // Starts translating one stream from `from` (provider) to `to` (client); nullptr when
  // the pair is not supported.
  virtual StreamTranslationPtr OpenStream(Format from, Format to, const std::string& model) = 0;
};

using TranslatorPtr = std::shared_ptr<Translator>;

}  // namespace omniroute::translator

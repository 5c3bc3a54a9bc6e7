// Arbitrary bytes through the edge's request and response parsers: no crash, no hang.
#include <cstdint>
#include <string>

#include "gateway.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace omniroute;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto info = edge::ParseChatRequest(text); info.ok()) {
    (void)edge::RewriteModel(*info, "model");
  }
  (void)edge::ParseGeminiRequest(text, "m", true);
  for (Format f : {common::v1::FORMAT_OPENAI_CHAT, common::v1::FORMAT_OPENAI_RESPONSES,
                   common::v1::FORMAT_ANTHROPIC, common::v1::FORMAT_GEMINI}) {
    edge::TokenUsage usage;
    (void)edge::ExtractUsage(f, text, &usage);
    (void)StreamErrorEvent(f, 502, text, text);
    (void)MakeHttpError(f, 400, text, text);
  }
  std::string model, method;
  (void)edge::ParseGeminiPath(text, &model, &method);
  (void)edge::NormalizePath(text);
  (void)edge::PresentedKey(text, text, text, text);
  // Headers and settings an untrusted caller or admin controls.
  (void)edge::CookieValue(text, "auth_token");
  (void)edge::JwtSubject(text);
  (void)edge::IsAccountsAdminPath(text);
  (void)edge::IsRouterAdminPath(text);
  if (auto net = edge::ParseIpNetwork(text)) {
    (void)net->Contains(net->base);
  }
  if (auto ip = edge::ParseIpAddress(text)) {
    (void)edge::IpAccessRules::Parse({std::string(text)}, {}, nullptr).Allowed(ip);
  }
  return 0;
}

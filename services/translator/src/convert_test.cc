#include "convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "absl/strings/match.h"
#include "formats.h"
#include "json_util.h"

namespace omniroute::translator {
namespace {

using common::v1::FORMAT_ANTHROPIC;
using common::v1::FORMAT_GEMINI;
using common::v1::FORMAT_OPENAI_CHAT;
using common::v1::FORMAT_OPENAI_RESPONSES;
using ::testing::HasSubstr;

constexpr Format kFormats[] = {FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC,
                               FORMAT_GEMINI};

// File stem of each format in testdata/.
std::string Stem(Format f) {
  switch (f) {
    case FORMAT_OPENAI_CHAT:
      return "openai";
    case FORMAT_OPENAI_RESPONSES:
      return "responses";
    case FORMAT_ANTHROPIC:
      return "anthropic";
    default:
      return "gemini";
  }
}

std::string TestData(const std::string& rel) {
  return std::string(TRANSLATOR_TESTDATA) + "/" + rel;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
}

bool Updating() { return std::getenv("OMNI_UPDATE_GOLDENS") != nullptr; }

// Timestamps the converter takes from the clock when the upstream has none.
std::string Normalize(const std::string& s) {
  static const std::regex kCreated(R"re("(created|created_at)":[0-9]+)re");
  return std::regex_replace(s, kCreated, "\"$1\":0");
}

void Pretty(const json::value& v, int indent, std::string* out) {
  const std::string pad(indent * 2, ' ');
  const std::string pad_in((indent + 1) * 2, ' ');
  if (const json::object* o = v.if_object(); o != nullptr && !o->empty()) {
    out->append("{\n");
    bool first = true;
    for (const auto& kv : *o) {
      if (!first) out->append(",\n");
      first = false;
      out->append(pad_in);
      out->append(Serialize(json::string(kv.key())));
      out->append(": ");
      Pretty(kv.value(), indent + 1, out);
    }
    out->append("\n" + pad + "}");
  } else if (const json::array* a = v.if_array(); a != nullptr && !a->empty()) {
    out->append("[\n");
    bool first = true;
    for (const auto& e : *a) {
      if (!first) out->append(",\n");
      first = false;
      out->append(pad_in);
      Pretty(e, indent + 1, out);
    }
    out->append("\n" + pad + "]");
  } else {
    out->append(Serialize(v));
  }
}

std::string PrettyJson(const std::string& compact) {
  std::optional<json::value> v = ParseValue(compact);
  if (!v) return compact;
  std::string out;
  Pretty(*v, 0, &out);
  out.push_back('\n');
  return out;
}

// Compares `actual` (compact JSON) with a checked-in pretty-printed golden file.
void ExpectJsonGolden(const std::string& actual, const std::string& rel) {
  const std::string normalized = Normalize(actual);
  if (Updating()) {
    WriteFile(TestData(rel), PrettyJson(normalized));
    return;
  }
  const std::string expected_text = ReadFile(TestData(rel));
  ASSERT_FALSE(expected_text.empty()) << "missing golden " << rel;
  std::optional<json::value> expected = ParseValue(expected_text);
  ASSERT_TRUE(expected.has_value()) << rel;
  EXPECT_EQ(normalized, Serialize(*expected)) << rel;
}

void ExpectTextGolden(const std::string& actual, const std::string& rel) {
  const std::string normalized = Normalize(actual);
  if (Updating()) {
    WriteFile(TestData(rel), normalized);
    return;
  }
  EXPECT_EQ(normalized, ReadFile(TestData(rel))) << rel;
}

std::string RunStream(Format from, Format to, const std::string& input,
                      const std::vector<size_t>& cuts, StreamOptions options = {}) {
  StreamConverterPtr c = StreamConverter::Make(from, to, "client-model", options);
  std::string out;
  size_t pos = 0;
  for (size_t cut : cuts) {
    EXPECT_TRUE(c->Feed(std::string_view(input).substr(pos, cut - pos), &out).ok());
    pos = cut;
  }
  EXPECT_TRUE(c->Feed(std::string_view(input).substr(pos), &out).ok());
  EXPECT_TRUE(c->Finish(&out).ok());
  return out;
}

std::string RunStream(Format from, Format to, const std::string& input) {
  return RunStream(from, to, input, {});
}

json::object ParseOrDie(const std::string& text) {
  auto o = ParseObject(text, "test");
  EXPECT_TRUE(o.ok()) << o.status() << "\n" << text;
  return o.ok() ? *o : json::object();
}

// The data objects of an SSE stream, in order.
std::vector<json::object> SseData(const std::string& sse) {
  std::vector<json::object> out;
  std::istringstream in(sse);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0 || line == "data: [DONE]") continue;
    out.push_back(ParseOrDie(line.substr(6)));
  }
  return out;
}

std::vector<std::string> SseEventNames(const std::string& sse) {
  std::vector<std::string> out;
  std::istringstream in(sse);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("event: ", 0) == 0) out.push_back(line.substr(7));
  }
  return out;
}

// --- Golden vectors: every ordered pair of formats -----------------------------------

class GoldenTest : public ::testing::TestWithParam<std::pair<Format, Format>> {};

std::vector<std::pair<Format, Format>> AllPairs() {
  std::vector<std::pair<Format, Format>> pairs;
  for (Format a : kFormats) {
    for (Format b : kFormats) {
      if (a != b) pairs.emplace_back(a, b);
    }
  }
  return pairs;
}

std::string PairName(const ::testing::TestParamInfo<std::pair<Format, Format>>& info) {
  return Stem(info.param.first) + "_to_" + Stem(info.param.second);
}

TEST_P(GoldenTest, Request) {
  const auto [from, to] = GetParam();
  const std::string input = ReadFile(TestData("requests/" + Stem(from) + ".json"));
  auto out = ConvertRequest(from, to, input, "upstream-model", true);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectJsonGolden(*out, "requests/" + Stem(from) + "_to_" + Stem(to) + ".json");
}

TEST_P(GoldenTest, Response) {
  // Provider format `from`, client format `to`.
  const auto [from, to] = GetParam();
  const std::string input = ReadFile(TestData("responses/" + Stem(from) + ".json"));
  auto out = ConvertResponse(from, to, input, "client-model");
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectJsonGolden(*out, "responses/" + Stem(from) + "_to_" + Stem(to) + ".json");
}

TEST_P(GoldenTest, Stream) {
  const auto [from, to] = GetParam();
  const std::string input = ReadFile(TestData("streams/" + Stem(from) + ".sse"));
  ASSERT_FALSE(input.empty());
  const std::string whole = RunStream(from, to, input);
  ExpectTextGolden(whole, "streams/" + Stem(from) + "_to_" + Stem(to) + ".sse");
}

TEST_P(GoldenTest, StreamInRandomPiecesMatchesWholeInput) {
  const auto [from, to] = GetParam();
  const std::string input = ReadFile(TestData("streams/" + Stem(from) + ".sse"));
  const std::string whole = Normalize(RunStream(from, to, input));
  std::mt19937 rng(1234);
  for (int round = 0; round < 50; ++round) {
    std::vector<size_t> cuts;
    size_t pos = 0;
    const size_t max_piece = round < 10 ? 3 : 64;
    while (true) {
      pos += 1 + rng() % max_piece;
      if (pos >= input.size()) break;
      cuts.push_back(pos);
    }
    ASSERT_EQ(Normalize(RunStream(from, to, input, cuts)), whole) << "round " << round;
  }
  // One byte at a time.
  std::vector<size_t> every;
  for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
  EXPECT_EQ(Normalize(RunStream(from, to, input, every)), whole);
}

TEST_P(GoldenTest, StreamOutputIsProducedIncrementally) {
  // The first upstream events yield client bytes before the upstream ends.
  const auto [from, to] = GetParam();
  const std::string input = ReadFile(TestData("streams/" + Stem(from) + ".sse"));
  StreamConverterPtr c = StreamConverter::Make(from, to, "client-model");
  std::string out;
  ASSERT_TRUE(c->Feed(std::string_view(input).substr(0, input.size() * 2 / 3), &out).ok());
  EXPECT_FALSE(out.empty());
}

TEST_P(GoldenTest, InvalidJsonIsInvalidArgument) {
  const auto [from, to] = GetParam();
  auto req = ConvertRequest(from, to, "{\"model\": ", "m", false);
  ASSERT_FALSE(req.ok());
  EXPECT_EQ(req.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(req.status().message()), HasSubstr("Invalid JSON"));
  auto resp = ConvertResponse(from, to, "[1,2", "m");
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  auto not_object = ConvertRequest(from, to, "[]", "m", false);
  EXPECT_EQ(not_object.status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllPairs, GoldenTest, ::testing::ValuesIn(AllPairs()), PairName);

// --- Round trips --------------------------------------------------------------------------

absl::StatusOr<Request> Read(Format f, const std::string& body) {
  auto o = ParseObject(body, "test");
  if (!o.ok()) return o.status();
  switch (f) {
    case FORMAT_OPENAI_CHAT:
      return chat::ReadRequest(*o);
    case FORMAT_ANTHROPIC:
      return anthropic::ReadRequest(*o);
    case FORMAT_GEMINI:
      return gemini::ReadRequest(*o);
    default:
      return responses::ReadRequest(*o);
  }
}

std::string Canonical(std::string_view json_text) {
  std::optional<json::value> v = ParseValue(json_text);
  return v ? Serialize(*v) : std::string(json_text);
}

// What every format can express of a request, as text.
std::string Summary(const Request& r, bool with_stop, bool with_top_p) {
  std::string system;
  std::string out;
  for (const Message& m : r.messages) {
    if (m.role == Role::kSystem || m.role == Role::kDeveloper) {
      if (!system.empty()) system += "\n\n";
      system += JoinText(m.blocks, "\n\n");
      continue;
    }
    out += m.role == Role::kAssistant ? "\nassistant:" : "\nuser:";
    for (const Block& b : m.blocks) {
      switch (b.kind) {
        case Block::Kind::kText:
          out += " text(" + b.text + ")";
          break;
        case Block::Kind::kMedia:
          out += " media(" + b.mime + "," + b.data + b.url + ")";
          break;
        case Block::Kind::kToolCall:
          out += " call(" + b.id + "," + b.name + "," + Canonical(b.arguments) + ")";
          break;
        case Block::Kind::kToolResult:
          out += " result(" + b.id + "," + JoinText(b.content) + ")";
          break;
        default:
          break;
      }
    }
  }
  out = "system: " + system + out + "\ntools:";
  for (const Tool& t : r.tools) {
    out += " " + t.name + "/" + t.description + "/" + Serialize(t.parameters);
  }
  out += "\nchoice: " + std::to_string(static_cast<int>(r.tool_choice.mode)) + r.tool_choice.name;
  out += "\nmax_tokens: " + (r.max_tokens ? std::to_string(*r.max_tokens) : "-");
  out += "\ntemperature: " + (r.temperature ? std::to_string(*r.temperature) : "-");
  if (with_top_p) out += "\ntop_p: " + (r.top_p ? std::to_string(*r.top_p) : "-");
  if (with_stop) {
    for (const std::string& s : r.stop) out += "\nstop: " + s;
  }
  return out;
}

// A request with only what all four formats share.
constexpr char kCommonChatRequest[] = R"({
  "model": "m",
  "messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [
      {"type": "text", "text": "Look"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
      {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    ]},
    {"role": "assistant", "content": "Calling.", "tool_calls": [
      {"id": "call_1", "type": "function",
       "function": {"name": "f", "arguments": "{\"a\":[1,2],\"b\":{\"c\":\"d\"}}"}},
      {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "one"},
    {"role": "tool", "tool_call_id": "call_2", "content": "{\"k\":2}"},
    {"role": "user", "content": "Go on"}
  ],
  "tools": [
    {"type": "function", "function": {"name": "f", "description": "F",
      "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}}},
    {"type": "function", "function": {"name": "g", "description": "G",
      "parameters": {"type": "object", "properties": {}}}}
  ],
  "tool_choice": {"type": "function", "function": {"name": "f"}},
  "max_tokens": 1000,
  "temperature": 0.5,
  "top_p": 0.8,
  "stop": ["X"]
})";

class PairTest : public ::testing::TestWithParam<std::pair<Format, Format>> {};

TEST_P(PairTest, RequestRoundTripKeepsWhatBothExpress) {
  const auto [a, b] = GetParam();
  std::string source = kCommonChatRequest;
  if (a != FORMAT_OPENAI_CHAT) {
    auto converted = ConvertRequest(FORMAT_OPENAI_CHAT, a, source, "m", false);
    ASSERT_TRUE(converted.ok()) << converted.status();
    source = *converted;
  }
  auto there = ConvertRequest(a, b, source, "m", false);
  ASSERT_TRUE(there.ok()) << there.status();
  auto back = ConvertRequest(b, a, *there, "m", false);
  ASSERT_TRUE(back.ok()) << back.status();
  // Responses has no stop sequences; Anthropic takes temperature or top_p, not both.
  const bool with_stop = a != FORMAT_OPENAI_RESPONSES && b != FORMAT_OPENAI_RESPONSES;
  const bool with_top_p = a != FORMAT_ANTHROPIC && b != FORMAT_ANTHROPIC;
  auto before = Read(a, source);
  auto after = Read(a, *back);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(Summary(*after, with_stop, with_top_p), Summary(*before, with_stop, with_top_p)) << "via " << Stem(b) << ":\n"
                                                                     << *there;
}

TEST_P(PairTest, StreamRoundTripKeepsEveryPiece) {
  // Provider stream a → client format b → back to a, read whole by a's response reader.
  const auto [a, b] = GetParam();
  const std::string input = ReadFile(TestData("streams/" + Stem(a) + ".sse"));
  const std::string there = RunStream(a, b, input);
  const std::string back = RunStream(b, a, there);
  // Tool-call arguments reassemble to the upstream's bytes (Gemini sends objects).
  auto args = [](Format f, const std::string& sse) {
    std::string all;
    for (const json::object& e : SseData(sse)) {
      if (f == FORMAT_ANTHROPIC) {
        const json::object* d = GetObject(e, "delta");
        if (d != nullptr) all += GetString(*d, "partial_json");
      } else if (f == FORMAT_OPENAI_RESPONSES) {
        if (GetString(e, "type") == "response.function_call_arguments.delta") {
          all += GetString(e, "delta");
        }
      } else if (f == FORMAT_OPENAI_CHAT) {
        const json::array* choices = GetArray(e, "choices");
        if (choices == nullptr || choices->empty()) continue;
        const json::object* d = GetObject((*choices)[0].as_object(), "delta");
        const json::array* calls = d ? GetArray(*d, "tool_calls") : nullptr;
        if (calls == nullptr) continue;
        for (const json::value& c : *calls) {
          if (const json::object* fn = GetObject(c.as_object(), "function")) {
            all += GetString(*fn, "arguments");
          }
        }
      }
    }
    return all;
  };
  if (a != FORMAT_GEMINI && b != FORMAT_GEMINI) {
    EXPECT_EQ(args(b, there), args(a, input));
    EXPECT_EQ(args(a, back), args(a, input));
  }
}

INSTANTIATE_TEST_SUITE_P(AllPairs, PairTest, ::testing::ValuesIn(AllPairs()), PairName);

// Builds a request of format `f` whose history holds the assistant turn of response `resp`.
std::string RequestWithAnswer(Format f, const std::string& resp) {
  json::object r = ParseOrDie(resp);
  json::object req;
  switch (f) {
    case FORMAT_OPENAI_CHAT: {
      json::object msg = r["choices"].as_array()[0].as_object()["message"].as_object();
      req["model"] = "m";
      req["messages"] = json::array{json::object{{"role", "user"}, {"content", "hi"}}, msg};
      break;
    }
    case FORMAT_ANTHROPIC:
      req["model"] = "m";
      req["max_tokens"] = 100;
      req["messages"] = json::array{json::object{{"role", "user"}, {"content", "hi"}},
                                    json::object{{"role", "assistant"}, {"content", r["content"]}}};
      break;
    case FORMAT_GEMINI:
      req["contents"] = json::array{
          json::object{{"role", "user"}, {"parts", json::array{json::object{{"text", "hi"}}}}},
          r["candidates"].as_array()[0].as_object()["content"]};
      break;
    default: {
      json::array input{json::object{{"role", "user"}, {"content", "hi"}}};
      for (const json::value& item : r["output"].as_array()) input.push_back(item);
      req["model"] = "m";
      req["input"] = std::move(input);
      break;
    }
  }
  return Serialize(req);
}

// The provider `p` answers a client of format `c`, which sends the answer back in its next
// request; the provider must get its opaque reasoning tokens back byte for byte.
std::string ReplayThrough(Format p, Format c, const std::string& provider_response) {
  auto client = ConvertResponse(p, c, provider_response, "client-model");
  EXPECT_TRUE(client.ok()) << client.status();
  auto next = ConvertRequest(c, p, RequestWithAnswer(c, *client), "m", false);
  EXPECT_TRUE(next.ok()) << next.status();
  return next.ok() ? *next : "";
}

TEST(RoundTripTest, AnthropicThinkingSignaturesSurviveEveryClientFormat) {
  const std::string resp = ReadFile(TestData("responses/anthropic.json"));
  for (Format c : {FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, FORMAT_GEMINI}) {
    json::object req = ParseOrDie(ReplayThrough(FORMAT_ANTHROPIC, c, resp));
    const json::array& content = req["messages"].as_array()[1].as_object()["content"].as_array();
    ASSERT_EQ(content.size(), 4u) << Stem(c) << ": " << Serialize(req);
    EXPECT_EQ(
        Serialize(content[0]),
        R"({"type":"thinking","thinking":"Let me think.",)"
        R"("signature":"EqQBCkgIARABGAIiQL2x+/sig=="})")
        << Stem(c);
    EXPECT_EQ(Serialize(content[1]), R"({"type":"redacted_thinking","data":"EmwKAhgBEgy3va"})")
        << Stem(c);
    EXPECT_EQ(GetString(content[3].as_object(), "id"), "toolu_01A") << Stem(c);
  }
}

TEST(RoundTripTest, AnthropicStreamSignaturesSurviveEveryClientFormat) {
  const std::string input = ReadFile(TestData("streams/anthropic.sse"));
  for (Format c : {FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, FORMAT_GEMINI}) {
    const std::string back = RunStream(c, FORMAT_ANTHROPIC, RunStream(FORMAT_ANTHROPIC, c, input));
    std::string thinking;
    std::vector<std::string> signatures;
    for (const json::object& e : SseData(back)) {
      if (const json::object* d = GetObject(e, "delta")) {
        thinking += GetString(*d, "thinking");
        if (HasString(*d, "signature")) signatures.emplace_back(GetString(*d, "signature"));
      }
      if (const json::object* cb = GetObject(e, "content_block");
          cb != nullptr && GetString(*cb, "type") == "redacted_thinking") {
        signatures.emplace_back(GetString(*cb, "data"));
      }
    }
    EXPECT_EQ(thinking, "Let me think.") << Stem(c);
    EXPECT_THAT(signatures, ::testing::ElementsAre("EqQBCkgIARABGAIiQL2x+/sig==", "EmwKAhgBEgy3va"))
        << Stem(c) << "\n"
        << back;
  }
}

TEST(RoundTripTest, GeminiThoughtSignatureReturnsOnItsFunctionCall) {
  const std::string resp = ReadFile(TestData("responses/gemini.json"));
  for (Format c : {FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC}) {
    json::object req = ParseOrDie(ReplayThrough(FORMAT_GEMINI, c, resp));
    const json::array& parts = req["contents"].as_array()[1].as_object()["parts"].as_array();
    bool found = false;
    for (const json::value& p : parts) {
      const json::object* fc = GetObject(p.as_object(), "functionCall");
      if (fc == nullptr) continue;
      found = true;
      EXPECT_EQ(GetString(p.as_object(), "thoughtSignature"), "CiQBVKhc7sig") << Stem(c);
      EXPECT_EQ(GetString(*fc, "name"), "list_dir");
    }
    EXPECT_TRUE(found) << Stem(c) << ": " << Serialize(req);
  }
}

TEST(RoundTripTest, ResponsesEncryptedReasoningReturnsWithItsId) {
  const std::string resp = ReadFile(TestData("responses/responses.json"));
  for (Format c : {FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, FORMAT_GEMINI}) {
    json::object req = ParseOrDie(ReplayThrough(FORMAT_OPENAI_RESPONSES, c, resp));
    bool found = false;
    for (const json::value& item : req["input"].as_array()) {
      if (GetString(item.as_object(), "type") != "reasoning") continue;
      found = true;
      EXPECT_EQ(GetString(item.as_object(), "id"), "rs_1") << Stem(c);
      EXPECT_EQ(GetString(item.as_object(), "encrypted_content"), "gAAAAABenc") << Stem(c);
    }
    EXPECT_TRUE(found) << Stem(c) << ": " << Serialize(req);
  }
}

TEST(RoundTripTest, ForeignReasoningNeverReachesAnotherProvider) {
  // A Gemini signature replayed by a Chat client is dropped on the way to Anthropic and an
  // Anthropic one on the way to Gemini; unsigned reasoning never reaches Anthropic.
  const std::string chat = R"({"model":"m","messages":[
    {"role":"user","content":"hi"},
    {"role":"assistant","content":"a","reasoning_content":"plain","thinking_blocks":[
      {"type":"thinking","thinking":"g","signature":"gemini:SIG"},
      {"type":"thinking","thinking":"x","signature":"ANTH"},
      {"type":"thinking","thinking":"u","signature":""}]},
    {"role":"user","content":"more"}]})";
  auto anthropic = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, chat, "m", false);
  ASSERT_TRUE(anthropic.ok());
  EXPECT_THAT(*anthropic, HasSubstr(R"({"type":"thinking","thinking":"x","signature":"ANTH"})"));
  EXPECT_THAT(*anthropic, ::testing::Not(HasSubstr("SIG")));
  EXPECT_THAT(*anthropic, ::testing::Not(HasSubstr(R"("thinking":"u")")));
  auto gemini = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_GEMINI, chat, "m", false);
  ASSERT_TRUE(gemini.ok());
  EXPECT_THAT(*gemini, HasSubstr(R"({"text":"g","thought":true,"thoughtSignature":"SIG"})"));
  EXPECT_THAT(*gemini, ::testing::Not(HasSubstr("ANTH")));
}

TEST(RoundTripTest, ChatHistoryRebuiltFromAStreamKeepsTheSignedText) {
  // Our Chat stream sends reasoning text as reasoning_content and the signature in a
  // thinking block of its own; a client that merges the deltas replays both. Anthropic
  // verifies the signature against the text, so the text must be put back in the block.
  const std::string input = ReadFile(TestData("streams/anthropic.sse"));
  const std::vector<json::object> events = SseData(RunStream(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, input));
  std::string reasoning;
  json::array blocks;
  for (const json::object& e : events) {
    const json::array* choices = GetArray(e, "choices");
    if (choices == nullptr || choices->empty()) continue;
    const json::object* d = GetObject(choices->at(0).as_object(), "delta");
    if (d == nullptr) continue;
    reasoning += GetString(*d, "reasoning_content");
    if (const json::array* tb = GetArray(*d, "thinking_blocks")) {
      for (const json::value& b : *tb) blocks.push_back(b);
    }
  }
  ASSERT_FALSE(blocks.empty());
  json::object first = blocks[0].as_object();
  ASSERT_EQ(GetString(first, "thinking"), "") << Serialize(blocks);
  const std::string chat = Serialize(json::object{
      {"model", "m"},
      {"messages", json::array{json::object{{"role", "user"}, {"content", "hi"}},
                               json::object{{"role", "assistant"},
                                            {"content", "a"},
                                            {"reasoning_content", reasoning},
                                            {"thinking_blocks", json::array{first}}}}}});
  auto anthropic = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, chat, "m", false);
  ASSERT_TRUE(anthropic.ok()) << anthropic.status();
  EXPECT_THAT(*anthropic, HasSubstr(R"({"type":"thinking","thinking":"Let me think.",)"
                                    R"("signature":"EqQBCkgIARABGAIiQL2x+/sig=="})"));
  // With several blocks the split is unknown: they are sent as they came.
  const std::string two = R"({"model":"m","messages":[{"role":"user","content":"hi"},
    {"role":"assistant","content":"a","reasoning_content":"xy","thinking_blocks":[
      {"type":"thinking","thinking":"","signature":"S1"},
      {"type":"thinking","thinking":"","signature":"S2"}]}]})";
  auto out = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, two, "m", false);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, ::testing::Not(HasSubstr(R"("thinking":"xy")")));
}

TEST(RoundTripTest, GeminiSignatureOnTheLastTextPieceKeepsTheTextWhole) {
  // Gemini signs the last text part of an answer; in a stream that is a later chunk. The
  // client must still get one text block (Claude Code prints only the last one), and the
  // signature must go back on a text part.
  const std::string input =
      "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"result:\"}],\"role\":\"model\"},"
      "\"index\":0}],\"responseId\":\"r1\"}\r\n\r\n"
      "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\" 42\",\"thoughtSignature\":\"SIGT\"}],"
      "\"role\":\"model\"},\"index\":0,\"finishReason\":\"STOP\"}],\"responseId\":\"r1\"}\r\n\r\n";
  const std::string anthropic = RunStream(FORMAT_GEMINI, FORMAT_ANTHROPIC, input);
  std::vector<std::string> starts;
  std::string text;
  std::string signature;
  for (const json::object& e : SseData(anthropic)) {
    if (const json::object* cb = GetObject(e, "content_block")) {
      starts.emplace_back(GetString(*cb, "type"));
    }
    if (const json::object* d = GetObject(e, "delta")) {
      text += GetString(*d, "text");
      if (HasString(*d, "signature")) signature.assign(GetString(*d, "signature"));
    }
  }
  // Anthropic clients show the last block: the signature (not required back by Gemini for
  // text) is left out rather than sent after the answer.
  EXPECT_THAT(starts, ::testing::ElementsAre("text")) << anthropic;
  EXPECT_EQ(text, "result: 42");
  EXPECT_EQ(signature, "");
  for (Format c : {FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES}) {
    const std::string back = RunStream(c, FORMAT_GEMINI, RunStream(FORMAT_GEMINI, c, input));
    std::string parts;
    for (const json::object& e : SseData(back)) {
      const json::array* cands = GetArray(e, "candidates");
      if (cands == nullptr || cands->empty()) continue;
      const json::object* content = GetObject(cands->at(0).as_object(), "content");
      if (content == nullptr) continue;
      for (const json::value& p : content->at("parts").as_array()) parts += Serialize(p);
    }
    EXPECT_THAT(parts, HasSubstr(R"("thoughtSignature":"SIGT")")) << Stem(c) << ": " << back;
  }
  // A replayed history puts it back on the text part.
  auto resp = ConvertResponse(FORMAT_GEMINI, FORMAT_ANTHROPIC,
                              R"({"candidates":[{"content":{"role":"model","parts":[)"
                              R"({"text":"result: 42","thoughtSignature":"SIGT"}]},)"
                              R"("finishReason":"STOP"}]})",
                              "m");
  ASSERT_TRUE(resp.ok()) << resp.status();
  json::object msg = ParseOrDie(*resp);
  // The same blocks in streamed order: text, then the thinking block with the signature.
  json::array content = msg["content"].as_array();
  std::reverse(content.begin(), content.end());
  const std::string history = Serialize(json::object{
      {"model", "m"},
      {"max_tokens", 100},
      {"messages", json::array{json::object{{"role", "user"}, {"content", "hi"}},
                               json::object{{"role", "assistant"}, {"content", content}},
                               json::object{{"role", "user"}, {"content", "more"}}}}});
  auto gemini = ConvertRequest(FORMAT_ANTHROPIC, FORMAT_GEMINI, history, "gemini-3-pro", false);
  ASSERT_TRUE(gemini.ok()) << gemini.status();
  EXPECT_THAT(*gemini, HasSubstr(R"({"text":"result: 42","thoughtSignature":"SIGT"})")) << *gemini;
}

TEST(RoundTripTest, Gemini3CallsWithoutSignatureGetTheSkipSentinel) {
  const std::string chat = R"({"model":"m","messages":[{"role":"user","content":"hi"},
    {"role":"assistant","content":null,"tool_calls":[
      {"id":"c1","type":"function","function":{"name":"a","arguments":"{}"}},
      {"id":"c2","type":"function","function":{"name":"b","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"1"},{"role":"tool","tool_call_id":"c2","content":"2"},
    {"role":"assistant","content":null,"tool_calls":[
      {"id":"c3","type":"function","function":{"name":"a","arguments":"{}"},
       "extra_content":{"google":{"thought_signature":"REAL"}}}]},
    {"role":"tool","tool_call_id":"c3","content":"3"}]})";
  auto g3 = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_GEMINI, chat, "gemini-3-pro-preview", false);
  ASSERT_TRUE(g3.ok()) << g3.status();
  json::object req = ParseOrDie(*g3);
  std::vector<std::string> signatures;
  for (const json::value& c : req["contents"].as_array()) {
    for (const json::value& p : c.as_object().at("parts").as_array()) {
      if (GetObject(p.as_object(), "functionCall") == nullptr) continue;
      signatures.emplace_back(GetString(p.as_object(), "thoughtSignature"));
    }
  }
  // The first call of a turn carries it (parallel calls after it need none); a real
  // signature stays.
  EXPECT_THAT(signatures, ::testing::ElementsAre("skip_thought_signature_validator", "", "REAL")) << *g3;
  for (std::string_view model : {"gemini-2.5-pro", "gemini-2.0-flash", "models/gemini-2.5-flash"}) {
    auto g25 = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_GEMINI, chat, model, false);
    ASSERT_TRUE(g25.ok());
    EXPECT_THAT(*g25, ::testing::Not(HasSubstr("skip_thought_signature_validator"))) << model;
  }
  auto g31 = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_GEMINI, chat, "google/gemini-3.1-flash", false);
  ASSERT_TRUE(g31.ok());
  EXPECT_THAT(*g31, HasSubstr("skip_thought_signature_validator"));
  // Gemini CLI puts the sentinel on calls it got without a signature: it vouches for
  // nothing and goes to no other provider.
  const std::string gemini = R"({"contents":[{"role":"user","parts":[{"text":"hi"}]},
    {"role":"model","parts":[{"functionCall":{"name":"a","args":{}},
      "thoughtSignature":"skip_thought_signature_validator"}]},
    {"role":"user","parts":[{"functionResponse":{"name":"a","response":{"output":"1"}}}]}]})";
  for (Format to : {FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC}) {
    auto out = ConvertRequest(FORMAT_GEMINI, to, gemini, "m", false);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_THAT(*out, ::testing::Not(HasSubstr("skip_thought"))) << Stem(to) << ": " << *out;
    EXPECT_THAT(*out, HasSubstr(R"("a")")) << Stem(to);
  }
}

// --- Mappings -------------------------------------------------------------------------

json::object ChatToAnthropic(const std::string& extra) {
  const std::string body =
      R"({"model":"m","messages":[{"role":"user","content":"hi"}])" + extra + "}";
  auto out = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, body, "claude", false);
  EXPECT_TRUE(out.ok()) << out.status();
  return ParseOrDie(out.ok() ? *out : "{}");
}

TEST(MappingTest, ReasoningEffortBecomesThinkingBudget) {
  const std::pair<std::string, int64_t> cases[] = {
      {"low", 1024}, {"medium", 10240}, {"high", 131072}};
  for (const auto& [effort, budget] : cases) {
    json::object a =
        ChatToAnthropic(R"(,"reasoning_effort":")" + effort + R"(","temperature":0.3,"top_k":5)");
    EXPECT_EQ(Serialize(a["thinking"]),
              R"({"type":"enabled","budget_tokens":)" + std::to_string(budget) + "}");
    EXPECT_EQ(*GetInt(a, "max_tokens"), budget + 4096) << effort;
    EXPECT_EQ(Find(a, "temperature"), nullptr);
    EXPECT_EQ(Find(a, "top_k"), nullptr);
  }
  // Within a client's limit, the budget leaves room for the answer.
  json::object limited = ChatToAnthropic(R"(,"reasoning_effort":"high","max_tokens":8000)");
  EXPECT_EQ(*GetInt(limited, "max_tokens"), 8000);
  EXPECT_EQ(*GetInt(limited["thinking"].as_object(), "budget_tokens"), 7999);
  // Too small a limit for any thinking: thinking off, temperature kept.
  json::object tiny =
      ChatToAnthropic(R"(,"reasoning_effort":"low","max_tokens":500,"temperature":0.3)");
  EXPECT_EQ(Find(tiny, "thinking"), nullptr);
  EXPECT_EQ(*GetNumber(tiny, "temperature"), 0.3);
}

TEST(MappingTest, AnthropicConstraints) {
  const std::string tools =
      R"(,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])";
  // A forced tool call wins over thinking, which Anthropic refuses alongside it.
  json::object forced = ChatToAnthropic(tools + R"(,"tool_choice":"required","reasoning_effort":"low")");
  EXPECT_EQ(Find(forced, "thinking"), nullptr);
  EXPECT_EQ(Serialize(forced["tool_choice"]), R"({"type":"any"})");
  // Temperature or top_p, not both.
  json::object sampling = ChatToAnthropic(R"(,"temperature":0.2,"top_p":0.5)");
  EXPECT_EQ(*GetNumber(sampling, "temperature"), 0.2);
  EXPECT_EQ(Find(sampling, "top_p"), nullptr);
  EXPECT_EQ(*GetNumber(ChatToAnthropic(R"(,"top_p":0.5)"), "top_p"), 0.5);
}

TEST(MappingTest, OpenAiModelFamilies) {
  const std::string body = R"({"model":"m","max_tokens":10,"temperature":0.2,
    "thinking":{"type":"enabled","budget_tokens":2048},
    "stop_sequences":["a","b","c","d","e"],"messages":[{"role":"user","content":"hi"}]})";
  json::object o3 =
      ParseOrDie(*ConvertRequest(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, body, "openai/o3", false));
  EXPECT_EQ(Find(o3, "temperature"), nullptr);
  EXPECT_EQ(*GetInt(o3, "max_completion_tokens"), 10);
  EXPECT_EQ(GetString(o3, "reasoning_effort"), "medium");
  EXPECT_EQ(GetArray(o3, "stop")->size(), 4u);
  json::object gpt4 =
      ParseOrDie(*ConvertRequest(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, body, "gpt-4o", false));
  EXPECT_EQ(*GetNumber(gpt4, "temperature"), 0.2);
  EXPECT_EQ(*GetInt(gpt4, "max_tokens"), 10);
  EXPECT_EQ(Find(gpt4, "reasoning_effort"), nullptr);
  json::object resp = ParseOrDie(
      *ConvertRequest(FORMAT_ANTHROPIC, FORMAT_OPENAI_RESPONSES, body, "gpt-5-codex", false));
  EXPECT_EQ(Find(resp, "temperature"), nullptr);
  EXPECT_EQ(Serialize(resp["reasoning"]), R"({"effort":"medium","summary":"auto"})");
}

TEST(MappingTest, AnthropicGetsDefaultMaxTokens) {
  json::object a = ChatToAnthropic("");
  EXPECT_EQ(*GetInt(a, "max_tokens"), 4096);
}

TEST(MappingTest, ThinkingOffWhenLastToolTurnHasNoAnthropicSignature) {
  const std::string body = R"({"model":"m","reasoning_effort":"high","messages":[
    {"role":"user","content":"hi"},
    {"role":"assistant","content":null,"tool_calls":[
      {"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
    {"role":"tool","tool_call_id":"c1","content":"ok"}]})";
  auto out = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, body, "m", false);
  ASSERT_TRUE(out.ok());
  EXPECT_THAT(*out, ::testing::Not(HasSubstr("\"thinking\"")));
}

TEST(MappingTest, AnthropicBudgetBecomesEffortAndGeminiConfig) {
  const std::string body =
      R"({"model":"m","max_tokens":4000,"thinking":{"type":"enabled","budget_tokens":2048},
    "messages":[{"role":"user","content":"hi"}]})";
  auto chat = ConvertRequest(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, body, "m", false);
  EXPECT_THAT(*chat, HasSubstr(R"("reasoning_effort":"medium")"));
  auto gemini = ConvertRequest(FORMAT_ANTHROPIC, FORMAT_GEMINI, body, "m", false);
  EXPECT_THAT(*gemini,
              HasSubstr(R"("thinkingConfig":{"thinkingBudget":2048,"includeThoughts":true})"));
  auto responses = ConvertRequest(FORMAT_ANTHROPIC, FORMAT_OPENAI_RESPONSES, body, "m", false);
  EXPECT_THAT(*responses, HasSubstr(R"("reasoning":{"effort":"medium","summary":"auto"})"));
  const std::string off = R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}],
    "generationConfig":{"thinkingConfig":{"thinkingBudget":0}}})";
  auto anthropic = ConvertRequest(FORMAT_GEMINI, FORMAT_ANTHROPIC, off, "m", false);
  EXPECT_THAT(*anthropic, HasSubstr(R"("thinking":{"type":"disabled"})"));
}

TEST(MappingTest, ToolChoice) {
  const std::string tools =
      R"(,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}])";
  EXPECT_EQ(Serialize(ChatToAnthropic(tools + R"(,"tool_choice":"required")")["tool_choice"]),
            R"({"type":"any"})");
  EXPECT_EQ(Serialize(ChatToAnthropic(tools + R"(,"tool_choice":"none")")["tool_choice"]),
            R"({"type":"none"})");
  EXPECT_EQ(
      Serialize(ChatToAnthropic(
          tools + R"(,"tool_choice":{"type":"function","function":{"name":"f"}})")["tool_choice"]),
      R"({"type":"tool","name":"f"})");
  EXPECT_EQ(Serialize(ChatToAnthropic(tools + R"(,"parallel_tool_calls":false)")["tool_choice"]),
            R"({"type":"auto","disable_parallel_tool_use":true})");
}

TEST(MappingTest, StopReasons) {
  struct Case {
    std::string anthropic;
    std::string chat;
    std::string gemini;
    std::string responses_status;
  };
  const Case cases[] = {{"end_turn", "stop", "STOP", "completed"},
                        {"stop_sequence", "stop", "STOP", "completed"},
                        {"max_tokens", "length", "MAX_TOKENS", "incomplete"},
                        {"tool_use", "tool_calls", "STOP", "completed"},
                        {"refusal", "content_filter", "SAFETY", "incomplete"}};
  for (const Case& c : cases) {
    const std::string body = R"({"id":"msg_1","type":"message","role":"assistant","model":"m",
      "content":[{"type":"text","text":"x"}],"stop_reason":")" +
                             c.anthropic + R"(","usage":{"input_tokens":1,"output_tokens":1}})";
    json::object chat =
        ParseOrDie(*ConvertResponse(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, body, "m"));
    EXPECT_EQ(GetString(chat["choices"].as_array()[0].as_object(), "finish_reason"), c.chat);
    json::object gem = ParseOrDie(*ConvertResponse(FORMAT_ANTHROPIC, FORMAT_GEMINI, body, "m"));
    EXPECT_EQ(GetString(gem["candidates"].as_array()[0].as_object(), "finishReason"), c.gemini);
    json::object resp =
        ParseOrDie(*ConvertResponse(FORMAT_ANTHROPIC, FORMAT_OPENAI_RESPONSES, body, "m"));
    EXPECT_EQ(GetString(resp, "status"), c.responses_status);
  }
  for (const char* reason : {"SAFETY", "RECITATION"}) {
    const std::string body =
        std::string(R"({"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":")") +
        reason + R"("}]})";
    json::object chat = ParseOrDie(*ConvertResponse(FORMAT_GEMINI, FORMAT_OPENAI_CHAT, body, "m"));
    EXPECT_EQ(GetString(chat["choices"].as_array()[0].as_object(), "finish_reason"),
              "content_filter");
    json::object anth = ParseOrDie(*ConvertResponse(FORMAT_GEMINI, FORMAT_ANTHROPIC, body, "m"));
    EXPECT_EQ(GetString(anth, "stop_reason"), "refusal");
  }
  const std::string incomplete = R"({"id":"r","object":"response","status":"incomplete",
    "incomplete_details":{"reason":"max_output_tokens"},"output":[]})";
  json::object anth =
      ParseOrDie(*ConvertResponse(FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC, incomplete, "m"));
  EXPECT_EQ(GetString(anth, "stop_reason"), "max_tokens");
}

TEST(MappingTest, StopSequenceSurvivesAnthropicToAnthropicViaChat) {
  const std::string body = R"({"model":"m","max_tokens":10,"stop_sequences":["A","B"],
    "messages":[{"role":"user","content":"hi"}]})";
  auto chat = ConvertRequest(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, body, "m", false);
  EXPECT_THAT(*chat, HasSubstr(R"("stop":["A","B"])"));
  auto gemini = ConvertRequest(FORMAT_ANTHROPIC, FORMAT_GEMINI, body, "m", false);
  EXPECT_THAT(*gemini, HasSubstr(R"("stopSequences":["A","B"])"));
}

TEST(MappingTest, CandidatesAndN) {
  const std::string body = R"({"model":"m","n":2,"messages":[{"role":"user","content":"hi"}]})";
  auto gemini = ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_GEMINI, body, "m", false);
  EXPECT_THAT(*gemini, HasSubstr(R"("candidateCount":2)"));
  const std::string two = R"({"candidates":[
    {"content":{"parts":[{"text":"a"}],"role":"model"},"finishReason":"STOP","index":0},
    {"content":{"parts":[{"text":"b"}],"role":"model"},"finishReason":"MAX_TOKENS","index":1}]})";
  json::object chat = ParseOrDie(*ConvertResponse(FORMAT_GEMINI, FORMAT_OPENAI_CHAT, two, "m"));
  const json::array& choices = chat["choices"].as_array();
  ASSERT_EQ(choices.size(), 2u);
  EXPECT_EQ(GetInt(choices[1].as_object(), "index"), 1);
  EXPECT_EQ(GetString(choices[1].as_object(), "finish_reason"), "length");
}

TEST(MappingTest, UnknownFieldsNeverFail) {
  const std::string chat = R"({"model":"m","future":1,"messages":[
    {"role":"user","content":[{"type":"hologram","data":1},{"type":"text","text":"hi","x":2}],
     "y":3}],
    "tools":[{"type":"computer","display":1}],"tool_choice":{"type":"allowed_tools"},
    "modalities":["text"]})";
  const std::string anthropic = R"({"model":"m","max_tokens":1,"messages":[
    {"role":"user","content":[{"type":"search_result","source":"s"},
                              {"type":"text","text":"hi","citations":[]}]}],
    "container":"c","mcp_servers":[]})";
  const std::string gemini =
      R"({"contents":[{"role":"user","parts":[{"executableCode":{}},{"text":"hi"}]}],
    "cachedContent":"c","labels":{}})";
  const std::string responses = R"({"model":"m","input":[{"type":"item_reference","id":"x"},
    {"type":"local_shell_call","id":"y"},{"role":"user","content":"hi"}],"truncation":"auto",
    "background":false})";
  const std::pair<Format, std::string> inputs[] = {{FORMAT_OPENAI_CHAT, chat},
                                                   {FORMAT_ANTHROPIC, anthropic},
                                                   {FORMAT_GEMINI, gemini},
                                                   {FORMAT_OPENAI_RESPONSES, responses}};
  for (const auto& [from, body] : inputs) {
    for (Format to : kFormats) {
      if (to == from) continue;
      auto out = ConvertRequest(from, to, body, "m", true);
      ASSERT_TRUE(out.ok()) << Stem(from) << "→" << Stem(to) << ": " << out.status();
      EXPECT_THAT(*out, HasSubstr("hi"));
    }
  }
}

TEST(MappingTest, InvalidRequestsAreInvalidArgument) {
  EXPECT_EQ(ConvertRequest(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, R"({"model":"m"})", "m", false)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  auto prev =
      ConvertRequest(FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC,
                     R"({"model":"m","input":"hi","previous_response_id":"resp_1"})", "m", false);
  EXPECT_EQ(prev.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(prev.status().message()), HasSubstr("previous_response_id"));
}

TEST(MappingTest, SameFormatIsBytePassThrough) {
  const std::string body = R"({"model":"x", "weird" : [1,2,3]})";
  for (Format f : kFormats) {
    EXPECT_EQ(*ConvertRequest(f, f, body, "other", true), body);
    EXPECT_EQ(*ConvertResponse(f, f, body, "other"), body);
    std::string out;
    auto c = StreamConverter::Make(f, f, "m");
    ASSERT_TRUE(c->Feed("data: {}\n\n", &out).ok());
    EXPECT_EQ(out, "data: {}\n\n");
  }
  EXPECT_EQ(StreamConverter::Make(common::v1::FORMAT_UNSPECIFIED, FORMAT_GEMINI, "m"), nullptr);
}

// --- Stream shapes --------------------------------------------------------------------

TEST(StreamShapeTest, AnthropicEventOrder) {
  for (Format from : {FORMAT_OPENAI_CHAT, FORMAT_GEMINI, FORMAT_OPENAI_RESPONSES}) {
    const std::string out =
        RunStream(from, FORMAT_ANTHROPIC, ReadFile(TestData("streams/" + Stem(from) + ".sse")));
    std::vector<std::string> names = SseEventNames(out);
    std::vector<json::object> data = SseData(out);
    ASSERT_EQ(names.size(), data.size());
    ASSERT_GE(names.size(), 3u);
    EXPECT_EQ(names.front(), "message_start");
    EXPECT_EQ(names[names.size() - 2], "message_delta");
    EXPECT_EQ(names.back(), "message_stop");
    int open = -1;
    int next = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      EXPECT_EQ(GetString(data[i], "type"), names[i]);
      if (names[i] == "content_block_start") {
        EXPECT_EQ(open, -1) << "block started inside another";
        open = static_cast<int>(*GetInt(data[i], "index"));
        EXPECT_EQ(open, next++);
      } else if (names[i] == "content_block_delta") {
        EXPECT_EQ(*GetInt(data[i], "index"), open);
      } else if (names[i] == "content_block_stop") {
        EXPECT_EQ(*GetInt(data[i], "index"), open);
        open = -1;
      }
    }
  }
}

TEST(StreamShapeTest, ResponsesSequenceNumbersAndEventNames) {
  for (Format from : {FORMAT_OPENAI_CHAT, FORMAT_GEMINI, FORMAT_ANTHROPIC}) {
    const std::string out = RunStream(from, FORMAT_OPENAI_RESPONSES,
                                      ReadFile(TestData("streams/" + Stem(from) + ".sse")));
    std::vector<std::string> names = SseEventNames(out);
    std::vector<json::object> data = SseData(out);
    ASSERT_EQ(names.size(), data.size());
    EXPECT_EQ(names[0], "response.created");
    EXPECT_EQ(names[1], "response.in_progress");
    EXPECT_EQ(names.back(), "response.completed");
    for (size_t i = 0; i < data.size(); ++i) {
      EXPECT_EQ(GetString(data[i], "type"), names[i]);
      EXPECT_EQ(*GetInt(data[i], "sequence_number"), static_cast<int64_t>(i));
    }
  }
}

TEST(StreamShapeTest, ChatUsageChunkOnlyWhenAsked) {
  const std::string input = ReadFile(TestData("streams/anthropic.sse"));
  const std::string with = RunStream(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, input);
  EXPECT_THAT(with, HasSubstr(R"("choices":[],"usage")"));
  EXPECT_TRUE(absl::EndsWith(with, "data: [DONE]\n\n"));
  const std::string without =
      RunStream(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, input, {}, StreamOptions{false});
  EXPECT_THAT(without, ::testing::Not(HasSubstr("\"usage\"")));
  EXPECT_TRUE(absl::EndsWith(without, "data: [DONE]\n\n"));
  const std::string gemini = RunStream(FORMAT_ANTHROPIC, FORMAT_GEMINI, input);
  EXPECT_THAT(gemini, ::testing::Not(HasSubstr("[DONE]")));
}

TEST(StreamShapeTest, UpstreamCutShortIsClosedOnFinish) {
  const std::string cut =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\","
      "\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n"
      "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
      "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
      "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
      "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n";
  const std::string chat = RunStream(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, cut);
  EXPECT_THAT(chat, HasSubstr(R"("finish_reason":"stop")"));
  EXPECT_TRUE(absl::EndsWith(chat, "data: [DONE]\n\n"));
  const std::string responses = RunStream(FORMAT_ANTHROPIC, FORMAT_OPENAI_RESPONSES, cut);
  EXPECT_THAT(responses, HasSubstr("response.output_text.done"));
  EXPECT_THAT(responses, HasSubstr("event: response.completed"));
  const std::string chat_cut =
      "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
  const std::string anthropic = RunStream(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, chat_cut);
  EXPECT_THAT(anthropic, HasSubstr("event: content_block_stop"));
  EXPECT_THAT(anthropic, HasSubstr(R"("stop_reason":"end_turn")"));
  EXPECT_TRUE(
      absl::EndsWith(anthropic, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

TEST(StreamShapeTest, UpstreamErrorsBecomeClientErrors) {
  const std::string anthropic_error =
      "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
      "\"message\":\"Overloaded\"}}\n\n";
  const std::string chat = RunStream(FORMAT_ANTHROPIC, FORMAT_OPENAI_CHAT, anthropic_error);
  EXPECT_THAT(chat, HasSubstr(R"("error":{"message":"Overloaded","type":"overloaded_error")"));
  const std::string chat_error =
      "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
  const std::string anthropic = RunStream(FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC, chat_error);
  EXPECT_THAT(anthropic, HasSubstr("event: error\n"));
  EXPECT_THAT(anthropic, HasSubstr(R"("message":"boom")"));
  const std::string responses = RunStream(FORMAT_OPENAI_CHAT, FORMAT_OPENAI_RESPONSES, chat_error);
  EXPECT_THAT(responses, HasSubstr("event: response.failed"));
}

TEST(StreamShapeTest, ResponsesItemsWithoutDeltas) {
  const std::string input =
      "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\"}}\n\n"
      "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\","
      "\"output_index\":0,\"item\":{\"type\":\"message\",\"content\":[{\"type\":\"output_text\","
      "\"text\":\"Hello\"}]}}\n\n"
      "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\","
      "\"output_index\":1,\"item\":{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\","
      "\"arguments\":\"{\\\"a\\\":1}\"}}\n\n"
      "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";
  const std::string out = RunStream(FORMAT_OPENAI_RESPONSES, FORMAT_ANTHROPIC, input);
  EXPECT_THAT(out, HasSubstr(R"("text_delta","text":"Hello")"));
  EXPECT_THAT(out, HasSubstr(R"("partial_json":"{\"a\":1}")"));
  EXPECT_THAT(out, HasSubstr(R"("stop_reason":"tool_use")"));
}

TEST(StreamShapeTest, GarbageNeverFails) {
  const std::string garbage = "data: {not json\n\nevent: x\ndata: [1,2]\n\n: comment\n\ndata: \n\n";
  for (Format from : kFormats) {
    for (Format to : kFormats) {
      if (from == to) continue;
      StreamConverterPtr c = StreamConverter::Make(from, to, "m");
      std::string out;
      EXPECT_TRUE(c->Feed(garbage, &out).ok());
      EXPECT_TRUE(c->Finish(&out).ok());
    }
  }
}

}  // namespace
}  // namespace omniroute::translator

#pragma once

// The format-neutral model every conversion goes through: each wire format has a reader
// into it and a writer out of it, so a field both ends can express survives even when a
// third format has no room for it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "json_util.h"

namespace omniroute::translator {

// Who issued an opaque reasoning token (signature, encrypted content). A token is only
// ever sent back to a provider of the same family.
enum class Origin { kNone, kAnthropic, kGemini, kOpenAi };

struct Block {
  enum class Kind {
    kText,
    kMedia,     // image, document or audio, inline (base64) or by URL
    kThinking,  // reasoning text, with the signature that authenticates it if any
    kRedacted,  // Anthropic redacted_thinking: only `data` travels
    kToolCall,
    kToolResult,
  };
  Kind kind = Kind::kText;
  std::string text;  // kText, kThinking

  // kMedia
  std::string mime;
  std::string data;  // base64 payload; kRedacted: the redacted data
  std::string url;
  std::string filename;
  std::string detail;  // OpenAI image detail

  // kThinking / kRedacted
  std::string signature;
  Origin origin = Origin::kNone;
  std::string item_id;  // Responses reasoning item id

  // kToolCall / kToolResult
  std::string id;              // call id; for a result, the call it answers
  std::string name;            // function name
  std::string arguments;       // kToolCall: JSON text of the arguments
  std::vector<Block> content;  // kToolResult: text and media
  bool is_error = false;

  static Block Text(std::string t) {
    Block b;
    b.text = std::move(t);
    return b;
  }
};

enum class Role { kSystem, kDeveloper, kUser, kAssistant };

struct Message {
  Role role = Role::kUser;
  std::vector<Block> blocks;
};

struct Tool {
  std::string name;
  std::string description;
  json::value parameters;  // JSON Schema; null when the tool takes none
  std::optional<bool> strict;
};

struct ToolChoice {
  enum class Mode { kUnset, kAuto, kNone, kRequired, kTool };
  Mode mode = Mode::kUnset;
  std::string name;  // kTool
};

enum class ThinkingMode { kUnset, kDisabled, kEnabled, kAdaptive };
enum class OutputFormat { kUnset, kText, kJsonObject, kJsonSchema };

struct Request {
  std::vector<Message> messages;  // system and developer messages stay in place
  std::vector<Tool> tools;
  ToolChoice tool_choice;
  std::optional<bool> parallel_tool_calls;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> top_k;
  std::optional<double> presence_penalty;
  std::optional<double> frequency_penalty;
  std::optional<int64_t> seed;
  std::optional<int64_t> n;
  std::vector<std::string> stop;
  bool include_usage = false;

  ThinkingMode thinking = ThinkingMode::kUnset;
  std::string effort;             // minimal, low, medium, high (as the client said it)
  std::optional<int64_t> budget;  // thinking tokens
  std::optional<bool> include_thoughts;

  OutputFormat format = OutputFormat::kUnset;
  json::value schema;
  std::string schema_name;
  std::string schema_description;
  std::optional<bool> schema_strict;

  std::string user;
};

enum class StopReason { kUnset, kStop, kLength, kToolCalls, kContentFilter };

// Token counts with OpenAI's meaning: `input` includes cached and cache-written tokens,
// `output` includes reasoning tokens.
struct Usage {
  bool present = false;
  int64_t input = 0;
  int64_t cached = 0;       // read from cache
  int64_t cache_write = 0;  // written to cache (Anthropic)
  int64_t output = 0;
  int64_t reasoning = 0;
};

struct Choice {
  std::vector<Block> blocks;
  StopReason stop = StopReason::kUnset;
  std::string stop_sequence;
};

struct Response {
  std::string id;
  std::string model;
  int64_t created = 0;
  std::vector<Choice> choices;
  Usage usage;
};

// --- Reasoning tokens in fields of another family ---------------------------------------
//
// A token travels bare in a field whose native issuer is its origin, and as
// "<origin>:<token>" elsewhere ("anthropic:", "anthropic-redacted:", "gemini:",
// "openai:<item id>:"), so that a client can echo it back and a later request restores it.

// The token of a kThinking or kRedacted block as written in a field native to `native`.
std::string EncodeToken(const Block& b, Origin native);

// Reads `token` found in a field native to `native` into `b` (origin, signature, item id;
// kind becomes kRedacted for a redacted token).
void DecodeToken(std::string_view token, Origin native, Block* b);

// A reasoning block with no text whose Gemini signature belongs to the block after it.
bool IsGeminiCarrier(const Block& b);

// --- Shared mappings ----------------------------------------------------------------------

// Anthropic thinking budget for an OpenAI effort: low/medium/high → 1024/10240/131072.
int64_t BudgetForEffort(std::string_view effort);
// The effort for a thinking budget: ≤1024 low, ≤10240 medium, else high.
std::string EffortForBudget(int64_t budget);

// OpenAI model families, by name (a "provider/" prefix is ignored): reasoning models (o1,
// o3, o4, gpt-5) refuse sampling parameters; GPT-4 and GPT-3.5 refuse reasoning effort.
bool IsOpenAiReasoningModel(std::string_view model);
bool IsOpenAiNonReasoningModel(std::string_view model);

// OpenAI Chat finish reasons.
std::string_view OpenAiFinishReason(StopReason r);
StopReason FromOpenAiFinishReason(std::string_view s);

// Current time in seconds since the epoch.
int64_t NowSeconds();

// The function name of the tool call `id` in `messages` (latest first); empty if none.
// For formats that need a name beside a tool result.
std::string FindToolName(const std::vector<Message>& messages, std::string_view id);

// A media block as a URL: its own, or a data URL of its payload.
std::string MediaUrl(const Block& b);
// A media block from a URL (a data URL becomes an inline payload).
Block MediaFromUrl(std::string_view url);

// Concatenated text of text blocks.
std::string JoinText(const std::vector<Block>& blocks, std::string_view sep = "");

// --- Streams ------------------------------------------------------------------------------

struct StreamHead {
  std::string id;
  std::string model;
  int64_t created = 0;
  Usage usage;  // what the upstream knew at the start (Anthropic input tokens)
};

// Receives one stream in neutral form. Blocks are numbered from 0 in the order they start;
// a delta names its block. Writers append client bytes to the string they were built with.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  virtual void Start(const StreamHead& head) = 0;
  // `head` carries the kind and, for a tool call, id and name; for kRedacted, data.
  virtual void BlockStart(int index, const Block& head) = 0;
  // Text, reasoning text or argument JSON, by the block's kind.
  virtual void Delta(int index, std::string_view text) = 0;
  // The reasoning block's token: `token.kind` is kThinking (signature, origin and item id
  // as issued) or kRedacted (data).
  virtual void Signature(int index, const Block& token) = 0;
  virtual void BlockStop(int index) = 0;
  // The answer is complete. Writers close open blocks and end the stream.
  virtual void Finish(StopReason stop, std::string_view stop_sequence, const Usage& usage) = 0;
  // The upstream reported an error inside the stream; writers end the stream.
  virtual void Error(std::string_view type, std::string_view message) = 0;
};

// Reads one upstream stream, event by event, and drives a sink.
class StreamReader {
 public:
  virtual ~StreamReader() = default;
  virtual void Event(std::string_view event, std::string_view data) = 0;
  // The upstream ended; closes what it left open.
  virtual void End() = 0;
};

// Keeps a reader's calls to a sink well formed: one Start before anything, blocks opened
// and closed once, nothing after Finish or Error.
class SinkDriver {
 public:
  explicit SinkDriver(StreamSink* sink) : sink_(sink) {}

  void Start(const StreamHead& head);
  bool started() const { return started_; }
  bool finished() const { return finished_; }
  bool saw_tool_call() const { return saw_tool_call_; }

  // Starts a block and returns its index; starts the stream first when needed.
  int Open(const Block& head);
  bool IsOpen(int index) const;
  void Delta(int index, std::string_view text);
  void Signature(int index, const Block& token);
  void Close(int index);
  void CloseAll();
  void Finish(StopReason stop, std::string_view stop_sequence, const Usage& usage);
  void Error(std::string_view type, std::string_view message);
  // The upstream ended: finishes with what is known if it did not finish.
  void End(StopReason stop, const Usage& usage);

 private:
  StreamSink* sink_;
  bool started_ = false;
  bool finished_ = false;
  bool saw_tool_call_ = false;
  std::vector<bool> open_;
};

}  // namespace omniroute::translator

#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace omniroute::translator {

namespace json = boost::json;

// Parses `text` as a JSON object. InvalidArgument naming `what` when it is not one.
absl::StatusOr<json::object> ParseObject(std::string_view text, std::string_view what);

// Parses any JSON value; nullopt when `text` is not JSON.
std::optional<json::value> ParseValue(std::string_view text);

// Serializes `v`: keys in insertion order, numbers in their shortest round-trip form.
std::string Serialize(const json::value& v);
void SerializeTo(const json::value& v, std::string* out);

// Typed look-ups that never throw; absent or mistyped members read as empty.
const json::value* Find(const json::object& o, std::string_view key);
std::string_view GetString(const json::object& o, std::string_view key);
bool HasString(const json::object& o, std::string_view key);
const json::object* GetObject(const json::object& o, std::string_view key);
const json::array* GetArray(const json::object& o, std::string_view key);
std::optional<int64_t> GetInt(const json::object& o, std::string_view key);
std::optional<double> GetNumber(const json::object& o, std::string_view key);
std::optional<bool> GetBool(const json::object& o, std::string_view key);
std::optional<int64_t> AsInt(const json::value& v);
// A token count: absent, negative or absurd values read as 0 or are capped at 2^50, so
// sums of counts cannot overflow.
int64_t GetCount(const json::object& o, std::string_view key);
std::string_view AsString(const json::value& v);

// A JSON value that is an object with no members, for defaults.
json::value EmptyObject();

// 64-bit FNV-1a: stable across runs and builds, for deriving ids.
uint64_t Fnv1a(std::string_view data, uint64_t seed = 14695981039346656037ULL);

// `prefix` followed by 24 hex digits derived from `seed`.
std::string DeriveId(std::string_view prefix, std::string_view seed);

// Splits a data URL ("data:image/png;base64,AAAA") into media type and base64 payload.
bool ParseDataUrl(std::string_view url, std::string* media_type, std::string* data);

// Guesses a media type from a URL's file extension; empty when unknown.
std::string MediaTypeFromUrl(std::string_view url);

}  // namespace omniroute::translator

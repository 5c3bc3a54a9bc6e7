#pragma once

#include <map>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace omniroute {

// Debian's Abseil has its own string_view type; these convert at the boundary.
inline std::string_view SV(absl::string_view s) { return {s.data(), s.size()}; }
inline absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

// Whether `haystack` contains `needle`, ignoring ASCII case.
bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle);

// Whether `text` matches `pattern`, where '*' is any run of characters and '?' any one
// character, ignoring ASCII case (model aliases, pricing patterns).
bool GlobMatch(std::string_view pattern, std::string_view text);

// %XX escapes decoded (malformed ones kept as they are); '+' becomes a space when
// `plus_is_space` (query strings and form bodies), not in paths.
std::string PercentDecode(std::string_view s, bool plus_is_space);

// "a=1&b=x%20y" → {a: "1", b: "x y"}: names and values decoded, the first occurrence of a name
// wins, empty parts skipped.
std::map<std::string, std::string> ParseQueryString(std::string_view query);

}  // namespace omniroute

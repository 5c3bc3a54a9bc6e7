#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace omniroute {

// Debian's Abseil has its own string_view type; these convert at the boundary.
inline std::string_view SV(absl::string_view s) { return {s.data(), s.size()}; }
inline absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

// Whether `haystack` contains `needle`, ignoring ASCII case.
bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle);

}  // namespace omniroute

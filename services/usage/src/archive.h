#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::usage {

// A gzip-compressed ustar archive of (name, content) files.
absl::StatusOr<std::string> MakeTarGz(const std::vector<std::pair<std::string, std::string>>& files,
                                      int64_t mtime_s);

// The files of a gzip-compressed ustar archive (regular files only).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadTarGz(
    const std::string& archive);

}  // namespace omniroute::usage

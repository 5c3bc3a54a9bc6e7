#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace omniroute {

// `n` random bytes from the OS, hex-encoded (2n characters).
std::string RandomHex(size_t n);

// The value of environment variable `env` if set; otherwise the content of
// `data_dir`/.secrets/`file`, created with a random value (prefixed by `prefix`) and mode
// 0600 on first use.
absl::StatusOr<std::string> EnvOrStoredSecret(const char* env, const std::string& data_dir,
                                              const std::string& file, const std::string& prefix);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// Constant-time comparison.
bool SecureEquals(std::string_view a, std::string_view b);

}  // namespace omniroute

#include "common/secrets.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace omniroute {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

}  // namespace

std::string RandomHex(size_t n) {
  std::string bytes(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
    std::abort();  // no entropy: nothing safe can be generated
  }
  return Hex(reinterpret_cast<const unsigned char*>(bytes.data()), n);
}

absl::StatusOr<std::string> EnvOrStoredSecret(const char* env, const std::string& data_dir,
                                              const std::string& file, const std::string& prefix) {
  if (const char* v = std::getenv(env); v && *v) return std::string(v);
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(data_dir) / ".secrets";
  const fs::path path = dir / file;
  std::ifstream in(path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    std::string value(absl::StripAsciiWhitespace(ss.str()));
    if (!value.empty()) return value;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat(dir.string(), ": ", ec.message()));
  ::chmod(dir.c_str(), 0700);
  const std::string value = prefix + RandomHex(24);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat(path.string(), ": cannot write"));
  const std::string line = value + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) return absl::FailedPreconditionError(absl::StrCat(path.string(), ": write failed"));
  if (file == "initial_password" || file == "admin_key") {
    // Shown once, at the first start, so the operator can log in.
    LogInfo("generated secret", {{"name", env}, {"file", path.string()}, {"value", value}});
  } else {
    LogInfo("generated secret", {{"name", env}, {"file", path.string()}});
  }
  return value;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return Hex(md, len);
}

bool SecureEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace omniroute

#include "archive.h"

#include <zlib.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace omniroute::usage {
namespace {

constexpr size_t kBlock = 512;

void Octal(char* field, size_t width, uint64_t value) {
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(value));
}

}  // namespace

absl::StatusOr<std::string> MakeTarGz(const std::vector<std::pair<std::string, std::string>>& files,
                                      int64_t mtime_s) {
  std::string tar;
  for (const auto& [name, content] : files) {
    if (name.size() >= 100) {
      return absl::InvalidArgumentError(absl::StrCat("archive: name too long: ", name));
    }
    char header[kBlock] = {};
    std::memcpy(header, name.data(), name.size());
    Octal(header + 100, 8, 0644);
    Octal(header + 108, 8, 0);
    Octal(header + 116, 8, 0);
    Octal(header + 124, 12, content.size());
    Octal(header + 136, 12, static_cast<uint64_t>(mtime_s));
    std::memset(header + 148, ' ', 8);
    header[156] = '0';
    std::memcpy(header + 257, "ustar", 6);
    std::memcpy(header + 263, "00", 2);
    unsigned sum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      sum += static_cast<unsigned char>(header[i]);
    }
    std::snprintf(header + 148, 8, "%06o", sum);
    tar.append(header, kBlock);
    tar.append(content);
    tar.append((kBlock - content.size() % kBlock) % kBlock, '\0');
  }
  tar.append(2 * kBlock, '\0');

  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return absl::InternalError("archive: deflateInit2 failed");
  }
  std::string out;
  out.resize(deflateBound(&zs, tar.size()) + 64);
  zs.next_in = reinterpret_cast<Bytef*>(tar.data());
  zs.avail_in = static_cast<uInt>(tar.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    return absl::InternalError("archive: deflate failed");
  }
  out.resize(produced);
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ReadTarGz(
    const std::string& archive) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) {
    return absl::InternalError("archive: inflateInit2 failed");
  }
  std::string tar;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(archive.data()));
  zs.avail_in = static_cast<uInt>(archive.size());
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc == Z_OK) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    tar.append(buf, sizeof(buf) - zs.avail_out);
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    return absl::InvalidArgumentError("archive: not a gzip stream");
  }
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos + kBlock <= tar.size() && tar[pos] != '\0') {
    const char* h = tar.data() + pos;
    const std::string name(h, strnlen(h, 100));
    const uint64_t size = std::strtoull(std::string(h + 124, 12).c_str(), nullptr, 8);
    pos += kBlock;
    if (pos + size > tar.size()) {
      return absl::InvalidArgumentError("archive: truncated");
    }
    if (h[156] == '0' || h[156] == '\0') {
      out.emplace_back(name, tar.substr(pos, size));
    }
    pos += (size + kBlock - 1) / kBlock * kBlock;
  }
  return out;
}

}  // namespace omniroute::usage

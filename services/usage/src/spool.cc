#include "spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute::usage {
namespace {

constexpr size_t kFrameHeader = 8;          // u32 length, u32 crc32 (little-endian)
constexpr uint32_t kMaxRecord = 64u << 20;  // a longer length means corruption

absl::Status Errno(std::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat("spool: ", AV(what), " ", path, ": ", std::strerror(errno)));
}

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) {
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  }
  return v;
}

uint32_t Crc(const std::string_view data) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return Errno("open", dir);
  }
  ::fsync(fd);
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadRange(const std::string& path, int64_t from, int64_t to) {
  std::string out;
  if (to <= from) {
    return out;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Errno("open", path);
  }
  out.resize(static_cast<size_t>(to - from));
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + got, out.size() - got, from + got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

// Parses frames of `data`; calls fn(record) for each valid one. Returns the length of the
// valid prefix.
template <typename Fn>
size_t ParseFrames(const std::string& data, size_t max_records, Fn fn) {
  size_t pos = 0;
  size_t n = 0;
  while (n < max_records && pos + kFrameHeader <= data.size()) {
    const uint32_t len = GetU32(data.data() + pos);
    const uint32_t crc = GetU32(data.data() + pos + 4);
    if (len > kMaxRecord || pos + kFrameHeader + len > data.size()) {
      break;
    }
    const std::string_view record(data.data() + pos + kFrameHeader, len);
    if (Crc(record) != crc) {
      break;
    }
    fn(record);
    pos += kFrameHeader + len;
    ++n;
  }
  return pos;
}

}  // namespace

Spool::Spool(std::string dir, Options options, int lock_fd)
    : dir_(std::move(dir)), options_(options), lock_fd_(lock_fd) {}

Spool::~Spool() {
  if (tail_fd_ >= 0) {
    ::close(tail_fd_);
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
  }
}

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const std::string& dir, Options options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("spool ", dir, ": ", ec.message()));
  }
  const std::string lock_path = dir + "/LOCK";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return Errno("open", lock_path);
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return absl::FailedPreconditionError(
        absl::StrCat("spool ", dir, " is in use by another process"));
  }
  options.segment_bytes = std::max<int64_t>(options.segment_bytes, 4096);
  options.max_bytes = std::max<int64_t>(options.max_bytes, options.segment_bytes);
  std::unique_ptr<Spool> spool(new Spool(dir, options, lock_fd));
  if (absl::Status s = spool->Load(); !s.ok()) {
    return s;
  }
  return spool;
}

std::string Spool::SegmentPath(uint64_t segment) const {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu.seg", static_cast<unsigned long long>(segment));
  return absl::StrCat(dir_, "/", name);
}

absl::StatusOr<uint64_t> Spool::Scan(uint64_t segment, int64_t offset, bool repair, int64_t* end) {
  const std::string path = SegmentPath(segment);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Errno("stat", path);
  }
  offset = std::min<int64_t>(offset, st.st_size);
  absl::StatusOr<std::string> data = ReadRange(path, offset, st.st_size);
  if (!data.ok()) {
    return data.status();
  }
  uint64_t count = 0;
  const size_t valid = ParseFrames(*data, SIZE_MAX, [&](std::string_view) { ++count; });
  *end = offset + static_cast<int64_t>(valid);
  if (*end < st.st_size) {
    LogWarn("spool: damaged or torn records skipped",
            {{"segment", path}, {"bytes", std::to_string(st.st_size - *end)}});
    if (repair && ::truncate(path.c_str(), *end) != 0) {
      return Errno("truncate", path);
    }
  }
  return count;
}

absl::Status Spool::Load() {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) {
    return Errno("opendir", dir_);
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() == 24 && name.substr(20) == ".seg") {
      uint64_t seq = 0;
      if (absl::SimpleAtoi(name.substr(0, 20), &seq)) {
        segments_.push_back(seq);
      }
    }
  }
  ::closedir(d);
  std::sort(segments_.begin(), segments_.end());

  head_ = {segments_.empty() ? 1 : segments_.front(), 0};
  if (absl::StatusOr<std::string> text = ReadRange(dir_ + "/head", 0, 64); text.ok()) {
    std::vector<std::string> parts =
        absl::StrSplit(*text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    uint64_t seg = 0;
    int64_t off = 0;
    if (parts.size() == 2 && absl::SimpleAtoi(parts[0], &seg) && absl::SimpleAtoi(parts[1], &off) &&
        seg > 0 && off >= 0) {
      if (segments_.empty()) {
        head_ = {seg, 0};  // keeps the numbering increasing
      } else if (seg >= segments_.front()) {
        head_ = {seg, off};
      }
    }
  }
  // Segments before the head were consumed (a crash between the head update and the
  // deletion).
  while (!segments_.empty() && segments_.front() < head_.segment) {
    ::unlink(SegmentPath(segments_.front()).c_str());
    segments_.erase(segments_.begin());
  }
  for (size_t i = 0; i < segments_.size(); ++i) {
    const bool is_head = segments_[i] == head_.segment;
    int64_t end = 0;
    absl::StatusOr<uint64_t> count =
        Scan(segments_[i], is_head ? head_.offset : 0, i + 1 == segments_.size(), &end);
    if (!count.ok()) {
      return count.status();
    }
    depth_ += *count;
    sizes_.push_back(end);
    struct stat st {};
    bytes_ += ::stat(SegmentPath(segments_[i]).c_str(), &st) == 0 ? st.st_size : end;
  }
  if (depth_ > 0) {
    LogInfo("spool opened with records to replay",
            {{"dir", dir_}, {"records", std::to_string(depth_)}});
  }
  return absl::OkStatus();
}

absl::Status Spool::WriteHead() {
  const std::string tmp = dir_ + "/head.tmp";
  const std::string text = absl::StrCat(head_.segment, " ", head_.offset, "\n");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Errno("open", tmp);
  }
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) {
    return Errno("write", tmp);
  }
  if (::rename(tmp.c_str(), (dir_ + "/head").c_str()) != 0) {
    return Errno("rename", tmp);
  }
  return SyncDir(dir_);
}

absl::StatusOr<uint64_t> Spool::DropOldest() {
  const uint64_t seg = segments_.front();
  int64_t end = 0;
  absl::StatusOr<uint64_t> count = Scan(seg, seg == head_.segment ? head_.offset : 0, false, &end);
  const uint64_t lost = count.ok() ? *count : 0;
  if (segments_.size() == 1 && tail_fd_ >= 0) {
    ::close(tail_fd_);
    tail_fd_ = -1;
  }
  struct stat st {};
  const std::string path = SegmentPath(seg);
  bytes_ -= ::stat(path.c_str(), &st) == 0 ? st.st_size : sizes_.front();
  ::unlink(path.c_str());
  segments_.erase(segments_.begin());
  sizes_.erase(sizes_.begin());
  depth_ -= std::min(depth_, lost);
  dropped_ += lost;
  if (head_.segment <= seg) {
    head_ = {segments_.empty() ? seg + 1 : segments_.front(), 0};
    if (absl::Status s = WriteHead(); !s.ok()) {
      return s;
    }
  }
  return lost;
}

absl::StatusOr<uint64_t> Spool::Append(const std::vector<std::string>& records) {
  if (records.empty()) {
    return 0;
  }
  std::string buf;
  size_t total = 0;
  for (const std::string& r : records) {
    total += kFrameHeader + r.size();
  }
  buf.reserve(total);
  for (const std::string& r : records) {
    char header[kFrameHeader];
    PutU32(header, static_cast<uint32_t>(r.size()));
    PutU32(header + 4, Crc(r));
    buf.append(header, kFrameHeader);
    buf.append(r);
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t lost = 0;
  while (!segments_.empty() && bytes_ + static_cast<int64_t>(buf.size()) > options_.max_bytes) {
    absl::StatusOr<uint64_t> n = DropOldest();
    if (!n.ok()) {
      return n.status();
    }
    lost += *n;
  }
  if (lost > 0) {
    LogError("usage spool full; dropped the oldest records",
             {{"dir", dir_}, {"dropped", std::to_string(lost)}});
  }
  const bool roll = !segments_.empty() && sizes_.back() >= options_.segment_bytes;
  if (segments_.empty() || roll) {
    if (tail_fd_ >= 0) {
      ::close(tail_fd_);
      tail_fd_ = -1;
    }
    const uint64_t next = segments_.empty() ? head_.segment : segments_.back() + 1;
    segments_.push_back(next);
    sizes_.push_back(0);
    if (head_.segment < segments_.front() || (segments_.size() == 1 && head_.segment != next)) {
      head_ = {segments_.front(), 0};
      if (absl::Status s = WriteHead(); !s.ok()) {
        return s;
      }
    }
  }
  if (tail_fd_ < 0) {
    const std::string path = SegmentPath(segments_.back());
    tail_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (tail_fd_ < 0) {
      return Errno("open", path);
    }
    if (absl::Status s = SyncDir(dir_); !s.ok()) {
      return s;
    }
  }
  size_t written = 0;
  while (written < buf.size()) {
    const ssize_t n = ::write(tail_fd_, buf.data() + written, buf.size() - written);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const absl::Status s = Errno("write", SegmentPath(segments_.back()));
      if (::ftruncate(tail_fd_, sizes_.back()) != 0) {
        LogError("spool: cannot undo a partial append", {{"dir", dir_}});
      }
      return s;
    }
    written += static_cast<size_t>(n);
  }
  if (::fdatasync(tail_fd_) != 0) {
    return Errno("fsync", SegmentPath(segments_.back()));
  }
  sizes_.back() += static_cast<int64_t>(buf.size());
  bytes_ += static_cast<int64_t>(buf.size());
  depth_ += records.size();
  return lost;
}

absl::StatusOr<Spool::Batch> Spool::Peek(size_t max) {
  std::lock_guard<std::mutex> lock(mu_);
  Batch out;
  out.next = head_;
  for (size_t i = 0; i < segments_.size() && out.records.size() < max; ++i) {
    if (segments_[i] < out.next.segment) {
      continue;
    }
    const int64_t from = segments_[i] == out.next.segment ? out.next.offset : 0;
    absl::StatusOr<std::string> data = ReadRange(SegmentPath(segments_[i]), from, sizes_[i]);
    if (!data.ok()) {
      return data.status();
    }
    const size_t valid = ParseFrames(*data, max - out.records.size(),
                                     [&](std::string_view r) { out.records.emplace_back(r); });
    out.next = {segments_[i], from + static_cast<int64_t>(valid)};
    if (from + static_cast<int64_t>(valid) >= sizes_[i] && i + 1 < segments_.size()) {
      out.next = {segments_[i + 1], 0};
    }
  }
  return out;
}

absl::Status Spool::Commit(const Batch& batch) {
  std::lock_guard<std::mutex> lock(mu_);
  if (batch.next.segment < head_.segment ||
      (batch.next.segment == head_.segment && batch.next.offset < head_.offset)) {
    return absl::OkStatus();  // already consumed (e.g. dropped meanwhile)
  }
  head_ = batch.next;
  depth_ -= std::min<uint64_t>(depth_, batch.records.size());
  if (absl::Status s = WriteHead(); !s.ok()) {
    return s;
  }
  while (segments_.size() > 1 && segments_.front() < head_.segment) {
    const std::string path = SegmentPath(segments_.front());
    struct stat st {};
    bytes_ -= ::stat(path.c_str(), &st) == 0 ? st.st_size : sizes_.front();
    ::unlink(path.c_str());
    segments_.erase(segments_.begin());
    sizes_.erase(sizes_.begin());
  }
  // An emptied spool starts its tail afresh so that the file does not grow forever.
  if (depth_ == 0 && segments_.size() == 1 && sizes_.front() >= options_.segment_bytes) {
    if (tail_fd_ >= 0) {
      ::close(tail_fd_);
      tail_fd_ = -1;
    }
    const uint64_t seg = segments_.front();
    bytes_ = 0;
    ::unlink(SegmentPath(seg).c_str());
    segments_.clear();
    sizes_.clear();
    head_ = {seg + 1, 0};
    return WriteHead();
  }
  return absl::OkStatus();
}

uint64_t Spool::depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return depth_;
}

int64_t Spool::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

uint64_t Spool::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

}  // namespace omniroute::usage

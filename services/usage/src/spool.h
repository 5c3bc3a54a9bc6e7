#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::usage {

// A durable FIFO of opaque records on disk: append-only segment files of framed records
// (length, CRC-32, bytes), fsync'd on every append, and a head file naming the first record
// not yet consumed. Bounded: when an append would pass max_bytes the oldest segments are
// dropped (and counted). A torn record at the end of the last segment (a crash during an
// append) is cut off at open. One process per directory (an exclusive lock). Thread-safe.
class Spool {
 public:
  struct Options {
    int64_t max_bytes = int64_t{1} << 30;
    int64_t segment_bytes = int64_t{8} << 20;
  };

  // Where the next unconsumed record is.
  struct Position {
    uint64_t segment = 0;
    int64_t offset = 0;
  };

  // Records read from the head and the position after them.
  struct Batch {
    std::vector<std::string> records;
    Position next;
  };

  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& dir, Options options);
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const std::string& dir) {
    return Open(dir, Options());
  }
  ~Spool();

  // Appends records durably (written and fsync'd before returning). Returns how many old
  // records were dropped to stay within max_bytes.
  absl::StatusOr<uint64_t> Append(const std::vector<std::string>& records);

  // Up to `max` records from the head, oldest first, without consuming them.
  absl::StatusOr<Batch> Peek(size_t max);

  // Consumes the records before `next` (a Batch's next), `count` of them.
  absl::Status Commit(const Batch& batch);

  uint64_t depth() const;    // records not consumed
  int64_t bytes() const;     // bytes on disk
  uint64_t dropped() const;  // records dropped for space since open
  const std::string& dir() const { return dir_; }

 private:
  Spool(std::string dir, Options options, int lock_fd);
  absl::Status Load();
  absl::Status WriteHead();
  std::string SegmentPath(uint64_t segment) const;
  absl::StatusOr<uint64_t> DropOldest();  // mu_ held; returns records dropped
  // Counts valid records of a segment from `offset`; truncates a torn tail when `repair`.
  absl::StatusOr<uint64_t> Scan(uint64_t segment, int64_t offset, bool repair, int64_t* end);

  const std::string dir_;
  const Options options_;
  const int lock_fd_;
  mutable std::mutex mu_;
  std::vector<uint64_t> segments_;  // ascending; the last is the tail
  std::vector<uint64_t> counts_;    // unconsumed records per segment
  std::vector<int64_t> sizes_;      // bytes per segment
  Position head_;
  int tail_fd_ = -1;
  uint64_t depth_ = 0;
  int64_t bytes_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace omniroute::usage

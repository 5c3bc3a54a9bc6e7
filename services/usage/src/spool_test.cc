#include "spool.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace omniroute::usage {
namespace {

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/omni-spool-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static std::vector<std::string> Records(int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i < to; ++i) {
      out.push_back(absl::StrCat("record-", i, std::string(static_cast<size_t>(i % 7), 'x')));
    }
    return out;
  }

  // Reads and consumes everything, `batch` at a time.
  static std::vector<std::string> Drain(Spool& spool, size_t batch) {
    std::vector<std::string> out;
    while (true) {
      absl::StatusOr<Spool::Batch> b = spool.Peek(batch);
      EXPECT_TRUE(b.ok()) << b.status();
      if (!b.ok() || b->records.empty()) {
        return out;
      }
      out.insert(out.end(), b->records.begin(), b->records.end());
      EXPECT_TRUE(spool.Commit(*b).ok());
    }
  }

  std::string dir_;
};

TEST_F(SpoolTest, ReplaysInOrderAcrossSegments) {
  Spool::Options o;
  o.segment_bytes = 4096;
  auto spool = Spool::Open(dir_, o);
  ASSERT_TRUE(spool.ok()) << spool.status();
  for (int i = 0; i < 1000; i += 100) {
    ASSERT_TRUE((*spool)->Append(Records(i, i + 100)).ok());
  }
  EXPECT_EQ((*spool)->depth(), 1000u);
  EXPECT_EQ(Drain(**spool, 37), Records(0, 1000));
  EXPECT_EQ((*spool)->depth(), 0u);
}

TEST_F(SpoolTest, PeekDoesNotConsumeAndSurvivesReopen) {
  {
    auto spool = Spool::Open(dir_);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(Records(0, 10)).ok());
    absl::StatusOr<Spool::Batch> b = (*spool)->Peek(4);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(b->records, Records(0, 4));
    ASSERT_TRUE((*spool)->Commit(*b).ok());
    // Peeked but not committed: replayed again after a restart.
    ASSERT_TRUE((*spool)->Peek(3).ok());
  }
  auto spool = Spool::Open(dir_);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->depth(), 6u);
  ASSERT_TRUE((*spool)->Append(Records(10, 12)).ok());
  EXPECT_EQ(Drain(**spool, 100), Records(4, 12));
}

TEST_F(SpoolTest, OnlyOneProcessPerDirectory) {
  auto a = Spool::Open(dir_);
  ASSERT_TRUE(a.ok());
  auto b = Spool::Open(dir_);
  EXPECT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SpoolTest, BoundedByDroppingTheOldestSegments) {
  Spool::Options o;
  o.segment_bytes = 4096;
  o.max_bytes = 16384;
  auto spool = Spool::Open(dir_, o);
  ASSERT_TRUE(spool.ok());
  const std::string big(1000, 'r');
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE((*spool)->Append({absl::StrCat(i, ":", big)}).ok());
  }
  EXPECT_LE((*spool)->bytes(), o.max_bytes);
  EXPECT_GT((*spool)->dropped(), 0u);
  EXPECT_EQ((*spool)->depth() + (*spool)->dropped(), 100u);
  std::vector<std::string> left = Drain(**spool, 1000);
  ASSERT_FALSE(left.empty());
  // The newest survive, in order.
  EXPECT_EQ(left.back(), absl::StrCat(99, ":", big));
  for (size_t i = 1; i < left.size(); ++i) {
    EXPECT_LT(std::stoi(left[i - 1]), std::stoi(left[i]));
  }
}

TEST_F(SpoolTest, ATornAppendIsCutOffAtOpen) {
  {
    auto spool = Spool::Open(dir_);
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append(Records(0, 5)).ok());
  }
  // A crash in the middle of an append: half a frame at the end of the segment.
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    if (e.path().extension() == ".seg") {
      std::ofstream out(e.path(), std::ios::app | std::ios::binary);
      out.write("\x20\x00\x00\x00garbage", 11);
    }
  }
  auto spool = Spool::Open(dir_);
  ASSERT_TRUE(spool.ok());
  EXPECT_EQ((*spool)->depth(), 5u);
  ASSERT_TRUE((*spool)->Append(Records(5, 7)).ok());
  EXPECT_EQ(Drain(**spool, 3), Records(0, 7));
}

TEST_F(SpoolTest, AnEmptiedSpoolStartsAFreshSegment) {
  Spool::Options o;
  o.segment_bytes = 4096;
  auto spool = Spool::Open(dir_, o);
  ASSERT_TRUE(spool.ok());
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE((*spool)->Append(Records(0, 200)).ok());
    EXPECT_EQ(Drain(**spool, 50).size(), 200u);
  }
  EXPECT_LT((*spool)->bytes(), 3 * o.segment_bytes);
}

}  // namespace
}  // namespace omniroute::usage

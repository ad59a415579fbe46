// Replay filter: duplicates within the window are caught, fresh tags pass, old periods age out,
// the measured false-drop rate stays at the computed bound, and 15 Mpps sizing meets 1e-4.
#include <gtest/gtest.h>

#include <random>

#include "zt/crypto/key_ring.hpp"
#include "zt/crypto/replay_filter.hpp"

namespace zt::crypto {
namespace {

constexpr std::int64_t W = kNsPerSec;
constexpr std::int64_t T0 = 1'700'000'000LL * kNsPerSec;

std::array<std::uint8_t, 16> mac_of(std::uint64_t i) {
  std::array<std::uint8_t, 16> m{};
  std::mt19937_64 r(i);
  for (auto& b : m) b = static_cast<std::uint8_t>(r());
  return m;
}

ReplayFilter make(double pps, double fp = 1e-4) {
  std::array<std::uint8_t, 32> seed{};
  seed[0] = 9;
  auto f = ReplayFilter::create(ReplayFilterConfig{pps, W, fp}, seed);
  EXPECT_TRUE(f) << f.error().message;
  return std::move(*f);
}

TEST(ReplayFilter, CatchesDuplicateWithinTwoWindows) {
  auto f = make(1e4);
  const auto m = mac_of(1);
  EXPECT_FALSE(f.check_and_insert(m, T0));
  EXPECT_TRUE(f.check_and_insert(m, T0 + 1));
  EXPECT_TRUE(f.check_and_insert(m, T0 + W));
  EXPECT_TRUE(f.check_and_insert(m, T0 + 2 * W - 1));
}

TEST(ReplayFilter, EntryInsertedLateInAPeriodStaysVisibleForTwoFullWindows) {
  auto f = make(1e4);
  const auto m = mac_of(2);
  const std::int64_t late = (T0 / W) * W + W - 1;  // last ns of a period
  EXPECT_FALSE(f.check_and_insert(m, late));
  EXPECT_TRUE(f.contains(m, late + 2 * W));
}

TEST(ReplayFilter, ForgetsAfterThreePeriods) {
  auto f = make(1e4);
  const auto m = mac_of(3);
  const std::int64_t start = (T0 / W) * W;
  EXPECT_FALSE(f.check_and_insert(m, start));
  EXPECT_FALSE(f.contains(m, start + 3 * W));
  EXPECT_FALSE(f.check_and_insert(m, start + 3 * W));
}

TEST(ReplayFilter, StaleBlocksReadAsEmptyAfterRotation) {
  // Fill one period heavily, jump three periods: nothing of it may be reported.
  auto f = make(2e4);
  const std::int64_t start = (T0 / W) * W;
  for (std::uint64_t i = 0; i < 20000; ++i) f.check_and_insert(mac_of(i), start);
  std::size_t hits = 0;
  for (std::uint64_t i = 0; i < 20000; ++i) hits += f.contains(mac_of(i), start + 3 * W);
  EXPECT_EQ(hits, 0u);
}

// Rotation is lazy (a block is reset when an insert of a newer period meets it): moving on to the
// next period must not lose the two before it. A small filter makes every block shared by many keys.
TEST(ReplayFilter, KeepsTheTwoEarlierPeriodsWhileTheFiltersRotate) {
  auto f = make(2e3, 1e-4);
  const std::int64_t start = (T0 / W) * W;
  for (std::uint64_t i = 0; i < 2000; ++i) f.check_and_insert(mac_of(i), start);
  for (std::uint64_t i = 2000; i < 4000; ++i) f.check_and_insert(mac_of(i), start + W);
  for (std::uint64_t i = 4000; i < 6000; ++i) f.check_and_insert(mac_of(i), start + 2 * W);
  std::size_t missing = 0;
  for (std::uint64_t i = 0; i < 6000; ++i) missing += !f.contains(mac_of(i), start + 2 * W);
  EXPECT_EQ(missing, 0u);
  // A replay of a period-0 MAC at the end of period 2 is still caught and stays a replay.
  EXPECT_TRUE(f.check_and_insert(mac_of(7), start + 3 * W - 1));
}

// The clock steps back by more than two periods (an operator sets it, NTP steps it): duplicates
// at the stepped-back time must still be caught, whatever the blocks recorded "in the future".
TEST(ReplayFilter, CatchesDuplicatesAfterTheClockStepsBack) {
  auto f = make(2e3, 1e-4);
  const std::int64_t start = (T0 / W) * W;
  for (std::uint64_t i = 0; i < 4000; ++i) f.check_and_insert(mac_of(i), start + 10 * W);
  for (std::uint64_t i = 10000; i < 10500; ++i) f.check_and_insert(mac_of(i), start);
  std::size_t caught = 0;
  for (std::uint64_t i = 10000; i < 10500; ++i) caught += f.check_and_insert(mac_of(i), start);
  EXPECT_EQ(caught, 500u);
}

TEST(ReplayFilter, MeasuredFalseDropRateMeetsTheComputedBound) {
  const double pps = 200'000;
  auto f = make(pps, 1e-3);
  const std::int64_t start = (T0 / W) * W;
  // Three full periods at the sized rate, then probe fresh MACs.
  std::uint64_t id = 0;
  for (int p = 0; p < 3; ++p)
    for (std::uint64_t i = 0; i < static_cast<std::uint64_t>(pps); ++i)
      f.check_and_insert(mac_of(id++), start + p * W);
  const std::size_t probes = 400'000;
  std::size_t false_drops = 0;
  for (std::size_t i = 0; i < probes; ++i) false_drops += f.contains(mac_of(id++), start + 2 * W);
  const double rate = static_cast<double>(false_drops) / probes;
  RecordProperty("measured_false_drop_rate", std::to_string(rate));
  EXPECT_LE(rate, 1e-3 * 1.5) << "measured " << rate << " bound " << f.sizing().false_drop_rate;
  EXPECT_LE(f.sizing().false_drop_rate, 1e-3);
}

TEST(ReplayFilterSizing, FifteenMppsPerLcoreMeetsOneInTenThousand) {
  const auto s = size_replay_filter(ReplayFilterConfig{15e6, W, 1e-4});
  EXPECT_LE(s.false_drop_rate, 1e-4);
  EXPECT_GE(s.k, 8u);
  // About 26 bits per key per filter: blocked Bloom needs more than the classic 19.
  EXPECT_LT(s.bytes, 200u << 20);
  EXPECT_GT(s.bytes, 100u << 20);
}

TEST(ReplayFilter, SeedChangesPlacement) {
  std::array<std::uint8_t, 32> a{}, b{};
  b[5] = 1;
  auto fa = ReplayFilter::create(ReplayFilterConfig{1e3, W, 1e-2}, a);
  auto fb = ReplayFilter::create(ReplayFilterConfig{1e3, W, 1e-2}, b);
  ASSERT_TRUE(fa && fb);
  // With a small filter, a set inserted under seed a is mostly unseen under seed b.
  std::size_t both = 0;
  for (std::uint64_t i = 0; i < 500; ++i) {
    fa->check_and_insert(mac_of(i), T0);
    both += fb->contains(mac_of(i), T0);
  }
  EXPECT_EQ(both, 0u);
}

TEST(ReplayFilter, RefusesNonsenseConfig) {
  EXPECT_FALSE(ReplayFilter::create(ReplayFilterConfig{0, W, 1e-4}));
  EXPECT_FALSE(ReplayFilter::create(ReplayFilterConfig{1e6, 0, 1e-4}));
  EXPECT_FALSE(ReplayFilter::create(ReplayFilterConfig{1e6, W, 0}));
}

}  // namespace
}  // namespace zt::crypto

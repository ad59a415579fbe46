// The dataplane's wall clock (dataplane/README.md "Clock"): how the control side decides to
// re-anchor the workers' TSC-derived clock, how workers pick a new anchor up (seqlock), and what
// a step of the wall clock does to tag verdicts: the real Verifier and ReplayFilter, judged at
// the times a worker following the wall clock would give them. No EAL.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "../crypto/fixtures.hpp"
#include "zt/crypto/replay_filter.hpp"
#include "zt/dataplane/clock.hpp"

namespace {

using namespace zt;
using crypto::TagReject;
using dp::ClockAnchor;
using dp::ClockChange;

constexpr std::int64_t kS = 1'000'000'000;
constexpr std::int64_t kMs = 1'000'000;
constexpr double kNsPerTick = 0.5;  // a 2 GHz TSC
constexpr std::uint64_t kTsc0 = 1'000'000'000'000ULL;
constexpr std::int64_t kWall0 = 1'800'000'000LL * kS;

std::uint64_t tsc_after(std::int64_t ns) { return kTsc0 + static_cast<std::uint64_t>(ns / kNsPerTick); }

// --- re-anchoring (control side) ---------------------------------------------------------------

TEST(ClockFollow, KeepsTheAnchorWhileTheTscAgreesWithTheWallClockWithinAMillisecond) {
  const ClockAnchor a{kWall0, kTsc0};
  for (std::int64_t off : {0LL, 400'000LL, -999'000LL, 1'000'000LL}) {
    const auto d = dp::follow_clock(a, kWall0 + 10 * kS + off, tsc_after(10 * kS), kNsPerTick);
    EXPECT_EQ(d.change, ClockChange::none) << off;
    EXPECT_EQ(d.offset_ns, off);
    EXPECT_EQ(d.anchor, a);
  }
}

TEST(ClockFollow, FollowsATscRateThatIsSlightlyWrongWithoutCallingItAStep) {
  // DPDK estimated the TSC 100 ppm fast: the TSC-derived clock gains 0.1 ms a second.
  ClockAnchor a{kWall0, kTsc0};
  const double believed = kNsPerTick * 1.0001;
  std::int64_t worst = 0, adjustments = 0;
  for (std::int64_t t = 100 * kMs; t <= 60 * kS; t += 100 * kMs) {  // the control loop's cadence
    const std::uint64_t tsc = tsc_after(t);
    const auto d = dp::follow_clock(a, kWall0 + t, tsc, believed);
    EXPECT_NE(d.change, ClockChange::step) << t;
    worst = std::max(worst, d.offset_ns < 0 ? -d.offset_ns : d.offset_ns);
    if (d.change == ClockChange::adjust) {
      ++adjustments;
      EXPECT_EQ(dp::wall_at(d.anchor, tsc, believed), kWall0 + t);  // exact again at the sample
    }
    a = d.anchor;
  }
  EXPECT_LE(worst, 1'100'000);  // never more than ~1 ms off the wall clock
  EXPECT_GE(adjustments, 5);    // 6 ms gained in a minute, corrected by the millisecond
}

TEST(ClockFollow, AStepEitherWayIsReportedWithItsSizeAndFollowedAtOnce) {
  const ClockAnchor a{kWall0, kTsc0};
  for (std::int64_t step : {30 * kS, -30 * kS, -2'500 * kMs, 21 * kMs, -21 * kMs}) {
    const std::uint64_t tsc = tsc_after(5 * kS);
    const auto d = dp::follow_clock(a, kWall0 + 5 * kS + step, tsc, kNsPerTick);
    EXPECT_EQ(d.change, ClockChange::step) << step;
    EXPECT_EQ(d.offset_ns, step);
    EXPECT_EQ(dp::wall_at(d.anchor, tsc + 2'000'000, kNsPerTick), kWall0 + 5 * kS + step + kMs);
  }
  // Between 1 and 20 ms: followed, but not called a step.
  EXPECT_EQ(dp::follow_clock(a, kWall0 + 5 * kS - 15 * kMs, tsc_after(5 * kS), kNsPerTick).change,
            ClockChange::adjust);
}

TEST(ClockFollow, ATscReadOnAnotherCoreJustBeforeTheAnchorGivesAnEarlierTimeNotAWrap) {
  const ClockAnchor a{kWall0, kTsc0};
  EXPECT_EQ(dp::wall_at(a, kTsc0 - 200, kNsPerTick), kWall0 - 100);
}

// --- publishing to the workers -------------------------------------------------------------------

TEST(WorkerClock, TakesAPublishedAnchorAtItsNextRefreshAndKeepsItsOwnUntilThen) {
  dp::ClockAnchorCell cell;
  dp::WorkerClock w(&cell, {kWall0, kTsc0}, kNsPerTick);
  w.refresh();  // nothing published yet: the initial anchor stays
  EXPECT_EQ(w.now_ns(tsc_after(kS)), kWall0 + kS);
  cell.publish({kWall0 + 30 * kS, tsc_after(kS)});
  EXPECT_EQ(w.now_ns(tsc_after(2 * kS)), kWall0 + 2 * kS);  // not between two refreshes
  w.refresh();
  EXPECT_EQ(w.now_ns(tsc_after(2 * kS)), kWall0 + 31 * kS);
  cell.publish({kWall0 - 30 * kS, tsc_after(3 * kS)});  // and back
  w.refresh();
  EXPECT_EQ(w.now_ns(tsc_after(4 * kS)), kWall0 - 29 * kS);
  dp::WorkerClock fixed(nullptr, {kWall0, kTsc0}, kNsPerTick);  // no cell: the anchor for good
  fixed.refresh();
  EXPECT_EQ(fixed.now_ns(tsc_after(kS)), kWall0 + kS);
}

TEST(WorkerClock, NeverSeesHalfAnAnchorWhileTheControlSidePublishes) {
  // Every anchor published is (n, 3n): a torn read would show another ratio. The writer keeps
  // publishing until the reader has read at least kReads anchors while it was writing (a fixed
  // number of publishes could end before the reader thread was even scheduled: seen in a CI run
  // under ASan on 2 loaded vCPUs, 0 reads); a deadline bounds it if the reader never gets through.
  constexpr std::uint64_t kReads = 2000;
  dp::ClockAnchorCell cell;
  cell.publish({1, 3});
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> reads{0};
  std::int64_t last = 0;
  std::thread writer([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::int64_t n = 2;
    for (;; ++n) {
      cell.publish({n, static_cast<std::uint64_t>(3 * n)});
      if ((n & 1023) == 0 && n >= 200'000 &&
          (reads.load(std::memory_order_relaxed) >= kReads ||
           std::chrono::steady_clock::now() > deadline))
        break;
    }
    last = n;
    done = true;
  });
  std::uint64_t torn = 0;
  std::uint32_t seq = 0;
  ClockAnchor a;
  while (!done.load()) {
    if (cell.try_read(a, seq)) {
      reads.fetch_add(1, std::memory_order_relaxed);
      torn += a.base_tsc != static_cast<std::uint64_t>(3 * a.base_ns);
    }
  }
  writer.join();
  EXPECT_EQ(torn, 0u);
  ASSERT_TRUE(cell.try_read(a, seq));
  EXPECT_EQ(a.base_ns, last);
  EXPECT_GE(reads.load(), kReads) << "the reader read too few anchors while the writer published "
                                  << last << " in 20 s";
}

// --- what a step does to tag verdicts ------------------------------------------------------------

constexpr std::uint64_t kEpoch = 4242;

class TagClock : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = crypto::Minter::create();
    ASSERT_TRUE(m);
    minter_ = std::make_unique<crypto::Minter>(std::move(*m));
    auto v = crypto::Verifier::create();
    ASSERT_TRUE(v) << v.error().message;
    verifier_ = std::make_unique<crypto::Verifier>(std::move(*v));
    ring_ = dom_.ring(kEpoch);
    crypto::ReplayFilterConfig rc;
    rc.packets_per_second = 1e4;
    rc.window_ns = kW;
    const std::array<std::uint8_t, 32> seed{7};
    auto f = crypto::ReplayFilter::create(rc, seed);
    ASSERT_TRUE(f) << f.error().message;
    filter_ = std::make_unique<crypto::ReplayFilter>(std::move(*f));
  }

  // A tag stamped `stamped` on a packet of its own (a distinct MAC per `n`).
  crypto::test::Tagged tag(std::int64_t stamped, unsigned n) {
    auto ip = crypto::test::ipv4_packet(17, 40, static_cast<std::uint8_t>(n),
                                        {10, 1, static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)});
    return crypto::test::mint_packet(*minter_, dom_.key(1000, kEpoch, crypto::Alg::aes256_cmac), stamped,
                                     dom_.policy, std::move(ip));
  }
  // The verdict of a worker whose clock reads `now`.
  TagReject judge(const crypto::test::Tagged& t, std::int64_t now) {
    const crypto::VerifyInput in = t.input();
    crypto::VerifyResult r;
    EXPECT_EQ(verifier_->verify_burst(*ring_, now, std::span(&in, 1), std::span(&r, 1), filter_.get()), 1u);
    return r.reason;
  }
  bool in_filter(const crypto::test::Tagged& t, std::int64_t now) const {
    return filter_->contains(std::span<const std::uint8_t, 16>(t.body.data() + crypto::kTagMacOffset, 16), now);
  }

  static constexpr std::int64_t kW = kS;  // the tag window and the filter's period
  crypto::test::Domain dom_;
  // 0.1 s into a filter period (periods are whole seconds of wall time), mid-epoch.
  const std::int64_t kT = dom_.at(kEpoch, 7 * 60 * kS) + 100 * kMs;
  std::unique_ptr<crypto::Minter> minter_;
  std::unique_ptr<crypto::Verifier> verifier_;
  std::shared_ptr<const crypto::KeyRing> ring_;
  std::unique_ptr<crypto::ReplayFilter> filter_;
};

TEST_F(TagClock, ACopyOfAnAcceptedTagStaysRefusedWhenTheClockStepsBackWithinTheWindow) {
  const auto x = tag(kT, 1);
  ASSERT_EQ(judge(x, kT), TagReject::none);
  // The wall clock steps back 0.9 s. A clock that simply followed would judge the copy at
  // kT - 0.8 s: fresh (0.8 s old) and in a filter period before the one that holds its MAC.
  const std::int64_t wall = kT - 800 * kMs;
  ASSERT_FALSE(in_filter(x, wall)) << "the filter alone, at the stepped-back time, would miss it";
  EXPECT_EQ(judge(x, wall), TagReject::tag_replayed);
  // A fresh tag from a sender whose clock did not step passes all the same.
  EXPECT_EQ(judge(tag(kT + 100 * kMs, 2), wall), TagReject::none);
}

TEST_F(TagClock, AStepBackBeyondTheWindowRefusesTagsOfClocksThatSteppedTooForTheStepLessTheWindow) {
  // Accepted on a right clock over the last 2 s, then the wall clock (and the senders') steps
  // back D = 2.5 s: tags stamped by the stepped clocks are refused for D - W = 1.5 s, and no
  // copy of an accepted tag passes at any moment of it.
  std::vector<crypto::test::Tagged> seen;
  unsigned n = 0;
  for (std::int64_t t = kT - 2 * kS; t <= kT; t += 100 * kMs) {
    seen.push_back(tag(t, ++n));
    ASSERT_EQ(judge(seen.back(), t), TagReject::none);
  }
  constexpr std::int64_t kD = 2'500 * kMs;
  for (std::int64_t e = 0; e <= 4 * kS; e += 50 * kMs) {
    const std::int64_t wall = kT - kD + e;
    for (const auto& s : seen) EXPECT_NE(judge(s, wall), TagReject::none) << "copy let through at e=" << e;
    const TagReject fresh = judge(tag(wall, ++n), wall);
    if (e < kD - kW) EXPECT_EQ(fresh, TagReject::tag_time_window) << "e=" << e;
    else EXPECT_EQ(fresh, TagReject::none) << "e=" << e;
  }
}

TEST_F(TagClock, AnApplianceClockAheadWithinTheWindowAndCorrectedBackRefusesNoRightTag) {
  // The appliance ran 0.8 s ahead of its senders (tags still fresh), then NTP stepped it back.
  unsigned n = 0;
  for (std::int64_t t = kT - kS; t < kT + 2 * kS; t += 50 * kMs) {
    const std::int64_t wall = t < kT ? t + 800 * kMs : t;
    EXPECT_EQ(judge(tag(t, ++n), wall), TagReject::none) << "t - kT = " << t - kT;
  }
}

TEST_F(TagClock, AForwardStepIsFollowedAtOnceAndLeavesOlderTagsStale) {
  const auto x = tag(kT, 1);
  ASSERT_EQ(judge(x, kT), TagReject::none);
  const std::int64_t wall = kT + 30 * kS + 100 * kMs;
  EXPECT_EQ(judge(tag(kT + 30 * kS, 2), wall), TagReject::none);
  EXPECT_EQ(judge(x, wall), TagReject::tag_time_window);
  EXPECT_EQ(judge(tag(kT + 100 * kMs, 3), wall), TagReject::tag_time_window);  // a sender left behind
}

TEST_F(TagClock, AClockWrongAtStartRefusesTagsAndTakesThemAtOnceWhenCorrectedEitherWay) {
  // 30 s behind, corrected forward; then 30 s ahead (a tag was accepted before, on the right
  // clock), corrected back.
  unsigned n = 0;
  std::int64_t from = kT;
  for (std::int64_t wrong : {-30 * kS, 30 * kS}) {
    for (std::int64_t t = from; t < from + kS; t += 100 * kMs)
      EXPECT_EQ(judge(tag(t, ++n), t + wrong), TagReject::tag_time_window);
    // Nothing was accepted at the wrong time, so nothing holds the clock there: a correction
    // back by 30 s is followed as at once as one forward.
    EXPECT_EQ(judge(tag(from + kS, ++n), from + kS), TagReject::none) << wrong;
    from += 2 * kS;
  }
}

}  // namespace

// The candidate store: set/show/commit/confirm/rollback as an operator sees them, with an
// injected clock for `commit confirmed`.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "config/candidate.hpp"
#include "config/volumetric_tunables.hpp"

namespace {

using namespace zt::appliance::config;
using namespace std::chrono_literals;

struct FakeClock {
  std::atomic<std::int64_t> ms{0};
  std::chrono::steady_clock::time_point now() const {
    return std::chrono::steady_clock::time_point{} + std::chrono::milliseconds(ms.load());
  }
};

class CandidateTest : public ::testing::Test {
 protected:
  CandidateTest() { reset(); }
  void reset() {
    CandidateStore::Options o;
    o.apply = [this](const Tunables& t) -> std::expected<void, std::string> {
      if (fail_apply) return std::unexpected("dataplane refused: flow table busy");
      applied.push_back(t);
      return {};
    };
    o.volumetric = [](std::string_view k, std::string_view v) -> std::expected<void, std::string> {
      if (k != "new_flows_pps") return std::unexpected(std::string("unknown volumetric key (expected new_flows_pps)"));
      if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos)
        return std::unexpected(std::string("expected a packet rate"));
      return {};
    };
    o.segment = [](std::string_view s) -> std::expected<void, std::string> {
      if (s == "zone-a" || s == "zone-b") return {};
      return std::unexpected("no segment '" + std::string(s) + "' in the running policy (zone-a, zone-b)");
    };
    o.clock = [this] { return clock.now(); };
    o.on_auto_rollback = [this](const CommitRecord& r, const std::string& err) {
      rollbacks.push_back(r);
      rollback_errors.push_back(err);
    };
    store = std::make_unique<CandidateStore>(std::move(o));
  }
  CandidateStore::CommitOptions by(std::string who, std::string comment = {},
                                   std::optional<std::chrono::seconds> confirmed = {}) {
    return {std::move(who), std::move(comment), confirmed};
  }

  FakeClock clock;
  bool fail_apply = false;
  std::vector<Tunables> applied;
  std::vector<CommitRecord> rollbacks;
  std::vector<std::string> rollback_errors;
  std::unique_ptr<CandidateStore> store;
};

TEST_F(CandidateTest, SetStagesInTheCandidateAndShowCandidateDiffsAgainstRunning) {
  ASSERT_TRUE(store->set("flow.timeout.udp", "30s"));
  ASSERT_TRUE(store->set("segment.zone-b.mode", "audit"));
  EXPECT_EQ(store->running().udp_s, 60u);  // nothing applied yet
  EXPECT_TRUE(applied.empty());
  EXPECT_EQ(render_diff(store->show_candidate()),
            "[edit]\n"
            "- flow.timeout.udp 60\n"
            "+ flow.timeout.udp 30\n"
            "+ segment.zone-b.mode audit\n");
}

TEST_F(CandidateTest, DurationsAcceptSecondsMinutesAndHours) {
  ASSERT_TRUE(store->set("flow.timeout.tcp_established", "2h"));
  ASSERT_TRUE(store->set("flow.timeout.tcp_transitory", "90"));
  ASSERT_TRUE(store->set("flow.timeout.icmp", "1m"));
  const auto c = store->candidate();
  EXPECT_EQ(c.tcp_established_s, 7200u);
  EXPECT_EQ(c.tcp_transitory_s, 90u);
  EXPECT_EQ(c.icmp_s, 60u);
}

TEST_F(CandidateTest, BadKeysAndValuesAreRefusedNamingTheKeyAndWhatIsAllowed) {
  auto e = store->set("flow.timeout.tcp", "30");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("unknown key 'flow.timeout.tcp'"), std::string::npos) << e.error();
  EXPECT_NE(e.error().find("flow.timeout.tcp_established"), std::string::npos) << e.error();

  e = store->set("segment.zone-a.mode", "monitor");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "segment.zone-a.mode 'monitor': expected enforce or audit");

  e = store->set("segment.dmz.mode", "audit");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "segment.dmz.mode: no segment 'dmz' in the running policy (zone-a, zone-b)");

  e = store->set("log.level", "verbose");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "log.level 'verbose': expected error, warning, notice, info or debug");

  e = store->set("flow.timeout.udp", "0");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("flow.timeout.udp '0': expected 1s to 7 days"), std::string::npos) << e.error();

  e = store->set("flow.timeout.udp", "5d");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("unknown unit 'd'"), std::string::npos) << e.error();

  e = store->set("flowlog.rate", "-1");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "flowlog.rate '-1': expected an integer from 0 to 1000000");

  e = store->set("volumetric.max_flows", "10");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "volumetric.max_flows: unknown volumetric key (expected new_flows_pps)");
  e = store->set("volumetric.new_flows_pps", "lots");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "volumetric.new_flows_pps: expected a packet rate");
  ASSERT_TRUE(store->set("volumetric.new_flows_pps", "5000"));

  EXPECT_EQ(render_diff(store->show_candidate()), "[edit]\n+ volumetric.new_flows_pps 5000\n");
}

TEST_F(CandidateTest, CommitAppliesOnceAndRecordsWhoWhenAndComment) {
  ASSERT_TRUE(store->set("log.level", "debug"));
  auto r = store->commit(by("alice", "debug a drop"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->number, 1u);
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied[0].log_level, "debug");
  EXPECT_EQ(store->running().log_level, "debug");
  EXPECT_TRUE(store->show_candidate().empty());
  const auto h = store->history();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].who, "alice");
  EXPECT_EQ(h[0].comment, "debug a drop");
  EXPECT_EQ(h[1].who, "startup");
  EXPECT_LE(std::chrono::system_clock::now() - h[0].when, 5s);
  // Nothing staged: nothing applied, no history entry.
  r = store->commit(by("alice"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->number, 0u);
  EXPECT_EQ(r->message, "no changes to commit");
  EXPECT_EQ(applied.size(), 1u);
}

TEST_F(CandidateTest, AFailedApplyLeavesRunningUnchangedAndSaysWhy) {
  ASSERT_TRUE(store->set("flow.timeout.udp", "10"));
  fail_apply = true;
  auto r = store->commit(by("bob"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "commit failed, running unchanged: dataplane refused: flow table busy");
  EXPECT_EQ(store->running().udp_s, 60u);
  EXPECT_EQ(store->history().size(), 1u);
  EXPECT_EQ(store->candidate().udp_s, 10u);  // the candidate is kept for another try
}

TEST_F(CandidateTest, CommitConfirmedRollsBackByItselfWhenNotConfirmed) {
  ASSERT_TRUE(store->set("segment.zone-a.mode", "audit"));
  auto r = store->commit(by("carol", "try audit", 60s));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(store->running().segment_mode.at("zone-a"), SegmentMode::audit);
  EXPECT_EQ(store->confirm_remaining(), 60s);
  clock.ms = 59'000;
  EXPECT_FALSE(store->tick());
  EXPECT_EQ(store->confirm_remaining(), 1s);
  clock.ms = 60'000;
  EXPECT_TRUE(store->tick());
  EXPECT_TRUE(store->running().segment_mode.empty());
  EXPECT_TRUE(store->candidate().segment_mode.empty());
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_TRUE(applied[1].segment_mode.empty());
  ASSERT_EQ(rollbacks.size(), 1u);
  EXPECT_EQ(rollbacks[0].who, "system");
  EXPECT_TRUE(rollbacks[0].automatic_rollback);
  EXPECT_EQ(rollback_errors[0], "");
  EXPECT_FALSE(store->confirm_remaining());
  EXPECT_FALSE(store->tick());  // once only
  const auto h = store->history();
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[1].who, "carol");
  EXPECT_EQ(h[1].confirm_within, 60s);
}

TEST_F(CandidateTest, ConfirmOrAPlainCommitKeepsAConfirmedCommit) {
  ASSERT_TRUE(store->set("flow.timeout.udp", "20"));
  ASSERT_TRUE(store->commit(by("dave", "", 30s)));
  ASSERT_TRUE(store->confirm("dave"));
  clock.ms = 600'000;
  EXPECT_FALSE(store->tick());
  EXPECT_EQ(store->running().udp_s, 20u);
  auto e = store->confirm("dave");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "confirm (dave): no commit confirmed is pending");

  ASSERT_TRUE(store->set("flow.timeout.udp", "25"));
  ASSERT_TRUE(store->commit(by("dave", "", 30s)));
  auto r = store->commit(by("dave"));  // a plain commit confirms
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->confirmed_pending);
  clock.ms = 700'000;
  EXPECT_FALSE(store->tick());
  EXPECT_EQ(store->running().udp_s, 25u);
}

TEST_F(CandidateTest, AFailedPlainCommitDoesNotConfirmAPendingConfirmedCommit) {
  ASSERT_TRUE(store->set("flow.timeout.udp", "20"));
  ASSERT_TRUE(store->commit(by("kim", "", 30s)));
  ASSERT_TRUE(store->set("flow.timeout.udp", "25"));
  fail_apply = true;
  ASSERT_FALSE(store->commit(by("kim")));
  fail_apply = false;
  EXPECT_EQ(store->confirm_remaining(), 30s);
  clock.ms = 30'000;
  EXPECT_TRUE(store->tick());
  EXPECT_EQ(store->running().udp_s, 60u);
}

TEST_F(CandidateTest, TwoUnconfirmedCommitsRollBackToTheConfigurationBeforeTheFirst) {
  ASSERT_TRUE(store->set("flow.timeout.udp", "20"));
  ASSERT_TRUE(store->commit(by("erin", "", 60s)));
  ASSERT_TRUE(store->set("flow.timeout.icmp", "5"));
  ASSERT_TRUE(store->commit(by("erin", "", 60s)));
  clock.ms = 61'000;
  ASSERT_TRUE(store->tick());
  EXPECT_EQ(store->running(), Tunables{});
}

TEST_F(CandidateTest, AnAutomaticRollbackThatCannotBeAppliedIsRetriedAndReported) {
  ASSERT_TRUE(store->set("flow.timeout.udp", "20"));
  ASSERT_TRUE(store->commit(by("frank", "", 10s)));
  fail_apply = true;
  clock.ms = 10'000;
  EXPECT_FALSE(store->tick());
  ASSERT_EQ(rollback_errors.size(), 1u);
  EXPECT_NE(rollback_errors[0].find("dataplane refused"), std::string::npos);
  EXPECT_EQ(store->running().udp_s, 20u);
  fail_apply = false;
  EXPECT_TRUE(store->tick());
  EXPECT_EQ(store->running().udp_s, 60u);
}

TEST_F(CandidateTest, TheTimerThreadRollsBackWithoutAnyoneCallingTick) {
  store->start_timer(5ms);
  ASSERT_TRUE(store->set("log.level", "info"));
  ASSERT_TRUE(store->commit(by("gina", "", 1s)));
  clock.ms = 1'000;
  for (int i = 0; i < 400 && store->running().log_level != "notice"; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(store->running().log_level, "notice");
  store->stop_timer();
}

TEST_F(CandidateTest, RollbackNLoadsThatCommitIntoTheCandidate) {
  for (const char* v : {"10", "20", "30"}) {
    ASSERT_TRUE(store->set("flow.timeout.udp", v));
    ASSERT_TRUE(store->commit(by("hal")));
  }
  ASSERT_TRUE(store->rollback(2));  // two commits back: udp 10
  EXPECT_EQ(render_diff(store->show_candidate()), "[edit]\n- flow.timeout.udp 30\n+ flow.timeout.udp 10\n");
  EXPECT_EQ(store->running().udp_s, 30u);
  ASSERT_TRUE(store->commit(by("hal", "rollback 2")));
  EXPECT_EQ(store->running().udp_s, 10u);
  ASSERT_TRUE(store->rollback(4));  // the start-up configuration
  EXPECT_EQ(store->candidate().udp_s, 60u);
  store->discard();
  EXPECT_TRUE(store->show_candidate().empty());
  auto e = store->rollback(5);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "rollback 5: only 0 to 4 exist (5 commit(s) kept)");
}

TEST_F(CandidateTest, HistoryKeepsTwentyPreviousCommits) {
  for (int i = 1; i <= 30; ++i) {
    ASSERT_TRUE(store->set("flowlog.rate", std::to_string(i)));
    ASSERT_TRUE(store->commit(by("ivy")));
  }
  const auto h = store->history();
  ASSERT_EQ(h.size(), CandidateStore::kHistory + 1);
  EXPECT_EQ(h.front().config.flow_log_rate, 30u);
  EXPECT_EQ(h.back().config.flow_log_rate, 10u);
  EXPECT_TRUE(store->rollback(20));
  EXPECT_FALSE(store->rollback(21));
}

TEST_F(CandidateTest, DeleteRevertsAKeyToItsDefault) {
  ASSERT_TRUE(store->set("segment.zone-b.mode", "audit"));
  ASSERT_TRUE(store->set("flow.timeout.udp", "5"));
  ASSERT_TRUE(store->commit(by("jo")));
  ASSERT_TRUE(store->remove("segment.zone-b.mode"));
  ASSERT_TRUE(store->remove("flow.timeout.udp"));
  EXPECT_EQ(render_diff(store->show_candidate()),
            "[edit]\n- flow.timeout.udp 5\n+ flow.timeout.udp 60\n- segment.zone-b.mode audit\n");
  EXPECT_FALSE(store->remove("flow.timeout"));
}

TEST_F(CandidateTest, ConcurrentSettersAndCommitsLoseNothing) {
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(store->set("volumetric.new_flows_pps", std::to_string(t * 1000 + i)));
        ASSERT_TRUE(store->commit(by("t" + std::to_string(t))));
        (void)store->show_candidate();
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_LE(store->history().size(), CandidateStore::kHistory + 1);
  EXPECT_GE(store->history().size(), 2u);
  EXPECT_EQ(store->running(), store->candidate());
}

TEST(VolumetricTunables, SetVolumetricIsCheckedByTheDataplaneRulesAndBecomesItsConfig) {
  CandidateStore::Options o;
  o.volumetric = volumetric_validator(zt::dp::VolumetricConfig{});
  CandidateStore store(std::move(o));
  auto e = store.set("volumetric.window_ms", "5");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "volumetric.window_ms: --vol-window-ms 5: expected 10 to 60000");
  e = store.set("volumetric.unverified_share", "101");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), "volumetric.unverified_share: '101': expected an integer from 0 to 100");
  e = store.set("volumetric.flood", "1");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().find("volumetric.flood: unknown volumetric key 'flood' (expected v4_prefix, v6_prefix, "),
            std::string::npos) << e.error();
  ASSERT_TRUE(store.set("volumetric.new_flows", "20000"));
  ASSERT_TRUE(store.set("volumetric.v4_prefix", "16"));
  ASSERT_TRUE(store.commit({"ops", "", {}}));
  auto cfg = volumetric_from(store.running(), zt::dp::VolumetricConfig{});
  ASSERT_TRUE(cfg) << cfg.error();
  EXPECT_EQ(cfg->new_flows_global, 20000u);
  EXPECT_EQ(cfg->v4_prefix, 16u);
  EXPECT_EQ(cfg->block_ms, zt::dp::VolumetricConfig{}.block_ms);
}

}  // namespace

// ztmanager as a real process on 127.0.0.1 (ephemeral ports), appliances as in-process sync
// clients: enrolment, revisions N and N+1, ACK/NACK visible on the manager, refused policies,
// restarts, and the agent key service's authorisation. Every wait is bounded.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "zt/controlplane/client.hpp"
#include "zt/controlplane/framing.hpp"
#include "zt/rules/snapshot.hpp"
#include "zt/rules/tools.hpp"

#ifndef ZTMANAGER_PATH
#error "ZTMANAGER_PATH must name the ztmanager binary"
#endif

namespace zt::cp {
namespace {

using namespace std::chrono_literals;
using test::TempDir;
namespace fs = std::filesystem;

template <class F>
bool eventually(F f, std::chrono::milliseconds limit = 15'000ms) {
  for (auto until = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < until;) {
    if (f()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return f();
}

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  ::pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

class ManagerProcess {
 public:
  ManagerProcess(const fs::path& root, std::string sync_listen = "127.0.0.1:0", std::string epoch_seconds = "900")
      : root_(root) {
    fs::remove(state() / "endpoints");
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* log = std::fopen((root_ / "manager.log").c_str(), "a");
      ::dup2(::fileno(log), 2);
      ::execl(ZTMANAGER_PATH, "ztmanager", "serve", "--policy-dir", (root_ / "policy").c_str(), "--state-dir",
              state().c_str(), "--psk-file", (root_ / "manager.psk").c_str(), "--listen", sync_listen.c_str(),
              "--enrol-listen", "127.0.0.1:0", "--poll-ms", "100", "--epoch-seconds",
              epoch_seconds.c_str(), "--epoch-grace-ms", "200", "--tag-window-ms", "200",
              nullptr);
      ::_exit(127);
    }
    eventually([&] { return fs::exists(state() / "endpoints"); });
    std::istringstream in(test::slurp(state() / "endpoints"));
    std::string k;
    in >> k >> sync_port >> k >> enrol_port;
  }
  ~ManagerProcess() { stop(SIGTERM); }
  void stop(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int st = 0;
    bool gone = eventually([&] { return ::waitpid(pid_, &st, WNOHANG) == pid_; }, 10'000ms);
    if (!gone) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
    }
    // A clean stop exits 0; a sanitizer report in the manager makes it exit non-zero.
    if (sig == SIGTERM) {
      EXPECT_TRUE(gone && WIFEXITED(st) && WEXITSTATUS(st) == 0) << log();
    }
    pid_ = -1;
  }
  fs::path state() const { return root_ / "state"; }
  std::string log() const { return test::slurp(root_ / "manager.log"); }
  std::string token(const std::string& name, const std::string& kind = "appliance") const {
    return run_capture(fmt::format("{} token create --state-dir {} --name {} --kind {}", ZTMANAGER_PATH, state().string(),
                                   name, kind));
  }
  std::uint16_t sync_port = 0, enrol_port = 0;

 private:
  fs::path root_;
  pid_t pid_ = -1;
};

struct EndToEnd : ::testing::Test {
  TempDir root;
  std::atomic<bool> stop{false};
  void SetUp() override {
    test::write_policy(root.path() / "policy", test::kAllowRules, test::kAllowTests);
    test::write(root.path() / "manager.psk", test::psk_hex('5'), 0600);
    test::write(root.path() / "appliance.psk", test::psk_hex('5'), 0600);
  }
  ClientConfig config(const ManagerProcess& m, const std::string& name) {
    ClientConfig c;
    c.manager_port = m.sync_port;
    c.state_dir = root.path() / name;
    c.psk_file = root.path() / "appliance.psk";
    return c;
  }
  std::unique_ptr<SyncClient> enrolled(const ManagerProcess& m, const std::string& name) {
    auto cfg = config(m, name);
    auto uri = enrol(cfg, m.enrol_port, m.token(name), m.state() / "ca.pem");
    EXPECT_TRUE(uri.has_value()) << uri.error().message;
    auto c = SyncClient::open(cfg);
    EXPECT_TRUE(c.has_value()) << c.error().message;
    return c ? std::move(*c) : nullptr;
  }
  std::string status(const ManagerProcess& m, const std::string& name) { return test::slurp(m.state() / "appliances" / name); }
};

TEST_F(EndToEnd, EnrolledApplianceReceivesRevisionNThenNPlusOneAndAcksBoth) {
  ManagerProcess m(root.path());
  ASSERT_NE(m.sync_port, 0) << m.log();
  auto client = enrolled(m, "gw1");
  ASSERT_TRUE(client);
  EXPECT_EQ(client->identity_uri(), "spiffe://ztgate.local/appliance/gw1");
  std::vector<std::uint64_t> published;
  std::mutex mu;
  client->set_publisher([&](const Update& u) -> Result<void> {
    std::lock_guard g(mu);
    published.push_back(u.revision);
    return {};
  });
  auto session = std::async(std::launch::async, [&] { return client->run_session(stop, 2, 20'000ms); });
  ASSERT_TRUE(eventually([&] {
    std::lock_guard g(mu);
    return published.size() == 1;
  })) << m.log();
  EXPECT_TRUE(eventually([&] { return status(m, "gw1").starts_with("acked revision=1"); })) << m.log();

  // The operator adds a deny for ssh (and a test for it); the manager publishes revision 2.
  test::write_policy(root.path() / "policy", test::kDenySshRules, test::kDenySshTests);
  ASSERT_EQ(session.wait_for(20s), std::future_status::ready) << m.log();
  auto r = session.get();
  ASSERT_TRUE(r.has_value()) << r.error().message << "\n" << m.log();
  EXPECT_EQ(published, (std::vector<std::uint64_t>{1, 2}));
  ASSERT_TRUE(client->current().has_value());
  EXPECT_EQ(client->current()->revision, 2u);
  EXPECT_TRUE(eventually([&] { return status(m, "gw1").starts_with("acked revision=2"); })) << m.log();
  EXPECT_EQ(test::slurp(m.state() / "revision"), "2\n");

  // What the dataplane would now do with web-a -> 10.10.0.2:22.
  for (const auto& t : rules::run_tests(*client->current()->snapshot)) EXPECT_TRUE(t.passed) << t.message;
}

TEST_F(EndToEnd, EnrolmentTokenWorksOnce) {
  ManagerProcess m(root.path());
  const std::string tok = m.token("gw1");
  auto cfg = config(m, "gw1");
  ASSERT_TRUE(enrol(cfg, m.enrol_port, tok, m.state() / "ca.pem").has_value()) << m.log();
  auto second = enrol(config(m, "gw1-copy"), m.enrol_port, tok, m.state() / "ca.pem");
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().message.find("unknown or already used enrolment token"), std::string::npos)
      << second.error().message;
}

TEST_F(EndToEnd, PolicyWhoseTestsFailIsNeverPublishedAndTheOldRevisionKeepsBeingServed) {
  ManagerProcess m(root.path());
  auto client = enrolled(m, "gw1");
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->run_session(stop, 1, 10'000ms).has_value()) << m.log();
  EXPECT_EQ(client->current()->revision, 1u);

  test::write(root.path() / "policy" / "tests.yaml", test::kFailingTests);
  ASSERT_TRUE(eventually([&] { return m.log().find("1 of 1 policy tests failed") != std::string::npos; })) << m.log();
  // The operator sees where: the failing test's file, line and column.
  EXPECT_NE(m.log().find((root.path() / "policy" / "tests.yaml").string() + ":2:"), std::string::npos) << m.log();
  EXPECT_NE(m.log().find("still serving revision 1"), std::string::npos);
  EXPECT_EQ(test::slurp(m.state() / "revision"), "1\n");

  // A reconnecting appliance still gets revision 1 (and accepts it again: same content).
  ASSERT_TRUE(client->run_session(stop, 1, 10'000ms).has_value()) << m.log();
  EXPECT_TRUE(client->last_outcome().accepted) << client->last_outcome().message;
  EXPECT_EQ(client->current()->revision, 1u);

  // A syntax error is refused the same way, with file:line:col.
  test::write(root.path() / "policy" / "rules.yaml", "rules:\n  - {id: 100, frm: any}\n");
  ASSERT_TRUE(eventually([&] { return m.log().find("validation failed") != std::string::npos; })) << m.log();
  EXPECT_NE(m.log().find((root.path() / "policy" / "rules.yaml").string() + ":2:"), std::string::npos) << m.log();
  EXPECT_EQ(test::slurp(m.state() / "revision"), "1\n");
}

TEST_F(EndToEnd, ManagerKilledMidStreamComesBackWithTheSameRevisionAndTheApplianceFollows) {
  auto m = std::make_unique<ManagerProcess>(root.path());
  const std::uint16_t port = m->sync_port;
  auto client = enrolled(*m, "gw1");
  ASSERT_TRUE(client);
  std::atomic<std::uint64_t> rev{0};
  client->set_publisher([&](const Update& u) -> Result<void> {
    rev.store(u.revision);
    return {};
  });
  std::thread loop([&] { client->run(stop); });
  EXPECT_TRUE(eventually([&] { return rev.load() == 1; })) << m->log();
  m->stop(SIGKILL);
  // The appliance keeps enforcing revision 1 while the manager is away.
  EXPECT_EQ(client->current()->revision, 1u);
  m = std::make_unique<ManagerProcess>(root.path(), fmt::format("127.0.0.1:{}", port));
  ASSERT_EQ(m->sync_port, port) << m->log();
  // The restarted manager serves the persisted revision 1 again (its start line, the second in the log).
  const std::string log = m->log();
  const auto first = log.find("(revision 1, TLS 1.3");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_NE(log.find("(revision 1, TLS 1.3", first + 1), std::string::npos) << log;
  test::write_policy(root.path() / "policy", test::kDenySshRules, test::kDenySshTests);
  EXPECT_TRUE(eventually([&] { return rev.load() == 2; }, 25'000ms)) << m->log();
  stop.store(true);
  loop.join();
  EXPECT_EQ(client->highest_accepted(), 2u);
}

TEST_F(EndToEnd, WrongPreSharedSecretIsNackedAndTheManagerShowsTheRefusal) {
  test::write(root.path() / "appliance.psk", test::psk_hex('6'), 0600);
  ManagerProcess m(root.path());
  auto client = enrolled(m, "gw1");
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->run_session(stop, 1, 10'000ms).has_value()) << m.log();
  EXPECT_FALSE(client->last_outcome().accepted);
  EXPECT_EQ(client->last_outcome().nack_code, pb::NACK_CODE_KEY_UNWRAP_FAILED);
  EXPECT_FALSE(client->current().has_value());  // nothing half-applied
  EXPECT_TRUE(eventually([&] { return status(m, "gw1").starts_with("nacked revision=1 code=NACK_CODE_KEY_UNWRAP_FAILED"); }))
      << m.log();
  EXPECT_NE(m.log().find("gw1 REFUSED revision 1"), std::string::npos);
}

TEST_F(EndToEnd, AgentGetsOnlyItsOwnIdentityKey) {
  ManagerProcess m(root.path());
  auto cfg = config(m, "agent");
  auto uri = enrol(cfg, m.enrol_port, m.token("1001", "agent"), m.state() / "ca.pem");
  ASSERT_TRUE(uri.has_value()) << uri.error().message;
  ASSERT_EQ(*uri, "spiffe://ztgate.local/agent/1001");
  auto ctx = make_client_context({.ca_pem = test::slurp(cfg.state_dir / "ca.pem"),
                                  .cert_pem = test::slurp(cfg.state_dir / "identity.pem"),
                                  .key_pem = test::slurp(cfg.state_dir / "identity.key")});
  ASSERT_TRUE(ctx.has_value());
  auto ask = [&](std::uint32_t id) {
    auto c = TlsConnection::connect("127.0.0.1", m.sync_port, *ctx, 3000ms);
    EXPECT_TRUE(c.has_value());
    pb::ClientMessage req;
    req.mutable_agent_keys()->set_identity(id);
    EXPECT_TRUE(write_message(**c, req).has_value());
    pb::ServerMessage resp;
    auto r = read_message(**c, resp, 5000ms);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    return resp;
  };
  auto other = ask(1002);
  ASSERT_TRUE(other.has_error());
  EXPECT_EQ(other.error().code(), pb::ERROR_CODE_UNAUTHORIZED);
  EXPECT_NE(m.log().find("refused agent 1001 asking for identity 1002"), std::string::npos);

  auto own = ask(1001);
  ASSERT_TRUE(own.has_agent_keys()) << own.DebugString();
  ASSERT_EQ(own.agent_keys().keys_size(), 2);  // e and e+1

  // The agent library does the same and unwraps: the key equals K(1001, e) derived locally.
  cfg.manager_port = m.sync_port;
  auto keys = fetch_agent_keys(cfg, 1001);
  ASSERT_TRUE(keys.has_value()) << keys.error().message;
  ASSERT_EQ(keys->size(), 2u);
  const std::string master = test::slurp(m.state() / "master.key");
  auto sv = crypto::derive_epoch_secret({reinterpret_cast<const std::uint8_t*>(master.data()), master.size()},
                                        "ztgate.local", (*keys)[0].epoch);
  auto expect = crypto::derive_identity_key(*sv, 1001, crypto::Alg::aes256_cmac);
  ASSERT_TRUE(expect.has_value());
  EXPECT_TRUE(std::ranges::equal((*keys)[0].bytes(), expect->bytes()));
  EXPECT_EQ((*keys)[1].epoch, (*keys)[0].epoch + 1);
  auto refused = fetch_agent_keys(cfg, 1002);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message.find("agent certificate is for identity 1001, not 1002"), std::string::npos)
      << refused.error().message;
}

TEST_F(EndToEnd, CertificateIsRenewedOverTheLiveStreamAndTheNewOneConnects) {
  ManagerProcess m(root.path());
  auto cfg = config(m, "gw1");
  cfg.renew_before = std::chrono::hours(25);  // a 24 h certificate is due at once
  ASSERT_TRUE(enrol(cfg, m.enrol_port, m.token("gw1"), m.state() / "ca.pem").has_value()) << m.log();
  const std::string first_cert = test::slurp(cfg.state_dir / "identity.pem");
  auto client = SyncClient::open(cfg);
  ASSERT_TRUE(client.has_value());
  auto session = std::async(std::launch::async, [&] { return (*client)->run_session(stop, 0, 20'000ms); });
  EXPECT_TRUE(eventually([&] { return test::slurp(cfg.state_dir / "identity.pem") != first_cert; })) << m.log();
  EXPECT_TRUE(eventually([&] { return m.log().find("renewed certificate of spiffe://ztgate.local/appliance/gw1") != std::string::npos; }))
      << m.log();
  stop.store(true);
  ASSERT_EQ(session.wait_for(10s), std::future_status::ready);
  auto r = session.get();
  EXPECT_TRUE(r.has_value()) << r.error().message;  // the stream was never dropped
  EXPECT_EQ(*certificate_uri(test::slurp(cfg.state_dir / "identity.pem")), "spiffe://ztgate.local/appliance/gw1");
  // The next session authenticates with the renewed certificate and key.
  std::atomic<bool> go{false};
  cfg.renew_before = std::chrono::seconds(0);
  auto again = SyncClient::open(cfg);
  ASSERT_TRUE(again.has_value());
  ASSERT_TRUE((*again)->run_session(go, 1, 10'000ms).has_value()) << m.log();
  EXPECT_TRUE((*again)->last_outcome().accepted);
}

TEST_F(EndToEnd, OneManagerBringsEveryApplianceToTheNewRevision) {
  ManagerProcess m(root.path());
  constexpr int kAppliances = 3;
  std::vector<std::unique_ptr<SyncClient>> clients;
  std::vector<std::future<Result<void>>> sessions;
  for (int i = 0; i < kAppliances; ++i) {
    clients.push_back(enrolled(m, fmt::format("gw{}", i)));
    ASSERT_TRUE(clients.back());
  }
  for (auto& c : clients)
    sessions.push_back(std::async(std::launch::async, [&, p = c.get()] { return p->run_session(stop, 2, 20'000ms); }));
  for (int i = 0; i < kAppliances; ++i)
    EXPECT_TRUE(eventually([&] { return status(m, fmt::format("gw{}", i)).starts_with("acked revision=1"); })) << m.log();
  test::write_policy(root.path() / "policy", test::kDenySshRules, test::kDenySshTests);
  for (int i = 0; i < kAppliances; ++i) {
    ASSERT_EQ(sessions[i].wait_for(20s), std::future_status::ready) << m.log();
    EXPECT_TRUE(sessions[i].get().has_value());
    EXPECT_EQ(clients[i]->current()->revision, 2u);
    EXPECT_TRUE(eventually([&] { return status(m, fmt::format("gw{}", i)).starts_with("acked revision=2"); })) << m.log();
  }
  const std::string st = run_capture(fmt::format("{} status --state-dir {}", ZTMANAGER_PATH, m.state().string()));
  EXPECT_NE(st.find("published revision: 2"), std::string::npos) << st;
  EXPECT_NE(st.find("gw2: acked revision=2"), std::string::npos) << st;
  // Touching a file without changing it is not a new revision.
  test::write(root.path() / "policy" / "rules.yaml", test::kDenySshRules);
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(test::slurp(m.state() / "revision"), "2\n");
}

TEST_F(EndToEnd, OversizedFrameFromAnApplianceClosesOnlyThatStream) {
  ManagerProcess m(root.path());
  auto client = enrolled(m, "gw1");
  ASSERT_TRUE(client);
  const auto dir = root.path() / "gw1";
  auto ctx = make_client_context({.ca_pem = test::slurp(dir / "ca.pem"), .cert_pem = test::slurp(dir / "identity.pem"),
                                  .key_pem = test::slurp(dir / "identity.key")});
  ASSERT_TRUE(ctx.has_value());
  auto c = TlsConnection::connect("127.0.0.1", m.sync_port, *ctx, 3000ms);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  const std::uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
  ASSERT_TRUE((*c)->write_all(huge).has_value());
  EXPECT_TRUE(eventually([&] { return m.log().find("above the 8388608-byte limit") != std::string::npos; })) << m.log();
  // The manager is still there for everyone else.
  ASSERT_TRUE(client->run_session(stop, 1, 10'000ms).has_value()) << m.log();
  EXPECT_TRUE(client->last_outcome().accepted);
}

TEST_F(EndToEnd, NewEpochSecretsArrivePushedWithTheSameRevision) {
  ManagerProcess m(root.path(), "127.0.0.1:0", "1");  // 1-second epochs
  auto client = enrolled(m, "gw1");
  ASSERT_TRUE(client);
  std::vector<std::pair<std::uint64_t, bool>> seen;  // (revision, has the epoch after the first push's)
  std::int64_t first_epoch = -1;
  client->set_publisher([&](const Update& u) -> Result<void> {
    const std::int64_t e = u.keys->epoch_at(::time(nullptr) * 1'000'000'000LL);
    if (first_epoch < 0) first_epoch = e;
    seen.emplace_back(u.revision, u.keys->has_epoch(static_cast<std::uint64_t>(first_epoch + 2)));
    return {};
  });
  ASSERT_TRUE(client->run_session(stop, 3, 10'000ms).has_value()) << m.log();
  ASSERT_EQ(seen.size(), 3u);
  for (auto& [rev, _] : seen) EXPECT_EQ(rev, 1u);
  EXPECT_FALSE(seen.front().second);  // SV(e-1), SV(e), SV(e+1) only
  EXPECT_TRUE(seen.back().second);    // two epochs later the ring reaches e+2
}

TEST_F(EndToEnd, ApplianceCertificateIsRequiredOnTheSyncPort) {
  ManagerProcess m(root.path());
  auto ctx = make_client_context({.ca_pem = test::slurp(m.state() / "ca.pem")});
  ASSERT_TRUE(ctx.has_value());
  auto c = TlsConnection::connect("127.0.0.1", m.sync_port, *ctx, 3000ms);
  bool refused = !c.has_value();
  if (c) {
    pb::ServerMessage resp;
    refused = !read_message(**c, resp, 3000ms).has_value();
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(eventually([&] { return m.log().find("did not return a certificate") != std::string::npos; })) << m.log();
}

}  // namespace
}  // namespace zt::cp

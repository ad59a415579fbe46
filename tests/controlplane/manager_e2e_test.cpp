// ztmanager as a real process on 127.0.0.1 (ephemeral ports), appliances as in-process sync
// clients: enrolment, revisions N and N+1, ACK/NACK visible on the manager, refused policies,
// restarts, and the agent key service's authorisation. Every wait is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "fixtures.hpp"
#include "zt/controlplane/agent_client.hpp"
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
  ManagerProcess(const fs::path& root, std::string sync_listen = "127.0.0.1:0", std::string epoch_seconds = "900",
                 std::vector<std::string> extra = {})
      : root_(root) {
    fs::remove(state() / "endpoints");
    std::vector<std::string> args{"ztmanager", "serve", "--policy-dir", (root_ / "policy").string(), "--state-dir",
                                  state().string(), "--psk-file", (root_ / "manager.psk").string(), "--listen",
                                  sync_listen, "--enrol-listen", "127.0.0.1:0", "--poll-ms", "100", "--epoch-seconds",
                                  epoch_seconds, "--epoch-grace-ms", "200", "--tag-window-ms", "200"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* log = std::fopen((root_ / "manager.log").c_str(), "a");
      ::dup2(::fileno(log), 2);
      ::execv(ZTMANAGER_PATH, argv.data());
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
  // The session ends once revision 2 is in. Not after exactly two pushes: when the test runs
  // across an epoch boundary (every 15 minutes of wall-clock time with 900-second epochs) the
  // manager pushes revision 1 again with the new epoch's secrets, which is correct behaviour
  // (NewEpochSecretsArrivePushedWithTheSameRevision); a CI run at 04:45:00 UTC saw {1, 1}.
  client->set_publisher([&](const Update& u) -> Result<void> {
    std::lock_guard g(mu);
    published.push_back(u.revision);
    if (u.revision == 2) stop = true;
    return {};
  });
  auto session = std::async(std::launch::async, [&] { return client->run_session(stop, 0, 20'000ms); });
  ASSERT_TRUE(eventually([&] {
    std::lock_guard g(mu);
    return !published.empty();
  })) << m.log();
  EXPECT_TRUE(eventually([&] { return status(m, "gw1").starts_with("acked revision=1"); })) << m.log();

  // The operator adds a deny for ssh (and a test for it); the manager publishes revision 2.
  test::write_policy(root.path() / "policy", test::kDenySshRules, test::kDenySshTests);
  ASSERT_EQ(session.wait_for(20s), std::future_status::ready) << m.log();
  auto r = session.get();
  ASSERT_TRUE(r.has_value()) << r.error().message << "\n" << m.log();
  // Revision 1 (once, or again at an epoch boundary), then revision 2, once.
  ASSERT_GE(published.size(), 2u);
  EXPECT_EQ(published.back(), 2u);
  EXPECT_EQ(std::count(published.begin(), published.end(), std::uint64_t{1}), static_cast<long>(published.size() - 1))
      << "pushed revisions: " << ::testing::PrintToString(published);
  ASSERT_TRUE(client->current().has_value());
  EXPECT_EQ(client->current()->revision, 2u);
  EXPECT_TRUE(eventually([&] { return status(m, "gw1").starts_with("acked revision=2"); })) << m.log();
  EXPECT_EQ(test::slurp(m.state() / "revision"), "2\n");

  // What the dataplane would now do with web-a -> 10.10.0.2:22.
  for (const auto& t : rules::run_tests(*client->current()->snapshot)) EXPECT_TRUE(t.passed) << t.message;
}

TEST_F(EndToEnd, NextRevisionCarriesTheSignedDeltaOfTheEditAndTheApplianceReportsIt) {
  test::write_policy(root.path() / "policy", test::kDenySshRules, test::kDenySshTests);
  ManagerProcess m(root.path());
  auto client = enrolled(m, "gw1");
  ASSERT_TRUE(client);
  std::vector<PushOutcome> outcomes;
  std::mutex mu;
  // Until revision 2 is in (revision 1 may come twice across an epoch boundary: see above).
  client->set_events({.on_push = [&](const PushOutcome& o) {
                        std::lock_guard g(mu);
                        outcomes.push_back(o);
                        if (o.revision == 2) stop = true;
                      },
                      .on_session = {}});
  auto session = std::async(std::launch::async, [&] { return client->run_session(stop, 0, 20'000ms); });
  ASSERT_TRUE(eventually([&] { return status(m, "gw1").starts_with("acked revision=1"); })) << m.log();

  // The operator adds identity frontend-2, widens zone-b and drops the no-ssh rule (and its test).
  test::write_policy(root.path() / "policy", test::kAllowRules, test::kAllowTests, test::kIdentitiesEdited);
  ASSERT_EQ(session.wait_for(20s), std::future_status::ready) << m.log();
  auto r = session.get();
  ASSERT_TRUE(r.has_value()) << r.error().message << "\n" << m.log();
  ASSERT_GE(outcomes.size(), 2u);
  EXPECT_TRUE(outcomes[0].accepted);
  EXPECT_EQ(outcomes[0].revision, 1u);
  EXPECT_EQ(outcomes[0].delta, "");  // the first push has nothing to be a delta from
  for (std::size_t i = 1; i + 1 < outcomes.size(); ++i) {  // an epoch boundary's re-push of 1
    EXPECT_TRUE(outcomes[i].accepted) << outcomes[i].message;
    EXPECT_EQ(outcomes[i].revision, 1u);
  }
  const PushOutcome& last = outcomes.back();
  ASSERT_TRUE(last.accepted) << last.message << " [" << last.resource << "]";
  EXPECT_EQ(last.revision, 2u);
  EXPECT_EQ(last.delta_base, 1u);
  EXPECT_EQ(last.delta, "delta from 1: +identity frontend-2 (2003), ~segment zone-b, rules +0 -1 ~0");
  // The manager says the same when it publishes, and knows the appliance took the delta.
  EXPECT_NE(m.log().find("published revision 2 ("), std::string::npos) << m.log();
  EXPECT_NE(m.log().find("; delta from 1: +identity frontend-2 (2003), ~segment zone-b, rules +0 -1 ~0"), std::string::npos)
      << m.log();
  EXPECT_TRUE(eventually([&] { return m.log().find("gw1 acknowledged revision 2 (with the delta from 1)") != std::string::npos; }))
      << m.log();

  // A reconnect enforcing revision 2 gets revision 2 again, without a delta (its base is 1).
  stop = false;  // the first session ended by it
  ASSERT_TRUE(client->run_session(stop, 1, 10'000ms).has_value()) << m.log();
  EXPECT_TRUE(client->last_outcome().accepted) << client->last_outcome().message;
  EXPECT_EQ(client->last_outcome().delta, "");
  EXPECT_EQ(client->current()->revision, 2u);
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

AgentConfig agent_config(const ManagerProcess& m, const fs::path& dir, const fs::path& psk) {
  return AgentConfig{.manager_port = m.sync_port, .enrol_port = m.enrol_port, .state_dir = dir, .psk_file = psk};
}

crypto::IdentityKey expected_key(const ManagerProcess& m, std::uint32_t id, std::uint64_t epoch) {
  const std::string master = test::slurp(m.state() / "master.key");
  auto sv = crypto::derive_epoch_secret({reinterpret_cast<const std::uint8_t*>(master.data()), master.size()},
                                        "ztgate.local", epoch);
  EXPECT_TRUE(sv.has_value());
  auto k = crypto::derive_identity_key(*sv, id, crypto::Alg::aes256_cmac);
  EXPECT_TRUE(k.has_value());
  return std::move(*k);
}

TEST_F(EndToEnd, AgentEnrolledByIdentityNameFetchesItsOwnCurrentAndNextKey) {
  ManagerProcess m(root.path());
  const std::string tok = m.token("web-a", "agent");  // by name, resolved in the published policy
  ASSERT_TRUE(tok.starts_with("zt1-")) << tok << m.log();
  auto cfg = agent_config(m, root.path() / "agent", root.path() / "appliance.psk");
  cfg.renew_before = std::chrono::hours(25);  // due at once: fetch() renews on the same connection
  auto agent = AgentClient::enrol(cfg, tok, m.state() / "ca.pem");
  ASSERT_TRUE(agent.has_value()) << agent.error().message << m.log();
  EXPECT_EQ((*agent)->identity(), 1001u);
  EXPECT_EQ((*agent)->identity_uri(), "spiffe://ztgate.local/agent/1001");
  const std::string first_cert = test::slurp(cfg.state_dir / "identity.pem");

  auto keys = (*agent)->fetch();
  ASSERT_TRUE(keys.has_value()) << keys.error().message << m.log();
  EXPECT_EQ(keys->identity, 1001u);
  EXPECT_EQ(keys->domain, "ztgate.local");
  EXPECT_EQ(keys->policy_revision, 1u);
  EXPECT_EQ(keys->epochs.origin_ns, 0);
  EXPECT_EQ(keys->epochs.length_ns, 900'000'000'000);
  const auto now_epoch = static_cast<std::uint64_t>(::time(nullptr) / 900);
  EXPECT_GE(keys->current.epoch + 1, now_epoch);
  EXPECT_LE(keys->current.epoch, now_epoch);
  EXPECT_EQ(keys->next.epoch, keys->current.epoch + 1);
  // The keys equal K(1001, e) and K(1001, e+1) derived locally from the manager's master secret.
  EXPECT_TRUE(std::ranges::equal(keys->current.bytes(), expected_key(m, 1001, keys->current.epoch).bytes()));
  EXPECT_TRUE(std::ranges::equal(keys->next.bytes(), expected_key(m, 1001, keys->next.epoch).bytes()));
  EXPECT_FALSE(std::ranges::equal(keys->current.bytes(), expected_key(m, 1002, keys->current.epoch).bytes()));
  // The certificate was renewed on the way (same identity, new key pair), and the next fetch uses it.
  EXPECT_NE(test::slurp(cfg.state_dir / "identity.pem"), first_cert);
  EXPECT_NE(m.log().find("renewed certificate of spiffe://ztgate.local/agent/1001"), std::string::npos) << m.log();
  cfg.renew_before = std::chrono::seconds(0);
  auto reopened = AgentClient::open(cfg);
  ASSERT_TRUE(reopened.has_value()) << reopened.error().message;
  auto again = (*reopened)->fetch();
  ASSERT_TRUE(again.has_value()) << again.error().message << m.log();
  EXPECT_TRUE(std::ranges::equal(again->current.bytes(), keys->current.bytes()) || again->current.epoch != keys->current.epoch);

  // A wrong pre-shared secret cannot unwrap them, and says so.
  test::write(root.path() / "other.psk", test::psk_hex('7'), 0600);
  auto wrong = AgentClient::open(agent_config(m, cfg.state_dir, root.path() / "other.psk"));
  ASSERT_TRUE(wrong.has_value());
  auto refused = (*wrong)->fetch();
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().message.find("psk"), std::string::npos) << refused.error().message;
}

TEST_F(EndToEnd, AgentAskingForAnotherIdentitysKeyIsRefusedAndLogged) {
  ManagerProcess m(root.path());
  auto agent = AgentClient::enrol(agent_config(m, root.path() / "agent", root.path() / "appliance.psk"),
                                  m.token("1001", "agent"), m.state() / "ca.pem");
  ASSERT_TRUE(agent.has_value()) << agent.error().message;
  const auto dir = root.path() / "agent";
  auto ctx = make_client_context({.ca_pem = test::slurp(dir / "ca.pem"), .cert_pem = test::slurp(dir / "identity.pem"),
                                  .key_pem = test::slurp(dir / "identity.key")});
  ASSERT_TRUE(ctx.has_value());
  // The library only ever asks for its own id; a modified agent asks for 1002 on the wire.
  auto c = TlsConnection::connect("127.0.0.1", m.sync_port, *ctx, 3000ms);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  pb::ClientMessage req;
  req.mutable_agent_keys()->set_identity(1002);
  ASSERT_TRUE(write_message(**c, req).has_value());
  pb::ServerMessage resp;
  ASSERT_TRUE(read_message(**c, resp, 5000ms).has_value());
  ASSERT_TRUE(resp.has_error()) << resp.DebugString();
  EXPECT_FALSE(resp.has_agent_keys());
  EXPECT_EQ(resp.error().code(), pb::ERROR_CODE_UNAUTHORIZED);
  EXPECT_EQ(resp.error().message(), "agent certificate is for identity 1001, not 1002");
  EXPECT_TRUE(eventually([&] { return m.log().find("refused agent 1001 asking for identity 1002") != std::string::npos; }))
      << m.log();
}

TEST_F(EndToEnd, UnenrolledAgentIsRefused) {
  ManagerProcess m(root.path());
  // No state at all: the library says to enrol first.
  auto none = AgentClient::open(agent_config(m, root.path() / "nothing", root.path() / "appliance.psk"));
  ASSERT_FALSE(none.has_value());
  EXPECT_NE(none.error().message.find("enrol first"), std::string::npos) << none.error().message;
  // A certificate for spiffe://ztgate.local/agent/1001 from a CA the manager never trusted.
  auto rogue = CertificateAuthority::create("ztgate.local");
  ASSERT_TRUE(rogue.has_value());
  const auto dir = root.path() / "rogue";
  auto key = generate_ed25519();
  auto cert = rogue->issue(key->get(), "spiffe://ztgate.local/agent/1001");
  ASSERT_TRUE(cert.has_value());
  test::write(dir / "identity.key", *private_key_pem(key->get()), 0600);
  test::write(dir / "identity.pem", cert->pem);
  test::write(dir / "ca.pem", test::slurp(m.state() / "ca.pem"));
  test::write(dir / "domain", "ztgate.local");
  auto agent = AgentClient::open(agent_config(m, dir, root.path() / "appliance.psk"));
  ASSERT_TRUE(agent.has_value()) << agent.error().message;
  auto keys = (*agent)->fetch();
  ASSERT_FALSE(keys.has_value());
  EXPECT_TRUE(eventually([&] { return m.log().find("sync connection from 127.0.0.1:") != std::string::npos; })) << m.log();
  EXPECT_EQ(m.log().find("served keys"), std::string::npos) << m.log();
}

TEST_F(EndToEnd, AgentTokenMustNameAnIdentityOfThePublishedPolicy) {
  ManagerProcess m(root.path());
  const std::string out = run_capture(fmt::format("{} token create --state-dir {} --kind agent --name nobody 2>&1",
                                                  ZTMANAGER_PATH, m.state().string()));
  EXPECT_NE(out.find("agent --name 'nobody' is neither the name nor the id of an identity in the published policy; "
                     "known: web-a (1001), client-a (1002)"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("zt1-"), std::string::npos) << out;
}

// A plain TCP connection to 127.0.0.1:port (no TLS): a client that never speaks.
int silent_connection(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Whether the peer closed `fd` within `limit` (EOF or reset), without sending anything.
bool closed_by_peer(int fd, std::chrono::milliseconds limit) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(limit.count())) != 1) return false;
  char c;
  return ::recv(fd, &c, 1, 0) <= 0;
}

TEST_F(EndToEnd, EnrolmentPortRefusesConnectionsBeyondItsLimitAndDropsSilentClients) {
  ManagerProcess m(root.path(), "127.0.0.1:0", "900",
                   {"--max-enrol-connections", "2", "--handshake-timeout-ms", "1500"});
  ASSERT_NE(m.enrol_port, 0) << m.log();
  // Two clients that connect and never start TLS hold both enrolment slots...
  const int a = silent_connection(m.enrol_port), b = silent_connection(m.enrol_port);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  std::this_thread::sleep_for(300ms);  // the manager accepts within its 50 ms loop
  // ...so a third is closed at once, and the manager says why.
  const int c = silent_connection(m.enrol_port);
  ASSERT_GE(c, 0);
  EXPECT_TRUE(closed_by_peer(c, 1000ms));
  EXPECT_TRUE(eventually([&] {
    return m.log().find("enrolment connection from 127.0.0.1:") != std::string::npos &&
           m.log().find("refused: 2 connections already open (--max-enrol-connections)") != std::string::npos;
  })) << m.log();
  // The silent ones are dropped after the handshake timeout (logged), which frees their slots.
  EXPECT_TRUE(closed_by_peer(a, 5000ms));
  EXPECT_TRUE(closed_by_peer(b, 5000ms));
  EXPECT_TRUE(eventually([&] { return m.log().find("TLS handshake with client: timed out") != std::string::npos; })) << m.log();
  std::this_thread::sleep_for(200ms);
  auto uri = enrol(config(m, "gw1"), m.enrol_port, m.token("gw1"), m.state() / "ca.pem");
  EXPECT_TRUE(uri.has_value()) << uri.error().message << m.log();
  for (int fd : {a, b, c}) ::close(fd);
}

TEST_F(EndToEnd, CaKeyIsEncryptedAtRestUnderThePassphraseFile) {
  const fs::path pass = root.path() / "ca-pass";
  test::write(pass, "correct horse battery staple\n", 0600);
  std::string ca_pem;
  {
    // First start in the clear (an existing installation), then with the passphrase: ca.key is
    // encrypted in place and the CA (ca.pem) stays the same.
    ManagerProcess clear(root.path());
    ASSERT_NE(clear.sync_port, 0) << clear.log();
    EXPECT_NE(test::slurp(clear.state() / "ca.key").find("BEGIN PRIVATE KEY"), std::string::npos);
    ca_pem = test::slurp(clear.state() / "ca.pem");
  }
  {
    ManagerProcess m(root.path(), "127.0.0.1:0", "900", {"--ca-key-passphrase-file", pass.string()});
    ASSERT_NE(m.sync_port, 0) << m.log();
    const std::string key = test::slurp(m.state() / "ca.key");
    EXPECT_NE(key.find("BEGIN ENCRYPTED PRIVATE KEY"), std::string::npos) << key;
    EXPECT_EQ(key.find("BEGIN PRIVATE KEY"), std::string::npos);
    EXPECT_EQ(test::slurp(m.state() / "ca.pem"), ca_pem);
    EXPECT_NE(m.log().find("CA key encrypted at rest"), std::string::npos) << m.log();
    // The CA still issues: an appliance enrols and syncs.
    auto client = enrolled(m, "gw1");
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->run_session(stop, 1, 10'000ms).has_value()) << m.log();
    EXPECT_TRUE(client->last_outcome().accepted);
  }
  auto serve = [&](const std::string& extra) {
    return run_capture(fmt::format("{} serve --policy-dir {} --state-dir {} --psk-file {} --listen 127.0.0.1:0 "
                                   "--enrol-listen 127.0.0.1:0 {} 2>&1; echo exit=$?",
                                   ZTMANAGER_PATH, (root.path() / "policy").string(), (root.path() / "state").string(),
                                   (root.path() / "manager.psk").string(), extra));
  };
  // Without the passphrase, or with a wrong one, the manager does not start, and says why.
  std::string out = serve("");
  EXPECT_NE(out.find("ca.key is encrypted: give its passphrase with --ca-key-passphrase-file"), std::string::npos) << out;
  EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
  const fs::path wrong = root.path() / "wrong-pass";
  test::write(wrong, "not the right passphrase\n", 0600);
  out = serve("--ca-key-passphrase-file " + wrong.string());
  EXPECT_NE(out.find("cannot decrypt it with the passphrase from --ca-key-passphrase-file"), std::string::npos) << out;
  EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
  // A passphrase file others can read is refused before anything is decrypted.
  ::chmod(pass.c_str(), 0644);
  out = serve("--ca-key-passphrase-file " + pass.string());
  EXPECT_NE(out.find("is readable by group or others; chmod 600 it"), std::string::npos) << out;
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
  // Each session ends once its client has revision 2 (not after two pushes: across an epoch
  // boundary revision 1 comes again with the new epoch's secrets, see the first test).
  std::array<std::atomic<bool>, kAppliances> has_2{};
  for (int i = 0; i < kAppliances; ++i) {
    clients[i]->set_events({.on_push = [&has_2, i](const PushOutcome& o) {
                              if (o.accepted && o.revision == 2) has_2[i] = true;
                            },
                            .on_session = {}});
    sessions.push_back(std::async(std::launch::async,
                                  [&has_2, i, p = clients[i].get()] { return p->run_session(has_2[i], 0, 20'000ms); }));
  }
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

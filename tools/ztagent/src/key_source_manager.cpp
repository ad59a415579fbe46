// MANAGER key source: controlplane's AgentClient (enrolment token -> certificate, then K(i,e) and
// K(i,e+1) over mutual TLS). Built with ZTAGENT_HAVE_AGENT_CLIENT when
// controlplane/include/zt/controlplane/agent_client.hpp exists; otherwise it refuses, saying so.
#include <fmt/format.h>

#include <chrono>

#include "key_source.hpp"

#ifdef ZTAGENT_HAVE_AGENT_CLIENT
#include "zt/controlplane/agent_client.hpp"
#endif

namespace zt::agent {

#ifdef ZTAGENT_HAVE_AGENT_CLIENT
namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

class ManagerKeySource final : public KeySource {
 public:
  ManagerKeySource(std::unique_ptr<cp::AgentClient> client, cp::AgentKeys keys)
      : client_(std::move(client)), keys_(std::move(keys)), fetched_ns_(steady_ns()) {}

  std::string_view name() const noexcept override { return "manager"; }
  std::uint32_t identity() const noexcept override { return keys_.identity; }
  const crypto::EpochPolicy& epoch_policy() const noexcept override { return keys_.epochs; }

  // The manager hands out K(i,e) and K(i,e+1) for the epoch of its own clock. Asked for an epoch
  // it has not got, the source fetches again (which also renews the certificate when due), at
  // most once a second so a manager whose clock lags the boundary is not hammered.
  Expected<crypto::IdentityKey> identity_key(std::uint64_t epoch) override {
    if (auto k = cached(epoch)) return *k;
    const std::int64_t now = steady_ns();
    if (now - fetched_ns_ < crypto::kNsPerSec)
      return std::unexpected(fmt::format("the manager's last answer had no key for epoch {} (retrying)", epoch));
    fetched_ns_ = now;
    auto k = client_->fetch();
    if (!k) return std::unexpected("manager: " + k.error().message);
    if (k->identity != keys_.identity)
      return std::unexpected(fmt::format("manager: keys for identity {}, expected {}", k->identity, keys_.identity));
    keys_ = std::move(*k);
    if (auto c = cached(epoch)) return *c;
    return std::unexpected(fmt::format("manager: no key for epoch {} (it sent epochs {} and {})", epoch,
                                       keys_.current.epoch, keys_.next.epoch));
  }

  // Only this identity's K(i,e) reaches an agent: no epoch secrets, hence no inbound ring.
  Expected<std::shared_ptr<const crypto::KeyRing>> inbound_ring(std::uint64_t) override {
    return std::shared_ptr<const crypto::KeyRing>{};
  }

 private:
  const crypto::IdentityKey* cached(std::uint64_t epoch) const noexcept {
    if (keys_.current.epoch == epoch) return &keys_.current;
    if (keys_.next.epoch == epoch) return &keys_.next;
    return nullptr;
  }
  std::unique_ptr<cp::AgentClient> client_;
  cp::AgentKeys keys_;
  std::int64_t fetched_ns_;
};

}  // namespace

Expected<std::unique_ptr<KeySource>> make_manager_key_source(const ManagerKeyConfig& cfg,
                                                              std::int64_t /*now_ns*/) {
  cp::AgentConfig ac;
  const auto colon = cfg.manager.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return std::unexpected(fmt::format("--manager '{}': expected HOST:PORT", cfg.manager));
  ac.manager_host = cfg.manager.substr(0, colon);
  if (ac.manager_host.size() > 2 && ac.manager_host.front() == '[' && ac.manager_host.back() == ']')
    ac.manager_host = ac.manager_host.substr(1, ac.manager_host.size() - 2);
  try {
    const int port = std::stoi(cfg.manager.substr(colon + 1));
    if (port < 1 || port > 65535) throw std::out_of_range("port");
    ac.manager_port = static_cast<std::uint16_t>(port);
  } catch (...) {
    return std::unexpected(fmt::format("--manager '{}': the port must be 1-65535", cfg.manager));
  }
  if (cfg.enrol_port < 1 || cfg.enrol_port > 65535)
    return std::unexpected(fmt::format("--enrol-port {}: expected 1-65535", cfg.enrol_port));
  ac.enrol_port = static_cast<std::uint16_t>(cfg.enrol_port);
  if (cfg.state_dir.empty()) return std::unexpected("--manager needs --state-dir (certificate and key)");
  if (cfg.psk_file.empty()) return std::unexpected("--manager needs --psk-file (unwraps the keys)");
  ac.state_dir = cfg.state_dir;
  ac.psk_file = cfg.psk_file;
  auto client = cp::AgentClient::open(ac);
  if (!client) {
    if (cfg.enrol_token.empty())
      return std::unexpected(fmt::format("--state-dir '{}': {} (first start: give --enrol-token and --manager-ca)",
                                         cfg.state_dir, client.error().message));
    if (cfg.manager_ca.empty())
      return std::unexpected("--enrol-token needs --manager-ca (the manager's ca.pem, copied out of band)");
    client = cp::AgentClient::enrol(ac, cfg.enrol_token, cfg.manager_ca);
    if (!client) return std::unexpected("enrolment: " + client.error().message);
  }
  auto keys = (*client)->fetch();
  if (!keys) return std::unexpected("manager: " + keys.error().message);
  if (cfg.identity != 0 && keys->identity != cfg.identity)
    return std::unexpected(fmt::format("--identity {}: the certificate in --state-dir is identity {} ({})",
                                       cfg.identity, keys->identity, keys->identity_uri));
  if (keys->current.alg != cfg.alg)
    return std::unexpected(fmt::format("--alg {}: the manager issues {} keys", crypto::to_string(cfg.alg),
                                       crypto::to_string(keys->current.alg)));
  return std::unique_ptr<KeySource>(std::make_unique<ManagerKeySource>(std::move(*client), std::move(*keys)));
}

#else

Expected<std::unique_ptr<KeySource>> make_manager_key_source(const ManagerKeyConfig& cfg,
                                                              std::int64_t /*now_ns*/) {
  return std::unexpected(fmt::format(
      "--manager {}: this ztagent was built without the manager's agent client "
      "(controlplane/include/zt/controlplane/agent_client.hpp was absent at build time); use "
      "local keys (--key-master) or rebuild once the agent client exists", cfg.manager));
}

#endif

}  // namespace zt::agent

#include "zt/controlplane/agent_client.hpp"

#include <fmt/format.h>

#include "util.hpp"
#include "zt/controlplane/client.hpp"
#include "zt/controlplane/framing.hpp"
#include "zt/controlplane/tls.hpp"
#include "zt/controlplane/wrap.hpp"
#include "ztgate.pb.h"

namespace zt::cp {

namespace fs = std::filesystem;

struct AgentClient::Impl {
  AgentConfig cfg;
  std::string uri, domain, ca_pem, cert_pem, key_pem;
  std::uint32_t identity = 0;
  std::int64_t not_after = 0;
  std::optional<PreSharedSecret> psk;

  Result<void> renew(TlsConnection& c);
};

AgentClient::AgentClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AgentClient::~AgentClient() = default;

std::uint32_t AgentClient::identity() const noexcept { return impl_->identity; }
const std::string& AgentClient::identity_uri() const noexcept { return impl_->uri; }
std::int64_t AgentClient::certificate_not_after() const noexcept { return impl_->not_after; }

Result<std::unique_ptr<AgentClient>> AgentClient::enrol(const AgentConfig& cfg, const std::string& token,
                                                        const fs::path& ca_pem_file) {
  ClientConfig c;
  c.manager_host = cfg.manager_host;
  c.state_dir = cfg.state_dir;
  c.groups = cfg.groups;
  c.connect_timeout = cfg.timeout;
  auto uri = cp::enrol(c, cfg.enrol_port, token, ca_pem_file);
  if (!uri) return std::unexpected(uri.error());
  return open(cfg);
}

Result<std::unique_ptr<AgentClient>> AgentClient::open(const AgentConfig& cfg) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  const fs::path& d = cfg.state_dir;
  auto cert = detail::read_file(d / "identity.pem");
  auto key = detail::read_file(d / "identity.key");
  auto ca = detail::read_file(d / "ca.pem");
  auto dom = detail::read_file(d / "domain");
  if (!cert || !key || !ca || !dom)
    return fail(fmt::format("{} holds no agent enrolment (identity.pem, identity.key, ca.pem, domain); enrol first "
                            "with a token from `ztmanager token create --kind agent --name <identity>`",
                            d.string()));
  auto uri = certificate_uri(*cert);
  if (!uri) return fail("identity.pem: " + uri.error().message);
  const std::string prefix = fmt::format("spiffe://{}/agent/", *dom);
  if (!uri->starts_with(prefix))
    return fail(fmt::format("{} is enrolled as {}, not as an agent of domain {}", d.string(), *uri, *dom));
  try {
    std::size_t used = 0;
    const std::string id = uri->substr(prefix.size());
    const unsigned long v = std::stoul(id, &used);
    if (used != id.size() || v < 256 || v > 0xffffffffUL) throw std::out_of_range(id);
    impl->identity = static_cast<std::uint32_t>(v);
  } catch (...) {
    return fail(fmt::format("identity.pem names {}, whose last part is not a numeric identity id", *uri));
  }
  auto psk = PreSharedSecret::load(cfg.psk_file);
  if (!psk) return fail("--psk-file: " + psk.error().message);
  impl->psk.emplace(std::move(*psk));
  impl->uri = *uri;
  impl->domain = *dom;
  impl->ca_pem = *ca;
  impl->cert_pem = *cert;
  impl->key_pem = *key;
  impl->not_after = cp::certificate_not_after(*cert).value_or(0);
  return std::unique_ptr<AgentClient>(new AgentClient(std::move(impl)));
}

Result<void> AgentClient::Impl::renew(TlsConnection& c) {
  auto key = generate_ed25519();
  if (!key) return std::unexpected(key.error());
  auto pub = public_key_pem(key->get());
  auto priv = private_key_pem(key->get());
  if (!pub || !priv) return fail("renewal: cannot encode the new key");
  v1::ClientMessage rq;
  rq.mutable_renew()->set_public_key_pem(*pub);
  if (auto w = write_message(c, rq); !w) return w;
  v1::ServerMessage m;
  if (auto r = read_message(c, m, cfg.timeout); !r) return fail("renewal: " + r.error().message);
  if (m.has_error()) return fail("renewal refused by manager: " + m.error().message());
  if (!m.has_renewed()) return fail("renewal: unexpected reply from manager");
  auto got = certificate_uri(m.renewed().certificate_pem());
  if (!got || *got != uri) return fail("renewal: the new certificate does not carry this agent's identity");
  if (auto w = detail::write_atomic(cfg.state_dir / "identity.key", *priv); !w) return w;
  if (auto w = detail::write_atomic(cfg.state_dir / "identity.pem", m.renewed().certificate_pem(), 0644); !w) return w;
  key_pem = *priv;
  cert_pem = m.renewed().certificate_pem();
  not_after = m.renewed().not_after_unix();
  return {};
}

Result<AgentKeys> AgentClient::fetch() {
  auto& s = *impl_;
  auto ctx = make_client_context({.ca_pem = s.ca_pem, .cert_pem = s.cert_pem, .key_pem = s.key_pem, .groups = s.cfg.groups});
  if (!ctx) return std::unexpected(ctx.error());
  auto c = TlsConnection::connect(s.cfg.manager_host, s.cfg.manager_port, *ctx, s.cfg.timeout);
  if (!c) return fail(fmt::format("manager {}:{}: {}", s.cfg.manager_host, s.cfg.manager_port, c.error().message));
  if ((*c)->peer_uri() != fmt::format("spiffe://{}/manager", s.domain))
    return fail(fmt::format("manager presents identity {}, expected spiffe://{}/manager", (*c)->peer_uri(), s.domain));
  if (detail::now_unix() > s.not_after - s.cfg.renew_before.count()) {
    if (auto r = s.renew(**c); !r) return std::unexpected(r.error());
  }
  v1::ClientMessage req;
  req.mutable_agent_keys()->set_identity(s.identity);
  if (auto w = write_message(**c, req); !w) return std::unexpected(w.error());
  v1::ServerMessage resp;
  if (auto r = read_message(**c, resp, s.cfg.timeout); !r) return fail("agent keys: " + r.error().message);
  (*c)->shutdown();
  if (resp.has_error()) return fail("manager refused: " + resp.error().message());
  if (!resp.has_agent_keys()) return fail("agent keys: unexpected reply from manager");
  const auto& ak = resp.agent_keys();
  if (ak.keys_size() != 2 || ak.keys(1).epoch() != ak.keys(0).epoch() + 1)
    return fail(fmt::format("agent keys: expected the keys of two consecutive epochs, got {}", ak.keys_size()));
  if (ak.domain() != s.domain) return fail(fmt::format("agent keys are for domain '{}', not '{}'", ak.domain(), s.domain));
  AgentKeys out;
  out.identity = s.identity;
  out.identity_uri = s.uri;
  out.domain = s.domain;
  out.policy_revision = ak.policy_revision();
  const auto& sch = ak.schedule();
  if (sch.length_ns() <= 0) return fail("agent keys: the manager sent no epoch schedule");
  out.epochs.origin_ns = sch.origin_unix_ns();
  out.epochs.length_ns = sch.length_ns();
  if (sch.grace_ns() > 0) out.epochs.grace_ns = sch.grace_ns();
  if (sch.tag_window_ns() > 0) out.epochs.time_window_ns = out.epochs.accept_ahead_ns = sch.tag_window_ns();
  for (int i = 0; i < 2; ++i) {
    const auto& k = ak.keys(i);
    auto raw = unwrap_secret(*s.psk, k.key(), fmt::format("ik|{}|{}|{}", s.uri, k.epoch(), k.generation()));
    if (!raw) return fail(fmt::format("key for epoch {}: {}", k.epoch(), raw.error().message));
    crypto::IdentityKey& ik = i == 0 ? out.current : out.next;
    ik.identity = k.identity();
    ik.epoch = k.epoch();
    ik.generation = static_cast<std::uint8_t>(k.generation());
    ik.alg = static_cast<crypto::Alg>(k.alg());
    const bool ok = k.identity() == s.identity && k.alg() <= 1 && raw->size() == crypto::key_len(ik.alg);
    if (ok) std::copy(raw->begin(), raw->end(), ik.key.mutable_bytes().begin());
    crypto::secure_wipe(raw->data(), raw->size());
    if (!ok) return fail(fmt::format("key for epoch {} is malformed (identity, algorithm or length)", k.epoch()));
  }
  return out;
}

}  // namespace zt::cp

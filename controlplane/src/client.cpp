#include "zt/controlplane/client.hpp"

#include <random>
#include <thread>

#include <fmt/format.h>

#include "util.hpp"
#include "zt/controlplane/bundle.hpp"
#include "zt/controlplane/delta.hpp"
#include "zt/controlplane/framing.hpp"
#include "zt/controlplane/tls.hpp"
#include "zt/controlplane/wrap.hpp"
#include "zt/rules/snapshot.hpp"
#include "ztgate.pb.h"

namespace zt::cp {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using detail::log;

namespace {
constexpr const char* kWho = "ztgate-sync";
constexpr const char* kSoftware = "ztgate/0.1";
}  // namespace

Result<std::string> enrol(const ClientConfig& cfg, std::uint16_t enrol_port, const std::string& token,
                          const fs::path& ca_pem_file) {
  auto ca_pem = detail::read_file(ca_pem_file);
  if (!ca_pem) return fail("manager CA certificate: " + ca_pem.error().message);
  auto key = generate_ed25519();
  if (!key) return std::unexpected(key.error());
  auto ctx = make_client_context({.ca_pem = *ca_pem, .groups = cfg.groups});
  if (!ctx) return std::unexpected(ctx.error());
  auto c = TlsConnection::connect(cfg.manager_host, enrol_port, *ctx, cfg.connect_timeout);
  if (!c) return fail("enrolment: " + c.error().message);
  if (!(*c)->peer_uri().starts_with("spiffe://") || !(*c)->peer_uri().ends_with("/manager"))
    return fail(fmt::format("enrolment endpoint presents identity {}, not a ztgate manager", (*c)->peer_uri()));
  v1::ClientMessage req;
  req.mutable_enrol()->set_token(token);
  auto pub = public_key_pem(key->get());
  if (!pub) return std::unexpected(pub.error());
  req.mutable_enrol()->set_public_key_pem(*pub);
  if (auto w = write_message(**c, req); !w) return fail("enrolment: " + w.error().message);
  v1::ServerMessage resp;
  if (auto r = read_message(**c, resp, cfg.connect_timeout); !r) return fail("enrolment: " + r.error().message);
  if (resp.has_error()) return fail("enrolment refused by manager: " + resp.error().message());
  if (!resp.has_enrol()) return fail("enrolment: unexpected reply from manager");
  const auto& e = resp.enrol();
  auto uri = certificate_uri(e.certificate_pem());
  if (!uri || *uri != e.identity_uri()) return fail("enrolment: issued certificate does not carry the announced identity");
  if ((*c)->peer_uri() != fmt::format("spiffe://{}/manager", e.domain()))
    return fail(fmt::format("enrolment: manager identity {} is not in domain {}", (*c)->peer_uri(), e.domain()));
  auto kpem = private_key_pem(key->get());
  if (!kpem) return std::unexpected(kpem.error());
  std::error_code ec;
  fs::create_directories(cfg.state_dir, ec);
  if (ec) return fail(fmt::format("state directory {}: {}", cfg.state_dir.string(), ec.message()));
  for (auto [name, data] : {std::pair{"identity.key", std::string_view(*kpem)},
                            std::pair{"identity.pem", std::string_view(e.certificate_pem())},
                            std::pair{"ca.pem", std::string_view(*ca_pem)},
                            std::pair{"signing.pub", std::string_view(e.signing_public_key_pem())},
                            std::pair{"domain", std::string_view(e.domain())}})
    if (auto w = detail::write_atomic(cfg.state_dir / name, data); !w) return std::unexpected(w.error());
  return e.identity_uri();
}

struct SyncClient::Impl {
  ClientConfig cfg;
  std::optional<PreSharedSecret> psk;
  std::optional<BundleVerifier> verifier;
  std::string identity_uri, domain;
  SslCtxPtr ctx;
  std::int64_t cert_not_after = 0;
  std::string pending_key_pem;  // private half of a renewal in flight
  std::int64_t renew_retry_at = 0;
  std::uint64_t highest = 0;
  std::optional<Update> current;
  Publisher publisher;
  SyncEvents events;
  PushOutcome last;

  std::expected<Update, Refusal> process(const v1::Push& push, std::int64_t now);
};

std::expected<Update, Refusal> SyncClient::Impl::process(const v1::Push& push, std::int64_t now) {
  auto refuse = [](v1::NackCode c, std::string m, std::string r = {}) {
    return std::unexpected(Refusal{c, std::move(m), std::move(r)});
  };
  if (!push.has_bundle() || !push.has_keys()) return refuse(v1::NACK_CODE_MALFORMED, "push lacks bundle or keys", "push");
  auto b = verifier->verify(push.bundle(), highest, now);
  if (!b) return std::unexpected(b.error());
  if (push.revision() != b->revision())
    return refuse(v1::NACK_CODE_MALFORMED, fmt::format("push says revision {} but its signed bundle is revision {}",
                                                       push.revision(), b->revision()), "push.revision");
  if (current && b->revision() == current->revision && push.bundle().digest() != current->bundle_digest)
    return refuse(v1::NACK_CODE_ROLLBACK,
                  fmt::format("revision {} was already accepted with different content", b->revision()), "bundle.revision");
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : b->files()) files.emplace_back(f.name(), f.content());
  auto policy = rules::parse_policy(files);
  if (!policy) {
    std::string all;
    for (auto& d : policy.error()) all += (all.empty() ? "" : "; ") + rules::format(d);
    const auto& w = policy.error().front().where;
    return refuse(v1::NACK_CODE_INVALID_POLICY, all, fmt::format("{}:{}:{}", w.file, w.line, w.column));
  }
  if (policy->digest != b->source_digest())
    return refuse(v1::NACK_CODE_DIGEST_MISMATCH, "policy files do not match the bundle's source digest", "bundle.source_digest");
  // The delta is checked, never applied: the full bundle below is what gets enforced. A delta
  // from a revision this appliance does not enforce cannot be checked and is ignored (the
  // manager sends one only to appliances that ACKed its base).
  std::string delta_text;
  if (push.has_delta()) {
    auto d = verifier->verify(push.delta());
    if (!d) return std::unexpected(d.error());
    if (current && current->policy && d->base_revision() == current->revision) {
      if (auto ok = check_delta(*d, *current->policy, current->revision, *policy, b->revision()); !ok)
        return std::unexpected(ok.error());
      delta_text = describe_delta(*d, *current->policy);
    }
  }
  auto snap = rules::compile(*policy, {.revision = b->revision()});
  if (!snap) {
    const auto& d = snap.error().front();
    return refuse(v1::NACK_CODE_COMPILE_FAILED, rules::format(d), fmt::format("{}:{}:{}", d.where.file, d.where.line, d.where.column));
  }
  const auto& keys = push.keys();
  if (keys.domain() != domain)
    return refuse(v1::NACK_CODE_WRONG_DOMAIN, fmt::format("keys are for domain '{}'", keys.domain()), "keys.domain");
  std::vector<crypto::EpochSecret> secrets;
  for (const auto& s : keys.secrets()) {
    auto raw = unwrap_secret(*psk, s.sv(), sv_wrap_context(identity_uri, s.epoch(), s.generation()));
    if (!raw) return refuse(v1::NACK_CODE_KEY_UNWRAP_FAILED, raw.error().message, fmt::format("keys.secrets[epoch={}]", s.epoch()));
    if (raw->size() != crypto::kEpochSecretLen)
      return refuse(v1::NACK_CODE_KEY_UNWRAP_FAILED, "epoch secret has the wrong length", fmt::format("keys.secrets[epoch={}]", s.epoch()));
    crypto::EpochSecret es;
    es.epoch = s.epoch();
    es.generation = static_cast<std::uint8_t>(s.generation());
    std::copy(raw->begin(), raw->end(), es.sv.mutable_bytes().begin());
    crypto::secure_wipe(raw->data(), raw->size());
    secrets.push_back(std::move(es));
  }
  std::vector<std::uint32_t> ids;
  for (const auto& i : policy->identities) ids.push_back(i.id);
  crypto::EpochPolicy ep;
  ep.origin_ns = keys.schedule().origin_unix_ns();
  if (keys.schedule().length_ns() > 0) ep.length_ns = keys.schedule().length_ns();
  if (keys.schedule().grace_ns() > 0) ep.grace_ns = keys.schedule().grace_ns();
  if (keys.schedule().tag_window_ns() > 0) {
    ep.time_window_ns = keys.schedule().tag_window_ns();
    ep.accept_ahead_ns = keys.schedule().tag_window_ns();
  }
  auto ring = crypto::KeyRing::build(ep, secrets, ids);
  if (!ring) return refuse(v1::NACK_CODE_KEY_UNWRAP_FAILED, "key ring: " + ring.error().message, "keys");
  Update u;
  u.revision = b->revision();
  u.bundle_digest = push.bundle().digest();
  u.expires_unix = b->expires_at_unix();
  u.snapshot = std::move(*snap);
  u.keys = std::move(*ring);
  u.policy = std::make_shared<const rules::Policy>(std::move(*policy));
  u.delta = std::move(delta_text);
  return u;
}

SyncClient::SyncClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SyncClient::~SyncClient() = default;

Result<std::unique_ptr<SyncClient>> SyncClient::open(const ClientConfig& cfg) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  const fs::path& d = cfg.state_dir;
  auto cert = detail::read_file(d / "identity.pem");
  auto key = detail::read_file(d / "identity.key");
  auto ca = detail::read_file(d / "ca.pem");
  auto spub = detail::read_file(d / "signing.pub");
  auto dom = detail::read_file(d / "domain");
  if (!cert || !key || !ca || !spub || !dom)
    return fail(fmt::format("{} holds no enrolment (identity.pem, identity.key, ca.pem, signing.pub, domain); "
                            "enrol first with a token from `ztmanager token create`", d.string()));
  auto uri = certificate_uri(*cert);
  if (!uri) return fail("identity.pem: " + uri.error().message);
  impl->identity_uri = *uri;
  impl->domain = *dom;
  auto v = BundleVerifier::from_public_pem(*spub, *dom);
  if (!v) return std::unexpected(v.error());
  impl->verifier.emplace(std::move(*v));
  auto psk = PreSharedSecret::load(cfg.psk_file);
  if (!psk) return std::unexpected(psk.error());
  impl->psk.emplace(std::move(*psk));
  auto ctx = make_client_context({.ca_pem = *ca, .cert_pem = *cert, .key_pem = *key, .groups = cfg.groups});
  if (!ctx) return std::unexpected(ctx.error());
  impl->ctx = *ctx;
  impl->cert_not_after = zt::cp::certificate_not_after(*cert).value_or(0);
  if (auto h = detail::read_file(d / "highest_revision")) impl->highest = std::strtoull(h->c_str(), nullptr, 10);
  // Last known good: verified and compiled again, never trusted blindly from disk.
  if (auto lg = detail::read_file(d / "last_good.push")) {
    v1::Push p;
    if (p.ParseFromString(*lg)) {
      auto u = impl->process(p, detail::now_unix());
      if (u) {
        impl->current = std::move(*u);
        log(kWho, "loaded last good revision {} from {}", impl->current->revision, (d / "last_good.push").string());
      } else {
        log(kWho, "persisted bundle not usable ({}); denying all until the manager pushes one", u.error().message);
      }
    }
  }
  return std::unique_ptr<SyncClient>(new SyncClient(std::move(impl)));
}

std::string nack_code_name(int code) {
  return v1::NackCode_IsValid(code) ? v1::NackCode_Name(static_cast<v1::NackCode>(code)) : fmt::format("NACK_CODE_{}", code);
}

void SyncClient::set_publisher(Publisher p) { impl_->publisher = std::move(p); }
void SyncClient::set_events(SyncEvents e) { impl_->events = std::move(e); }
const std::optional<Update>& SyncClient::current() const noexcept { return impl_->current; }
std::uint64_t SyncClient::highest_accepted() const noexcept { return impl_->highest; }
const std::string& SyncClient::identity_uri() const noexcept { return impl_->identity_uri; }
std::int64_t SyncClient::certificate_not_after() const noexcept { return impl_->cert_not_after; }
const PushOutcome& SyncClient::last_outcome() const noexcept { return impl_->last; }

PushOutcome SyncClient::handle_push(const std::string& serialized, std::int64_t now) {
  auto& s = *impl_;
  PushOutcome o;
  v1::Push push;
  if (!push.ParseFromString(serialized)) {
    o.nack_code = v1::NACK_CODE_MALFORMED;
    o.message = "push does not parse";
    o.resource = "push";
    return o;
  }
  o.revision = push.revision();
  auto u = s.process(push, now);
  if (!u) {
    o.nack_code = u.error().code;
    o.message = u.error().message;
    o.resource = u.error().resource;
    return o;
  }
  if (s.publisher) {
    if (auto r = s.publisher(*u); !r) {
      o.nack_code = v1::NACK_CODE_PUBLISH_FAILED;
      o.message = r.error().message;
      o.resource = "dataplane";
      return o;
    }
  }
  if (auto w = detail::write_atomic(s.cfg.state_dir / "last_good.push", serialized); !w)
    log(kWho, "cannot persist last good bundle: {}", w.error().message);
  if (u->revision > s.highest) {
    if (auto w = detail::write_atomic(s.cfg.state_dir / "highest_revision", fmt::format("{}\n", u->revision)); !w)
      log(kWho, "cannot persist highest revision: {}", w.error().message);
    s.highest = u->revision;
  }
  o.delta = u->delta;
  if (!o.delta.empty()) o.delta_base = s.current->revision;
  s.current = std::move(*u);
  o.accepted = true;
  return o;
}

Result<void> SyncClient::run_session(const std::atomic<bool>& stop, std::size_t max_pushes,
                                     std::chrono::milliseconds idle_timeout) {
  auto& s = *impl_;
  auto c = TlsConnection::connect(s.cfg.manager_host, s.cfg.manager_port, s.ctx, s.cfg.connect_timeout);
  if (!c) return std::unexpected(c.error());
  const std::string want = fmt::format("spiffe://{}/manager", s.domain);
  if ((*c)->peer_uri() != want) return fail(fmt::format("manager presents identity {}, expected {}", (*c)->peer_uri(), want));
  v1::ClientMessage hello;
  hello.mutable_hello()->set_software(kSoftware);
  hello.mutable_hello()->set_highest_revision(s.highest);
  hello.mutable_hello()->set_enforced_revision(s.current ? s.current->revision : 0);
  if (auto w = write_message(**c, hello); !w) return w;
  if (s.events.on_session) s.events.on_session(true, (*c)->peer_uri());
  std::size_t handled = 0;
  auto last_rx = std::chrono::steady_clock::now();
  auto last_hb = last_rx;
  while (!stop.load()) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_rx > idle_timeout) return fail(fmt::format("no message from the manager for {} ms", idle_timeout.count()));
    if (now - last_hb > 15s) {
      v1::ClientMessage hb;
      hb.mutable_heartbeat()->set_sent_unix_ns(detail::now_unix_ns());
      if (auto w = write_message(**c, hb); !w) return w;
      last_hb = now;
    }
    if (detail::now_unix() > s.cert_not_after - s.cfg.renew_before.count() && detail::now_unix() >= s.renew_retry_at) {
      s.renew_retry_at = detail::now_unix() + 60;  // one request a minute while renewal is due
      auto key = generate_ed25519();
      auto pub = key ? public_key_pem(key->get()) : std::unexpected(key.error());
      auto priv = key ? private_key_pem(key->get()) : std::unexpected(key.error());
      if (pub && priv) {
        v1::ClientMessage rq;
        rq.mutable_renew()->set_public_key_pem(*pub);
        if (auto w = write_message(**c, rq); !w) return w;
        s.pending_key_pem = *priv;
      }
    }
    if (!(*c)->readable(100ms)) continue;
    v1::ServerMessage m;
    if (auto r = read_message(**c, m, 10'000ms); !r) return fail("manager stream: " + r.error().message);
    last_rx = std::chrono::steady_clock::now();
    if (m.has_error()) return fail("manager refused this appliance: " + m.error().message());
    if (m.has_renewed()) {
      const auto& e = m.renewed();
      auto uri = certificate_uri(e.certificate_pem());
      auto ctx = make_client_context({.ca_pem = detail::read_file(s.cfg.state_dir / "ca.pem").value_or(""),
                                      .cert_pem = e.certificate_pem(), .key_pem = s.pending_key_pem, .groups = s.cfg.groups});
      if (!uri || *uri != s.identity_uri || !ctx) {
        log(kWho, "renewed certificate unusable ({}); keeping the current one", !ctx ? ctx.error().message : "identity differs");
      } else if (auto w1 = detail::write_atomic(s.cfg.state_dir / "identity.key", s.pending_key_pem); !w1) {
        log(kWho, "cannot store renewed key: {}", w1.error().message);
      } else if (auto w2 = detail::write_atomic(s.cfg.state_dir / "identity.pem", e.certificate_pem()); !w2) {
        log(kWho, "cannot store renewed certificate: {}", w2.error().message);
      } else {
        s.ctx = *ctx;
        s.cert_not_after = e.not_after_unix();
        log(kWho, "certificate renewed, valid until {}", e.not_after_unix());
      }
      s.pending_key_pem.clear();
      continue;
    }
    if (!m.has_push()) continue;
    std::string bytes;
    m.push().SerializeToString(&bytes);
    s.last = handle_push(bytes, detail::now_unix());
    v1::ClientMessage reply;
    if (s.last.accepted) {
      reply.mutable_ack()->set_revision(s.last.revision);
      reply.mutable_ack()->set_nonce(m.push().nonce());
      log(kWho, "applied revision {}{}", s.last.revision, s.last.delta.empty() ? "" : " (" + s.last.delta + ")");
    } else {
      auto* n = reply.mutable_nack();
      n->set_revision(m.push().revision());
      n->set_nonce(m.push().nonce());
      n->set_code(static_cast<v1::NackCode>(s.last.nack_code));
      n->set_message(s.last.message);
      n->set_resource(s.last.resource);
      n->set_enforced_revision(s.current ? s.current->revision : 0);
      log(kWho, "refused revision {}: {} [{}]", m.push().revision(), s.last.message, s.last.resource);
    }
    if (auto w = write_message(**c, reply); !w) return w;
    if (s.events.on_push) s.events.on_push(s.last);
    if (max_pushes && ++handled >= max_pushes) {
      (*c)->shutdown();
      return {};
    }
  }
  (*c)->shutdown();
  return {};
}

void SyncClient::run(const std::atomic<bool>& stop) {
  std::mt19937_64 rng(std::random_device{}());
  auto backoff = impl_->cfg.backoff_min;
  while (!stop.load()) {
    const auto started = std::chrono::steady_clock::now();
    auto r = run_session(stop, 0, std::chrono::hours(24 * 365));
    if (stop.load()) break;
    if (std::chrono::steady_clock::now() - started > 30s) backoff = impl_->cfg.backoff_min;
    log(kWho, "session with manager ended: {}; retrying", r ? "closed" : r.error().message);
    if (impl_->events.on_session) impl_->events.on_session(false, r ? "closed by the manager" : r.error().message);
    // Full jitter: sleep uniformly in [backoff/2, backoff], checking `stop` every 50 ms.
    auto sleep = std::chrono::milliseconds(std::uniform_int_distribution<long>(backoff.count() / 2, backoff.count())(rng));
    for (auto until = std::chrono::steady_clock::now() + sleep; !stop.load() && std::chrono::steady_clock::now() < until;)
      std::this_thread::sleep_for(50ms);
    backoff = std::min(backoff * 2, impl_->cfg.backoff_max);
  }
}

}  // namespace zt::cp

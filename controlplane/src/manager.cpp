#include "zt/controlplane/manager.hpp"

#include <algorithm>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "util.hpp"
#include "zt/controlplane/bundle.hpp"
#include "zt/controlplane/delta.hpp"
#include "zt/controlplane/framing.hpp"
#include "zt/controlplane/tls.hpp"
#include "zt/controlplane/wrap.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"
#include "zt/rules/tools.hpp"
#include "ztgate.pb.h"

namespace zt::cp {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using detail::log;

namespace {

constexpr auto kReplyTimeout = 10'000ms;
constexpr const char* kWho = "ztmanager";

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return n != "." && n != "..";
}

// What an enrolment and a renewal both hand back: the certificate and what to trust.
template <typename Cert>
void fill_credentials(v1::EnrolResponse& e, const Cert& cert, const std::string& ca_pem,
                      const std::string& signing_pub_pem, const std::string& uri,
                      const std::string& domain) {
  e.set_certificate_pem(cert.pem);
  e.set_ca_pem(ca_pem);
  e.set_signing_public_key_pem(signing_pub_pem);
  e.set_identity_uri(uri);
  e.set_not_after_unix(cert.not_after_unix);
  e.set_domain(domain);
}

// The policy a published bundle carries, parsed.
Result<rules::Policy> bundle_policy(const v1::SignedBundle& sb) {
  v1::PolicyBundle b;
  if (!b.ParseFromString(sb.bundle())) return fail("published bundle does not parse");
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : b.files()) files.emplace_back(f.name(), f.content());
  auto policy = rules::parse_policy(files);
  if (!policy) return fail("published policy does not parse: " + rules::format(policy.error().front()));
  return std::move(*policy);
}

// (id, name) of every identity a published bundle's policy declares.
using IdentityList = std::vector<std::pair<std::uint32_t, std::string>>;
Result<IdentityList> bundle_identities(const v1::SignedBundle& sb) {
  auto policy = bundle_policy(sb);
  if (!policy) return std::unexpected(policy.error());
  IdentityList out;
  for (const auto& i : policy->identities) out.emplace_back(i.id, i.name);
  return out;
}

// An agent token names an identity by id or by name; both must be in the published policy
// (state_dir/published.bundle), so a typo is caught when the token is made, not at enrolment.
Result<std::string> resolve_agent_identity(const fs::path& state_dir, const std::string& name) {
  const fs::path pb = state_dir / "published.bundle";
  auto bytes = detail::read_file(pb);
  v1::SignedBundle sb;
  if (!bytes || !sb.ParseFromString(*bytes))
    return fail(fmt::format("agent tokens name an identity of the published policy, and {} holds none yet: start "
                            "`ztmanager serve` with a valid policy first",
                            pb.string()));
  auto ids = bundle_identities(sb);
  if (!ids) return std::unexpected(ids.error());
  std::string known;
  for (const auto& [id, n] : *ids) {
    if (n == name || std::to_string(id) == name) return std::to_string(id);
    known += fmt::format("{}{} ({})", known.empty() ? "" : ", ", n, id);
  }
  return fail(fmt::format("agent --name '{}' is neither the name nor the id of an identity in the published "
                          "policy; known: {}",
                          name, known.empty() ? "none" : known));
}

}  // namespace

Result<std::string> create_token(const fs::path& state_dir, const std::string& kind, const std::string& name,
                                 std::chrono::seconds ttl) {
  if (kind != "appliance" && kind != "agent") return fail(fmt::format("--kind '{}' must be appliance or agent", kind));
  if (!valid_name(name)) return fail(fmt::format("--name '{}' must be 1-64 characters of [A-Za-z0-9._-]", name));
  std::string subject = name;
  if (kind == "agent") {
    auto id = resolve_agent_identity(state_dir, name);
    if (!id) return std::unexpected(id.error());
    subject = *id;
  }
  std::error_code ec;
  fs::create_directories(state_dir / "tokens", ec);
  if (ec) return fail(fmt::format("cannot create {}: {}", (state_dir / "tokens").string(), ec.message()));
  std::string token = "zt1-" + detail::random_hex(24);
  const std::int64_t exp = detail::now_unix() + ttl.count();
  if (auto w = detail::write_atomic(state_dir / "tokens" / sha256_hex(token), fmt::format("{} {} {}\n", kind, subject, exp)); !w)
    return std::unexpected(w.error());
  return token;
}

Result<TokenInfo> consume_token(const fs::path& state_dir, const std::string& token, std::int64_t now) {
  if (token.size() > 128) return fail("enrolment token is malformed");
  const fs::path p = state_dir / "tokens" / sha256_hex(token);
  const fs::path claimed = p.string() + ".used." + detail::random_hex(8);
  // rename() is atomic: of two concurrent enrolments with one token, exactly one wins.
  if (::rename(p.c_str(), claimed.c_str()) != 0) return fail("unknown or already used enrolment token");
  auto content = detail::read_file(claimed);
  std::error_code ec;
  fs::remove(claimed, ec);
  if (!content) return std::unexpected(content.error());
  std::istringstream in(*content);
  TokenInfo t;
  in >> t.kind >> t.name >> t.expires_unix;
  if (!in || t.name.empty()) return fail("enrolment token record is corrupt");
  if (t.expires_unix <= now) return fail(fmt::format("enrolment token for {} '{}' expired", t.kind, t.name));
  return t;
}

struct Published {
  std::uint64_t revision = 0;
  std::int64_t expires_unix = 0;
  std::string source_digest;
  v1::SignedBundle bundle;
  IdentityList identities;  // agents get keys only for these
  std::shared_ptr<const rules::Policy> policy;  // parsed source: the base of the next delta
  // Signed delta from the previous revision (none for the first revision, or when the previous
  // one could not be parsed); sent only to appliances that enforce its base revision.
  std::optional<v1::SignedDelta> delta;
  std::uint64_t delta_base = 0;
};

struct Manager::Impl {
  ManagerOptions opts;
  std::optional<CertificateAuthority> ca;
  std::optional<BundleSigner> signer;
  std::optional<PreSharedSecret> psk;
  std::string master;  // trust-domain master secret
  std::string signing_pub_pem;

  std::optional<Listener> sync_listener, enrol_listener;
  std::mutex ctx_mu;
  SslCtxPtr sync_ctx, enrol_ctx;
  std::int64_t server_cert_not_after = 0;

  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<const Published> published;
  std::string last_refused_digest;  // do not re-log the same bad policy every poll
  std::string settling_content;     // content seen at the previous poll
  bool settling = false;            // a change was seen; read again after settle_interval
  std::atomic<bool> stopping{false};

  struct Conn {
    std::thread t;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Conn> conns;
  std::atomic<unsigned> enrol_active{0}, sync_active{0};
  struct RefusalLog {  // one log line a second per listener under a flood
    std::chrono::steady_clock::time_point last{};
    unsigned suppressed = 0;
  } enrol_refusals, sync_refusals;

  Result<void> renew_server_cert();
  Result<std::uint64_t> reload(bool settle);
  void serve_sync(std::unique_ptr<TlsConnection> c);
  void serve_enrol(std::unique_ptr<TlsConnection> c);
  void serve_agent(TlsConnection& c, const std::string& uri);
  bool renew(TlsConnection& c, const std::string& uri, const v1::RenewRequest& req);
  // `enforced`: the revision the appliance enforces; the push carries the delta based on it.
  Result<v1::Push> make_push(const Published& p, const std::string& uri, std::int64_t epoch, std::uint64_t enforced);
  std::int64_t current_epoch() const {
    return detail::now_unix_ns() / (static_cast<std::int64_t>(opts.epoch_length.count()) * 1'000'000'000);
  }
  void record_status(const std::string& name, const std::string& line) {
    std::error_code ec;
    fs::create_directories(opts.state_dir / "appliances", ec);
    (void)detail::write_atomic(opts.state_dir / "appliances" / name, line + "\n", 0644);
  }
  void spawn(std::function<void()> f) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    conns.push_back({std::thread([f = std::move(f), done] {
                       f();
                       done->store(true);
                     }),
                     done});
  }
  void reap(bool all) {
    for (auto it = conns.begin(); it != conns.end();) {
      if (all || it->done->load()) {
        it->t.join();
        it = conns.erase(it);
      } else {
        ++it;
      }
    }
  }
};

Result<void> Manager::Impl::renew_server_cert() {
  auto key = generate_ed25519();
  if (!key) return std::unexpected(key.error());
  auto cert = ca->issue(key->get(), fmt::format("spiffe://{}/manager", opts.domain), opts.cert_lifetime);
  if (!cert) return std::unexpected(cert.error());
  auto kpem = private_key_pem(key->get());
  if (!kpem) return std::unexpected(kpem.error());
  TlsOptions t{.ca_pem = ca->certificate_pem(), .cert_pem = cert->pem, .key_pem = *kpem, .groups = opts.groups};
  auto sctx = make_server_context(t);
  if (!sctx) return std::unexpected(sctx.error());
  t.require_peer_cert = false;
  auto ectx = make_server_context(t);
  if (!ectx) return std::unexpected(ectx.error());
  std::lock_guard g(ctx_mu);
  sync_ctx = *sctx;
  enrol_ctx = *ectx;
  server_cert_not_after = cert->not_after_unix;
  return {};
}

Result<std::uint64_t> Manager::Impl::reload(bool settle) {
  auto files = read_policy_files(opts.policy_dir);
  if (!files) {
    log(kWho, "policy refused: {}", files.error().message);
    return std::unexpected(files.error());
  }
  const std::uint64_t current = published ? published->revision : 0;
  std::string content_id;
  for (auto& [n, c] : *files) content_id += sha256_hex(n) + sha256_hex(c);
  content_id = sha256_hex(content_id);
  // An editor or `git checkout` changes files one at a time: act only on content that stayed the
  // same for a whole settle interval, so a half-written change is never validated or published.
  if (settle && content_id != settling_content) {
    settling_content = content_id;
    settling = true;
    return current;
  }
  settling = false;
  settling_content = content_id;
  auto policy = rules::parse_policy(*files);
  auto refuse = [&](const std::string& digest, const std::string& what, const std::vector<std::string>& lines) -> Result<std::uint64_t> {
    std::string all;
    for (auto& l : lines) all += (all.empty() ? "" : "\n") + l;
    if (digest != last_refused_digest) {
      log(kWho, "policy refused ({}); still serving revision {}:", what, current);
      for (auto& l : lines) log(kWho, "  {}", l);
      last_refused_digest = digest;
    }
    return fail(fmt::format("policy refused ({}):\n{}", what, all));
  };
  auto prefixed = [&](const std::vector<rules::Diagnostic>& ds) {
    std::vector<std::string> out;
    for (auto& d : ds) out.push_back((opts.policy_dir / rules::format(d)).string());
    return out;
  };
  if (!policy) return refuse(content_id, "validation failed", prefixed(policy.error()));
  // Unchanged policy: nothing to publish, unless the signed bundle is past half its lifetime;
  // then it is re-signed as a new revision so appliances never reach its expiry while we run.
  const bool refresh = published && published->source_digest == policy->digest &&
                       published->expires_unix - detail::now_unix() < opts.bundle_lifetime.count() / 2;
  if (published && published->source_digest == policy->digest && !refresh) return current;
  if (refresh) log(kWho, "revision {} is past half its lifetime; re-signing the unchanged policy", current);
  const std::uint64_t next = current + 1;
  auto snap = rules::compile(*policy, {.revision = next});
  if (!snap) return refuse(content_id, "compilation failed", prefixed(snap.error()));
  std::vector<std::string> failed;
  std::size_t n_tests = 0;
  for (auto& r : rules::run_tests(**snap)) {
    ++n_tests;
    if (!r.passed) failed.push_back(r.message.starts_with('/') ? r.message : (opts.policy_dir / r.message).string());
  }
  if (!failed.empty()) return refuse(content_id, fmt::format("{} of {} policy tests failed", failed.size(), n_tests), failed);

  v1::PolicyBundle b;
  b.set_revision(next);
  b.set_source_digest(policy->digest);
  b.set_issued_at_unix(detail::now_unix());
  b.set_expires_at_unix(detail::now_unix() + opts.bundle_lifetime.count());
  b.set_domain(opts.domain);
  b.set_format(v1::BUNDLE_FORMAT_YAML_SOURCE);
  for (auto& [n, c] : *files) {
    auto* f = b.add_files();
    f->set_name(n);
    f->set_content(c);
  }
  auto sb = signer->sign(b);
  if (!sb) return std::unexpected(sb.error());
  // What changed since the revision served so far (for logs and the appliances' cross-check).
  std::optional<v1::SignedDelta> delta;
  std::string delta_text;
  if (published && published->policy) {
    auto d = compute_delta(*published->policy, current, *policy, next);
    auto sd = signer->sign(d);
    if (!sd) return std::unexpected(sd.error());
    delta = std::move(*sd);
    delta_text = describe_delta(d, *published->policy);
  }
  std::string bytes;
  sb->SerializeToString(&bytes);
  // Persist before serving: a revision number is never handed out twice, even after a crash.
  if (auto w = detail::write_atomic(opts.state_dir / "published.bundle", bytes); !w) return std::unexpected(w.error());
  if (delta) {
    if (auto w = detail::write_atomic(opts.state_dir / "published.delta", delta->SerializeAsString()); !w)
      return std::unexpected(w.error());
  } else {
    std::error_code ec;
    fs::remove(opts.state_dir / "published.delta", ec);
  }
  if (auto w = detail::write_atomic(opts.state_dir / "revision", fmt::format("{}\n", next)); !w) return std::unexpected(w.error());
  auto p = std::make_shared<Published>();
  p->revision = next;
  p->expires_unix = b.expires_at_unix();
  p->source_digest = policy->digest;
  p->bundle = std::move(*sb);
  for (const auto& i : policy->identities) p->identities.emplace_back(i.id, i.name);
  p->delta = std::move(delta);
  p->delta_base = p->delta ? current : 0;
  p->policy = std::make_shared<const rules::Policy>(std::move(*policy));
  {
    std::lock_guard g(mu);
    published = std::move(p);
  }
  cv.notify_all();
  last_refused_digest.clear();
  log(kWho, "published revision {} ({} files, {} tests passed, source digest {}, bundle digest {}){}", next, files->size(),
      n_tests, published->policy->digest.substr(0, 16), published->bundle.digest().substr(0, 16),
      delta_text.empty() ? "" : "; " + delta_text);
  return next;
}

Result<v1::Push> Manager::Impl::make_push(const Published& p, const std::string& uri, std::int64_t epoch,
                                          std::uint64_t enforced) {
  v1::Push push;
  push.set_revision(p.revision);
  push.set_nonce(detail::random_hex(12));
  *push.mutable_bundle() = p.bundle;
  if (p.delta && p.delta_base == enforced) *push.mutable_delta() = *p.delta;
  auto* keys = push.mutable_keys();
  keys->set_domain(opts.domain);
  auto* sch = keys->mutable_schedule();
  sch->set_origin_unix_ns(0);
  sch->set_length_ns(static_cast<std::int64_t>(opts.epoch_length.count()) * 1'000'000'000);
  sch->set_grace_ns(static_cast<std::int64_t>(opts.epoch_grace.count()) * 1'000'000);
  sch->set_tag_window_ns(static_cast<std::int64_t>(opts.tag_window.count()) * 1'000'000);
  // e-1 serves the grace period right after a boundary (DESIGN.md §2), e+1 the next epoch.
  for (std::int64_t e = std::max<std::int64_t>(0, epoch - 1); e <= epoch + 1; ++e) {
    auto sv = crypto::derive_epoch_secret({reinterpret_cast<const std::uint8_t*>(master.data()), master.size()}, opts.domain,
                                          static_cast<std::uint64_t>(e));
    if (!sv) return fail("epoch secret: " + sv.error().message);
    auto w = wrap_secret(*psk, sv->sv.bytes(), sv_wrap_context(uri, static_cast<std::uint64_t>(e), sv->generation));
    if (!w) return std::unexpected(w.error());
    auto* es = keys->add_secrets();
    es->set_epoch(static_cast<std::uint64_t>(e));
    es->set_generation(sv->generation);
    *es->mutable_sv() = std::move(*w);
  }
  return push;
}

void Manager::Impl::serve_sync(std::unique_ptr<TlsConnection> c) {
  const std::string uri = c->peer_uri();
  const std::string appliance_prefix = fmt::format("spiffe://{}/appliance/", opts.domain);
  const std::string agent_prefix = fmt::format("spiffe://{}/agent/", opts.domain);
  if (uri.starts_with(agent_prefix)) return serve_agent(*c, uri);
  if (!uri.starts_with(appliance_prefix)) {
    log(kWho, "refused sync from {}: not an appliance identity of domain {}", uri, opts.domain);
    v1::ServerMessage m;
    m.mutable_error()->set_code(v1::ERROR_CODE_UNAUTHORIZED);
    m.mutable_error()->set_message("only spiffe://" + opts.domain + "/appliance/* may sync policy");
    (void)write_message(*c, m);
    return;
  }
  const std::string name = uri.substr(appliance_prefix.size());
  v1::ClientMessage hello;
  if (auto r = read_message(*c, hello, opts.handshake_timeout); !r || !hello.has_hello()) {
    log(kWho, "{}: no hello: {}", name, r ? "first message is not Hello" : r.error().message);
    return;
  }
  log(kWho, "{} connected (group {}, highest accepted revision {})", name, c->negotiated_group(), hello.hello().highest_revision());
  if (std::lock_guard g(mu); published && hello.hello().highest_revision() > published->revision)
    log(kWho, "{} has accepted revision {}, newer than this manager's {}: was the state directory lost or restored "
        "from a backup? The appliance will refuse older revisions until a newer one is published",
        name, hello.hello().highest_revision(), published->revision);
  std::uint64_t sent_rev = 0;
  std::int64_t sent_epoch = -1;
  std::uint64_t enforced = hello.hello().enforced_revision();  // follows its ACKs and NACKs
  while (!stopping.load()) {
    std::shared_ptr<const Published> p;
    {
      std::unique_lock lk(mu);
      p = published;
    }
    const std::int64_t epoch = current_epoch();
    if (p && (p->revision != sent_rev || epoch != sent_epoch)) {
      auto push = make_push(*p, uri, epoch, enforced);
      if (!push) {
        log(kWho, "{}: cannot build push: {}", name, push.error().message);
        return;
      }
      v1::ServerMessage m;
      *m.mutable_push() = *push;
      if (auto w = write_message(*c, m); !w) {
        log(kWho, "{}: push of revision {} failed: {}", name, p->revision, w.error().message);
        return;
      }
      sent_rev = p->revision;
      sent_epoch = epoch;
      v1::ClientMessage reply;
      for (;;) {
        if (auto r = read_message(*c, reply, kReplyTimeout); !r) {
          log(kWho, "{}: no reply to revision {}: {}", name, p->revision, r.error().message);
          return;
        }
        if (reply.has_renew()) {
          if (!renew(*c, uri, reply.renew())) return;
          continue;
        }
        if (!reply.has_heartbeat()) break;
      }
      if (reply.has_ack() && reply.ack().nonce() == push->nonce()) {
        log(kWho, "{} acknowledged revision {}{}", name, reply.ack().revision(),
            push->has_delta() ? fmt::format(" (with the delta from {})", enforced) : "");
        enforced = reply.ack().revision();
        record_status(name, fmt::format("acked revision={} at={}", reply.ack().revision(), detail::now_unix()));
      } else if (reply.has_nack() && reply.nack().nonce() == push->nonce()) {
        const auto& n = reply.nack();
        enforced = n.enforced_revision();
        log(kWho, "{} REFUSED revision {}: {} ({}) [{}]; it keeps enforcing revision {}", name, n.revision(),
            v1::NackCode_Name(n.code()), n.message(), n.resource(), n.enforced_revision());
        record_status(name, fmt::format("nacked revision={} code={} enforcing={} message={}", n.revision(),
                                        v1::NackCode_Name(n.code()), n.enforced_revision(), n.message()));
      } else {
        log(kWho, "{}: reply to revision {} is not an Ack/Nack with its nonce; closing", name, p->revision);
        return;
      }
      continue;
    }
    {
      std::unique_lock lk(mu);
      cv.wait_for(lk, 200ms, [&] { return stopping.load() || (published && published->revision != sent_rev); });
    }
    if (c->readable(0ms)) {
      v1::ClientMessage m;
      if (auto r = read_message(*c, m, kReplyTimeout); !r) {
        log(kWho, "{} disconnected: {}", name, r.error().message);
        return;
      }
      if (m.has_renew() && !renew(*c, uri, m.renew())) return;
    }
  }
  c->shutdown();
}

bool Manager::Impl::renew(TlsConnection& c, const std::string& uri, const v1::RenewRequest& req) {
  v1::ServerMessage resp;
  auto key = load_public_key_pem(req.public_key_pem());
  auto cert = key ? ca->issue(key->get(), uri, opts.cert_lifetime) : std::unexpected(key.error());
  if (!cert) {
    log(kWho, "certificate renewal for {} refused: {}", uri, cert.error().message);
    resp.mutable_error()->set_code(v1::ERROR_CODE_BAD_REQUEST);
    resp.mutable_error()->set_message("renewal: " + cert.error().message);
    (void)write_message(c, resp);
    return false;
  }
  fill_credentials(*resp.mutable_renewed(), *cert, ca->certificate_pem(), signing_pub_pem, uri,
                   opts.domain);
  log(kWho, "renewed certificate of {} (valid until {})", uri, cert->not_after_unix);
  return write_message(c, resp).has_value();
}

void Manager::Impl::serve_agent(TlsConnection& c, const std::string& uri) {
  const std::string id_text = uri.substr(uri.rfind('/') + 1);
  v1::ClientMessage req;
  for (;;) {  // an optional RenewRequest, then the AgentKeyRequest
    if (auto r = read_message(c, req, opts.handshake_timeout); !r) {
      log(kWho, "agent {}: expected AgentKeyRequest: {}", id_text, r.error().message);
      return;
    }
    if (!req.has_renew()) break;
    if (!renew(c, uri, req.renew())) return;
  }
  v1::ServerMessage m;
  auto refuse = [&](v1::ErrorCode code, const std::string& why) {
    log(kWho, "refused agent {}: {}", id_text, why);
    m.mutable_error()->set_code(code);
    m.mutable_error()->set_message(why);
    (void)write_message(c, m);
  };
  if (!req.has_agent_keys()) return refuse(v1::ERROR_CODE_BAD_REQUEST, "an agent may send only RenewRequest and AgentKeyRequest");
  const std::string asked = std::to_string(req.agent_keys().identity());
  if (asked != id_text) {
    log(kWho, "refused agent {} asking for identity {}'s key", id_text, asked);
    m.mutable_error()->set_code(v1::ERROR_CODE_UNAUTHORIZED);
    m.mutable_error()->set_message(fmt::format("agent certificate is for identity {}, not {}", id_text, asked));
    (void)write_message(c, m);
    return;
  }
  std::shared_ptr<const Published> p;
  {
    std::lock_guard g(mu);
    p = published;
  }
  // A certificate outlives a policy change: an identity removed from the policy gets no new keys.
  const bool listed = p && std::ranges::any_of(p->identities, [&](const auto& i) { return std::to_string(i.first) == id_text; });
  if (!listed)
    return refuse(v1::ERROR_CODE_UNAUTHORIZED, fmt::format("identity {} is not in the published policy (revision {})", id_text,
                                                           p ? p->revision : 0));
  const std::int64_t epoch = current_epoch();
  auto* ak = m.mutable_agent_keys();
  ak->set_domain(opts.domain);
  ak->set_policy_revision(p->revision);
  auto* sch = ak->mutable_schedule();
  sch->set_origin_unix_ns(0);
  sch->set_length_ns(static_cast<std::int64_t>(opts.epoch_length.count()) * 1'000'000'000);
  sch->set_grace_ns(static_cast<std::int64_t>(opts.epoch_grace.count()) * 1'000'000);
  sch->set_tag_window_ns(static_cast<std::int64_t>(opts.tag_window.count()) * 1'000'000);
  for (std::int64_t e = epoch; e <= epoch + 1; ++e) {
    auto sv = crypto::derive_epoch_secret({reinterpret_cast<const std::uint8_t*>(master.data()), master.size()}, opts.domain,
                                          static_cast<std::uint64_t>(e));
    auto k = sv ? crypto::derive_identity_key(*sv, req.agent_keys().identity(), crypto::Alg::aes256_cmac)
                : std::unexpected(sv.error());
    if (!k) return refuse(v1::ERROR_CODE_BAD_REQUEST, k.error().message);
    auto w = wrap_secret(*psk, k->bytes(), fmt::format("ik|{}|{}|{}", uri, e, k->generation));
    if (!w) return refuse(v1::ERROR_CODE_INTERNAL, w.error().message);
    auto* ik = ak->add_keys();
    ik->set_identity(k->identity);
    ik->set_epoch(static_cast<std::uint64_t>(e));
    ik->set_generation(k->generation);
    ik->set_alg(static_cast<std::uint32_t>(k->alg));
    *ik->mutable_key() = std::move(*w);
  }
  (void)write_message(c, m);
  log(kWho, "agent {}: served keys for epochs {} and {}", id_text, epoch, epoch + 1);
}

void Manager::Impl::serve_enrol(std::unique_ptr<TlsConnection> c) {
  v1::ClientMessage req;
  v1::ServerMessage resp;
  auto refuse = [&](v1::ErrorCode code, const std::string& why) {
    log(kWho, "enrolment refused: {}", why);
    resp.mutable_error()->set_code(code);
    resp.mutable_error()->set_message(why);
    (void)write_message(*c, resp);
  };
  if (auto r = read_message(*c, req, opts.handshake_timeout, 64 * 1024); !r) return refuse(v1::ERROR_CODE_BAD_REQUEST, r.error().message);
  if (!req.has_enrol()) return refuse(v1::ERROR_CODE_BAD_REQUEST, "the enrolment port accepts only EnrolRequest");
  auto key = load_public_key_pem(req.enrol().public_key_pem());
  if (!key) return refuse(v1::ERROR_CODE_BAD_REQUEST, "public key: " + key.error().message);
  auto tok = consume_token(opts.state_dir, req.enrol().token(), detail::now_unix());
  if (!tok) return refuse(v1::ERROR_CODE_UNAUTHORIZED, tok.error().message);
  const std::string uri = fmt::format("spiffe://{}/{}/{}", opts.domain, tok->kind, tok->name);
  auto cert = ca->issue(key->get(), uri, opts.cert_lifetime);
  if (!cert) return refuse(v1::ERROR_CODE_INTERNAL, cert.error().message);
  fill_credentials(*resp.mutable_enrol(), *cert, ca->certificate_pem(), signing_pub_pem, uri,
                   opts.domain);
  if (auto w = write_message(*c, resp); !w) return;
  log(kWho, "enrolled {} (certificate valid until {})", uri, cert->not_after_unix);
}

Manager::Manager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Manager::~Manager() {
  impl_->stopping.store(true);
  impl_->cv.notify_all();
  impl_->reap(true);
}

Result<std::unique_ptr<Manager>> Manager::start(const ManagerOptions& opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  if (opts.state_dir.empty()) return fail("--state-dir is required");
  if (opts.policy_dir.empty()) return fail("--policy-dir is required");
  if (opts.psk_file.empty()) return fail("--psk-file is required (the pre-shared secret that wraps key material)");
  if (opts.domain.empty() || opts.domain.find_first_of("/:, ") != std::string::npos)
    return fail(fmt::format("--domain '{}' must be a plain trust-domain name like ztgate.local", opts.domain));
  if (opts.epoch_grace.count() < 0 || opts.epoch_grace >= opts.epoch_length)
    return fail(fmt::format("--epoch-grace-ms {} must be shorter than --epoch-seconds {}", opts.epoch_grace.count(),
                            opts.epoch_length.count()));
  if (opts.max_enrol_connections == 0 || opts.max_sync_connections == 0)
    return fail("--max-enrol-connections and --max-sync-connections must be at least 1");
  if (opts.handshake_timeout.count() <= 0) return fail("--handshake-timeout-ms must be positive");
  if (opts.settle_interval.count() <= 0 || opts.settle_interval > opts.poll_interval)
    return fail(fmt::format("--settle-ms {} must be positive and at most --poll-ms {}", opts.settle_interval.count(),
                            opts.poll_interval.count()));
  if (opts.tag_window.count() <= 0 || 2 * opts.tag_window >= opts.epoch_length)
    return fail(fmt::format("--tag-window-ms {} must be positive and shorter than half of --epoch-seconds {}",
                            opts.tag_window.count(), opts.epoch_length.count()));
  std::error_code ec;
  fs::create_directories(opts.state_dir, ec);
  if (ec) return fail(fmt::format("--state-dir {}: {}", opts.state_dir.string(), ec.message()));
  fs::permissions(opts.state_dir, fs::perms::owner_all, ec);

  std::string passphrase;
  if (!opts.ca_key_passphrase_file.empty()) {
    const auto& pf = opts.ca_key_passphrase_file;
    struct stat st{};
    if (::stat(pf.c_str(), &st) != 0)
      return fail(fmt::format("--ca-key-passphrase-file {}: {}", pf.string(), std::strerror(errno)));
    if ((st.st_mode & 077) != 0)
      return fail(fmt::format("--ca-key-passphrase-file {} is readable by group or others; chmod 600 it", pf.string()));
    auto text = detail::read_file(pf);
    if (!text) return fail("--ca-key-passphrase-file: " + text.error().message);
    passphrase = text->substr(0, text->find_first_of("\r\n"));
    detail::wipe(*text);
    if (passphrase.size() < 12)
      return fail(fmt::format("--ca-key-passphrase-file {}: the passphrase (its first line) must have at least 12 "
                              "characters",
                              pf.string()));
  }
  auto ca = CertificateAuthority::load_or_create(opts.state_dir, opts.domain, passphrase);
  detail::wipe(passphrase);
  if (!ca) return fail("internal CA: " + ca.error().message);
  impl->ca = std::move(*ca);
  auto sk = load_or_create_key(opts.state_dir / "signing.key");
  if (!sk) return fail("bundle signing key: " + sk.error().message);
  auto spub = public_key_pem(sk->get());
  if (!spub) return std::unexpected(spub.error());
  impl->signing_pub_pem = *spub;
  impl->signer.emplace(std::move(*sk));
  auto psk = PreSharedSecret::load(opts.psk_file);
  if (!psk) return fail("--psk-file: " + psk.error().message);
  impl->psk.emplace(std::move(*psk));

  const fs::path mk = opts.state_dir / "master.key";
  if (!fs::exists(mk)) {
    std::string m(32, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(m.data()), 32);
    if (auto w = detail::write_atomic(mk, m); !w) return std::unexpected(w.error());
  }
  auto master = detail::read_file(mk);
  if (!master || master->size() < crypto::kMinMasterSecretLen)
    return fail(fmt::format("{} is unreadable or shorter than {} bytes", mk.string(), crypto::kMinMasterSecretLen));
  impl->master = std::move(*master);

  // The last published revision survives restarts; it is served until the directory changes.
  if (fs::exists(opts.state_dir / "published.bundle")) {
    auto bytes = detail::read_file(opts.state_dir / "published.bundle");
    v1::SignedBundle sb;
    v1::PolicyBundle b;
    if (!bytes || !sb.ParseFromString(*bytes) || !b.ParseFromString(sb.bundle()))
      return fail(fmt::format("{} is corrupt; move it away to start from the policy directory (revisions continue from {})",
                              (opts.state_dir / "published.bundle").string(), (opts.state_dir / "revision").string()));
    auto p = std::make_shared<Published>();
    p->revision = b.revision();
    p->expires_unix = b.expires_at_unix();
    p->source_digest = b.source_digest();
    p->bundle = std::move(sb);
    if (auto pol = bundle_policy(p->bundle)) {
      for (const auto& i : pol->identities) p->identities.emplace_back(i.id, i.name);
      p->policy = std::make_shared<const rules::Policy>(std::move(*pol));
    }
    // The delta that led to it, when it was persisted with it (see reload()).
    v1::SignedDelta sd;
    v1::PolicyDelta d;
    if (auto db = detail::read_file(opts.state_dir / "published.delta");
        db && sd.ParseFromString(*db) && d.ParseFromString(sd.delta()) && d.revision() == p->revision) {
      p->delta_base = d.base_revision();
      p->delta = std::move(sd);
    }
    impl->published = std::move(p);
  }
  if (fs::exists(opts.state_dir / "revision")) {
    auto r = detail::read_file(opts.state_dir / "revision");
    std::uint64_t rev = r ? std::strtoull(r->c_str(), nullptr, 10) : 0;
    if (impl->published && rev < impl->published->revision)
      return fail(fmt::format("{} says {} but published.bundle is revision {}; the state directory is inconsistent",
                              (opts.state_dir / "revision").string(), rev, impl->published->revision));
  }
  if (auto r = impl->renew_server_cert(); !r) return fail("manager TLS certificate: " + r.error().message);

  auto sl = Listener::open(opts.listen);
  if (!sl) return fail("--listen: " + sl.error().message);
  auto el = Listener::open(opts.enrol_listen);
  if (!el) return fail("--enrol-listen: " + el.error().message);
  impl->sync_listener.emplace(std::move(*sl));
  impl->enrol_listener.emplace(std::move(*el));

  (void)impl->reload(false);  // a bad policy at start is logged; the persisted revision keeps being served
  if (auto w = detail::write_atomic(opts.state_dir / "endpoints",
                                    fmt::format("sync {}\nenrol {}\n", impl->sync_listener->port(), impl->enrol_listener->port()),
                                    0644);
      !w)
    return std::unexpected(w.error());
  log(kWho, "serving domain {} on sync port {} and enrolment port {} (revision {}, TLS 1.3 groups {})", opts.domain,
      impl->sync_listener->port(), impl->enrol_listener->port(), impl->published ? impl->published->revision : 0, opts.groups);
  log(kWho, "limits: {} sync and {} enrolment connections, handshake timeout {} ms; CA key {}", opts.max_sync_connections,
      opts.max_enrol_connections, opts.handshake_timeout.count(),
      opts.ca_key_passphrase_file.empty() ? "in the clear (no --ca-key-passphrase-file)" : "encrypted at rest");
  return std::unique_ptr<Manager>(new Manager(std::move(impl)));
}

std::uint16_t Manager::sync_port() const noexcept { return impl_->sync_listener->port(); }
std::uint16_t Manager::enrol_port() const noexcept { return impl_->enrol_listener->port(); }
std::uint64_t Manager::revision() const noexcept {
  std::lock_guard g(impl_->mu);
  return impl_->published ? impl_->published->revision : 0;
}
Result<std::uint64_t> Manager::reload() { return impl_->reload(false); }

void Manager::run(const std::atomic<bool>& stop) {
  auto& s = *impl_;
  auto next_poll = std::chrono::steady_clock::now() + s.opts.poll_interval;
  while (!stop.load()) {
    // Wait for connections at most until the next poll is due, so --poll-ms / --settle-ms below
    // 50 ms are honoured (a burst of edits is published at the pace they were asked for).
    const auto until_poll = std::chrono::duration_cast<std::chrono::milliseconds>(
        next_poll - std::chrono::steady_clock::now());
    const auto wait = std::clamp(until_poll, 0ms, 50ms);
    for (auto* l : {&*s.sync_listener, &*s.enrol_listener}) {
      int fd = l->accept(l == &*s.sync_listener ? wait : 0ms);
      if (fd < 0) continue;
      const bool sync = l == &*s.sync_listener;
      auto& active = sync ? s.sync_active : s.enrol_active;
      const unsigned limit = sync ? s.opts.max_sync_connections : s.opts.max_enrol_connections;
      if (active.load() >= limit) {
        // Full: close at once (no TLS, no thread), and say so without flooding the log.
        auto& rl = sync ? s.sync_refusals : s.enrol_refusals;
        const auto now = std::chrono::steady_clock::now();
        if (now - rl.last >= 1s) {
          log(kWho, "{} connection from {} refused: {} connections already open (--max-{}-connections){}",
              sync ? "sync" : "enrolment", detail::peer_name(fd), active.load(), sync ? "sync" : "enrol",
              rl.suppressed ? fmt::format("; {} more refused since the last such line", rl.suppressed) : std::string());
          rl.last = now;
          rl.suppressed = 0;
        } else {
          ++rl.suppressed;
        }
        ::close(fd);
        continue;
      }
      SslCtxPtr ctx;
      {
        std::lock_guard g(s.ctx_mu);
        ctx = sync ? s.sync_ctx : s.enrol_ctx;
      }
      active.fetch_add(1);
      s.spawn([&s, fd, ctx, sync, &active] {
        struct Slot {
          std::atomic<unsigned>& a;
          ~Slot() { a.fetch_sub(1); }
        } slot{active};
        const std::string peer = detail::peer_name(fd);
        auto c = TlsConnection::accept(fd, ctx, s.opts.handshake_timeout);
        if (!c) {
          log(kWho, "{} connection from {} refused: {}", sync ? "sync" : "enrolment", peer, c.error().message);
          return;
        }
        if (sync) s.serve_sync(std::move(*c));
        else s.serve_enrol(std::move(*c));
      });
    }
    s.reap(false);
    if (std::chrono::steady_clock::now() >= next_poll) {
      (void)s.reload(true);
      // Renew the manager's own certificate at half its lifetime; new connections get it.
      if (detail::now_unix() > s.server_cert_not_after - s.opts.cert_lifetime.count() / 2) {
        if (auto r = s.renew_server_cert(); !r) log(kWho, "certificate renewal failed: {}", r.error().message);
      }
      next_poll = std::chrono::steady_clock::now() + (s.settling ? s.opts.settle_interval : s.opts.poll_interval);
    }
  }
  s.stopping.store(true);
  s.cv.notify_all();
  s.reap(true);
}

}  // namespace zt::cp

// What bundle_fuzz and bundle_seeds share: an enrolled appliance state directory, the manager's
// signing key (fixed, so pushes written by the seed program verify in the fuzz target), the
// pre-shared secret, two policy revisions and genuine key material.
#pragma once

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "zt/controlplane/bundle.hpp"
#include "zt/controlplane/client.hpp"
#include "zt/controlplane/delta.hpp"
#include "zt/controlplane/tls.hpp"
#include "zt/controlplane/wrap.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

namespace zt::fuzz {
namespace fs = std::filesystem;
using namespace zt::cp;

inline void require(bool ok) {
  if (!ok) __builtin_trap();
}

inline constexpr std::string_view kDomain = "ztgate.local";
inline constexpr std::string_view kUri = "spiffe://ztgate.local/appliance/fuzz";

inline constexpr std::string_view kBase = R"(identities:
  - {id: 1001, name: web-a, labels: {app: web}}
  - {id: 1002, name: client-a, labels: {app: client}}
segments:
  - {name: zone-b, prefixes: [10.10.0.0/24], labels: {zone: b}}
rules:
  - {id: 100, name: web-to-b, from: {identities: [web-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [80, 22], action: allow}
tests:
  - {from: web-a, to: 10.10.0.2, proto: tcp, port: 80, expect: allow, rule: web-to-b}
)";
inline constexpr std::string_view kNext = R"(identities:
  - {id: 1001, name: web-a, labels: {app: web}}
  - {id: 2003, name: frontend-2, labels: {app: frontend}}
segments:
  - {name: zone-b, prefixes: [10.10.0.0/23], labels: {zone: b}}
rules:
  - {id: 100, name: web-to-b, from: {identities: [web-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [80, 22], action: allow}
  - {id: 200, name: no-ssh, from: any, to: {segments: [zone-b]}, proto: tcp, ports: [22], action: deny}
)";

inline void write_file(const fs::path& p, std::string_view s, fs::perms mode = fs::perms(0644)) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
  fs::permissions(p, mode);
}

struct World {
  fs::path root;
  ClientConfig cfg;
  std::optional<BundleSigner> signer;
  std::optional<PreSharedSecret> psk;
  std::int64_t now = 0;
  std::string base_push, next_bundle_push;  // serialized
  std::optional<rules::Policy> base_policy, next_policy;
  pb::KeyBundle keys;

  pb::SignedBundle bundle_of(const std::vector<std::pair<std::string, std::string>>& files,
                             std::uint64_t revision) const {
    pb::PolicyBundle b;
    b.set_revision(revision);
    if (auto p = rules::parse_policy(files)) b.set_source_digest(p->digest);
    b.set_domain(std::string(kDomain));
    b.set_issued_at_unix(now);
    b.set_expires_at_unix(now + 3600);
    b.set_format(pb::BUNDLE_FORMAT_YAML_SOURCE);
    for (const auto& [n, c] : files) {
      auto* f = b.add_files();
      f->set_name(n);
      f->set_content(c);
    }
    return *signer->sign(b);
  }
  pb::Push push_of(pb::SignedBundle sb, std::uint64_t revision) const {
    pb::Push p;
    p.set_revision(revision);
    p.set_nonce("nonce-" + std::to_string(revision));
    *p.mutable_bundle() = std::move(sb);
    *p.mutable_keys() = keys;
    return p;
  }
};

inline World* make_world() {
  auto* w = new World;
  char tmpl[] = "/tmp/ztfuzz-bundle-XXXXXX";
  require(::mkdtemp(tmpl) != nullptr);
  w->root = tmpl;
  w->now = ::time(nullptr);
  auto ca = CertificateAuthority::create(std::string(kDomain));
  // The manager's signing key from a fixed seed: the seed program's pushes verify here.
  const unsigned char seed[32] = {'z', 't', 'g', 'a', 't', 'e', '-', 'f', 'u', 'z', 'z'};
  PkeyPtr signing(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, sizeof(seed)));
  require(ca.has_value() && signing != nullptr);
  w->signer.emplace(std::move(signing));
  w->psk.emplace(*PreSharedSecret::from_bytes(std::vector<std::uint8_t>(32, 0xaa)));
  w->cfg.state_dir = w->root / "state";
  w->cfg.psk_file = w->root / "psk";
  write_file(w->cfg.psk_file, std::string(64, 'a') + "\n", fs::perms(0600));
  auto key = generate_ed25519();
  auto cert = ca->issue(key->get(), std::string(kUri));
  require(cert.has_value());
  write_file(w->cfg.state_dir / "identity.key", *private_key_pem(key->get()), fs::perms(0600));
  write_file(w->cfg.state_dir / "identity.pem", cert->pem);
  write_file(w->cfg.state_dir / "ca.pem", ca->certificate_pem());
  write_file(w->cfg.state_dir / "signing.pub", *w->signer->public_pem());
  write_file(w->cfg.state_dir / "domain", kDomain);

  w->keys.set_domain(std::string(kDomain));
  w->keys.mutable_schedule()->set_length_ns(900'000'000'000);
  w->keys.mutable_schedule()->set_grace_ns(5'000'000'000);
  const std::string master(32, 'm');
  for (std::uint64_t e = 1000; e <= 1001; ++e) {
    auto sv = crypto::derive_epoch_secret(
        {reinterpret_cast<const std::uint8_t*>(master.data()), master.size()}, kDomain, e);
    auto* s = w->keys.add_secrets();
    s->set_epoch(e);
    *s->mutable_sv() = *wrap_secret(*w->psk, sv->sv.bytes(), sv_wrap_context(kUri, e, 0));
  }
  const std::vector<std::pair<std::string, std::string>> base{{"policy.yaml", std::string(kBase)}};
  const std::vector<std::pair<std::string, std::string>> next{{"policy.yaml", std::string(kNext)}};
  w->base_policy = *rules::parse_policy(base);
  w->next_policy = *rules::parse_policy(next);
  w->base_push = w->push_of(w->bundle_of(base, 1), 1).SerializeAsString();
  w->next_bundle_push = w->push_of(w->bundle_of(next, 2), 2).SerializeAsString();

  // Revision 1 accepted once: what every input starts from.
  auto c = SyncClient::open(w->cfg);
  require(c.has_value());
  require((*c)->handle_push(w->base_push, w->now).accepted);
  return w;
}

inline std::vector<std::pair<std::string, std::string>> split_files(std::string_view in) {
  std::vector<std::pair<std::string, std::string>> files;
  while (files.size() < 4) {
    const auto cut = in.find("\n%%\n");
    const std::string_view part = cut == std::string_view::npos ? in : in.substr(0, cut);
    files.emplace_back("p" + std::to_string(files.size()) + ".yaml", std::string(part));
    if (cut == std::string_view::npos) break;
    in.remove_prefix(cut + 4);
  }
  return files;
}

}  // namespace zt::fuzz

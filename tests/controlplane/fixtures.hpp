// Shared helpers of the control-plane tests: temporary directories, a small policy, an enrolled
// appliance state built from an in-memory CA, and pushes built the way the manager builds them.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "zt/controlplane/bundle.hpp"
#include "zt/controlplane/tls.hpp"
#include "zt/controlplane/wrap.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/rules/policy.hpp"

namespace zt::cp::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ztcp-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline void write(const fs::path& p, const std::string& s, mode_t mode = 0644) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
  ::chmod(p.c_str(), mode);
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline const char* kIdentities = R"(identities:
  - {id: 1001, name: web-a, labels: {app: web}}
  - {id: 1002, name: client-a, labels: {app: client}}
segments:
  - {name: zone-b, prefixes: [10.10.0.0/24], labels: {zone: b}}
)";

inline const char* kAllowRules = R"(rules:
  - {id: 100, name: web-to-b, from: {identities: [web-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [80, 22], action: allow}
)";

inline const char* kAllowTests = R"(tests:
  - {from: web-a, to: 10.10.0.2, proto: tcp, port: 80, expect: allow, rule: web-to-b}
)";

// Revision N+1 in the end-to-end test: an operator adds a deny for ssh.
inline const char* kDenySshRules = R"(rules:
  - {id: 100, name: web-to-b, from: {identities: [web-a]}, to: {segments: [zone-b]}, proto: tcp, ports: [80, 22], action: allow}
  - {id: 200, name: no-ssh, from: any, to: {segments: [zone-b]}, proto: tcp, ports: [22], action: deny}
)";
inline const char* kDenySshTests = R"(tests:
  - {from: web-a, to: 10.10.0.2, proto: tcp, port: 80, expect: allow, rule: web-to-b}
  - {from: web-a, to: 10.10.0.2, proto: tcp, port: 22, expect: deny, rule: no-ssh}
)";

// The identities file after an edit: identity frontend-2 added, zone-b's prefix widened.
inline const char* kIdentitiesEdited = R"(identities:
  - {id: 1001, name: web-a, labels: {app: web}}
  - {id: 1002, name: client-a, labels: {app: client}}
  - {id: 2003, name: frontend-2, labels: {app: frontend}}
segments:
  - {name: zone-b, prefixes: [10.10.0.0/23], labels: {zone: b}}
)";

// Valid YAML, but its test expects the wrong verdict.
inline const char* kFailingTests = R"(tests:
  - {from: client-a, to: 10.10.0.2, proto: tcp, port: 80, expect: allow}
)";

inline void write_policy(const fs::path& dir, const char* rules, const char* tests, const char* identities = kIdentities) {
  write(dir / "identities.yaml", identities);
  write(dir / "rules.yaml", rules);
  write(dir / "tests.yaml", tests);
}

inline std::string psk_hex(char c) { return std::string(64, c) + "\n"; }

// A PolicyBundle of the files in `dir`, signed.
inline pb::SignedBundle signed_bundle(const BundleSigner& signer, const fs::path& dir, std::uint64_t revision,
                                      const std::string& domain, std::int64_t expires_unix) {
  auto files = read_policy_files(dir);
  EXPECT_TRUE(files.has_value());
  std::vector<std::pair<std::string, std::string>> fv = *files;
  pb::PolicyBundle b;
  b.set_revision(revision);
  // The source digest is zt::rules' digest over the same (name, content) pairs.
  // (An invalid policy has none: tests use that to reach the appliance's own validator.)
  auto policy = rules::parse_policy(fv);
  if (policy) b.set_source_digest(policy->digest);
  b.set_domain(domain);
  b.set_issued_at_unix(::time(nullptr));
  b.set_expires_at_unix(expires_unix);
  b.set_format(pb::BUNDLE_FORMAT_YAML_SOURCE);
  for (auto& [n, c] : fv) {
    auto* f = b.add_files();
    f->set_name(n);
    f->set_content(c);
  }
  return *signer.sign(b);
}

// A push as the manager builds it: the bundle plus SV(e), SV(e+1) wrapped for `recipient_uri`.
inline pb::Push make_push(const pb::SignedBundle& sb, std::uint64_t revision, const PreSharedSecret& psk,
                          const std::string& recipient_uri, const std::string& domain, std::uint64_t epoch = 1000) {
  pb::Push push;
  push.set_revision(revision);
  push.set_nonce(fmt::format("nonce-{}", revision));
  *push.mutable_bundle() = sb;
  auto* keys = push.mutable_keys();
  keys->set_domain(domain);
  keys->mutable_schedule()->set_length_ns(900'000'000'000);
  keys->mutable_schedule()->set_grace_ns(5'000'000'000);
  const std::string master(32, 'm');
  for (std::uint64_t e = epoch; e <= epoch + 1; ++e) {
    auto sv = crypto::derive_epoch_secret({reinterpret_cast<const std::uint8_t*>(master.data()), master.size()}, domain, e);
    auto* s = keys->add_secrets();
    s->set_epoch(e);
    *s->mutable_sv() = *wrap_secret(psk, sv->sv.bytes(), sv_wrap_context(recipient_uri, e, 0));
  }
  return push;
}

// Writes what enrol() would write for `name`, with a certificate from `ca`.
inline void enrol_offline(const CertificateAuthority& ca, const std::string& signing_pub_pem, const fs::path& state,
                          const std::string& name) {
  auto key = generate_ed25519();
  auto cert = ca.issue(key->get(), fmt::format("spiffe://{}/appliance/{}", ca.domain(), name));
  write(state / "identity.key", *private_key_pem(key->get()), 0600);
  write(state / "identity.pem", cert->pem);
  write(state / "ca.pem", ca.certificate_pem());
  write(state / "signing.pub", signing_pub_pem);
  write(state / "domain", ca.domain());
}

}  // namespace zt::cp::test

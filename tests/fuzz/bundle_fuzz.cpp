// libFuzzer target for the appliance's bundle loader: SyncClient::handle_push, the path every
// push from the manager takes (Push parse → bundle signature, digest, domain, expiry, rollback →
// PolicyBundle parse → policy YAML → source digest → signed delta check → compile → key unwrap →
// key ring), with a real enrolled state directory, a real Ed25519 signer and pre-shared secret.
//
// A random byte string never carries a valid signature, so the first input byte picks what the
// rest is (the part after the signature is where a compromised or buggy manager could hurt):
//   0  a serialized Push, as it comes off the wire;
//   1  a serialized PolicyBundle, signed with the trusted key and sent with genuine keys;
//   2  policy YAML files ("%%" lines between them) bundled as the manager does (right digest,
//      domain, expiry), signed, sent with genuine keys;
//   3  a serialized PolicyDelta, signed, sent with a genuine next revision over the base;
//   4  a serialized KeyBundle, sent with a genuine signed bundle.
// Every input starts from the same state: revision 1 accepted and persisted (the client is
// reopened from its state directory, so the last good bundle is re-verified as at start-up).
// Checked: a refusal has a NACK code and a message and leaves revision 1 enforced; an
// acceptance enforces the pushed revision with a snapshot of it and keys for its identities.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bundle_fuzz_world.hpp"
#include "zt/controlplane/bundle.hpp"
#include "zt/controlplane/client.hpp"
#include "zt/controlplane/delta.hpp"
#include "zt/controlplane/tls.hpp"
#include "zt/controlplane/wrap.hpp"
#include "zt/crypto/keys.hpp"
#include "zt/rules/policy.hpp"
#include "zt/rules/snapshot.hpp"

using namespace zt;
using namespace zt::cp;
using namespace zt::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World* w = make_world();
  if (size < 1 || size > 65536) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::string push;
  switch (data[0] % 5) {
    case 0:
      push = rest;
      break;
    case 1: {
      // Signed as the manager signs: BundleSigner over the message (re-serialized).
      pb::PolicyBundle b;
      if (!b.ParseFromString(rest)) return 0;
      push = w->push_of(*w->signer->sign(b), b.revision()).SerializeAsString();
      break;
    }
    case 2:
      push = w->push_of(w->bundle_of(split_files(rest), 2), 2).SerializeAsString();
      break;
    case 3: {
      pb::PolicyDelta d;
      if (!d.ParseFromString(rest)) return 0;
      pb::Push p;
      require(p.ParseFromString(w->next_bundle_push));
      *p.mutable_delta() = *w->signer->sign(d);
      push = p.SerializeAsString();
      break;
    }
    case 4: {
      pb::Push p;
      require(p.ParseFromString(w->next_bundle_push));
      if (!p.mutable_keys()->ParseFromString(rest)) return 0;
      push = p.SerializeAsString();
      break;
    }
  }

  // The same starting state for every input: revision 1 is the last good bundle on disk.
  write_file(w->cfg.state_dir / "last_good.push", w->base_push);
  write_file(w->cfg.state_dir / "highest_revision", "1\n");
  auto c = SyncClient::open(w->cfg);
  require(c.has_value());
  require((*c)->current().has_value() && (*c)->current()->revision == 1);
  std::optional<std::uint64_t> published;
  (*c)->set_publisher([&](const Update& u) -> Result<void> {
    published = u.revision;
    return {};
  });

  const PushOutcome o = (*c)->handle_push(push, w->now);
  const auto& cur = (*c)->current();
  if (!o.accepted) {
    require(o.nack_code != pb::NACK_CODE_UNSPECIFIED && !o.message.empty());
    require(!published.has_value());
    require(cur.has_value() && cur->revision == 1);  // keeps enforcing its last good policy
  } else {
    require(published.has_value() && cur.has_value() && cur->revision == *published);
    require(cur->revision >= 1 && cur->snapshot && cur->snapshot->revision() == cur->revision);
    require(cur->keys && cur->policy);
    require(cur->keys->identity_count() == cur->policy->identities.size());
    require((*c)->highest_accepted() >= cur->revision);
  }
  return 0;
}

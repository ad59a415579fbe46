// ztmanager: the central manager (DESIGN.md §1, §5).
//
//   ztmanager serve --policy-dir DIR --state-dir DIR --psk-file FILE [--listen 127.0.0.1:7443] ...
//   ztmanager token create --state-dir DIR --name NAME|IDENTITY [--kind appliance|agent] [--ttl-hours 24]
//   ztmanager psk generate --psk-file FILE
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "zt/controlplane/manager.hpp"
#include "zt/controlplane/wrap.hpp"

namespace po = boost::program_options;

namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

int serve(const std::vector<std::string>& args) {
  zt::cp::ManagerOptions o;
  std::string policy, state, psk, passphrase_file;
  long handshake_ms = 5000;
  long cert_hours = 24, bundle_hours = 168, poll_ms = 300, settle_ms = 100, epoch_s = 900, grace_ms = 5000,
       window_ms = 1000;
  po::options_description d("ztmanager serve options");
  d.add_options()
    ("help,h", "show this help")
    ("policy-dir", po::value(&policy)->required(), "directory of policy YAML files (policy as code); watched for changes")
    ("state-dir", po::value(&state)->required(), "manager state: CA, signing key, master secret, revisions, tokens (mode 0700)")
    ("psk-file", po::value(&psk)->required(), "pre-shared secret (>= 32 bytes, hex or raw, mode 0600) that wraps key material; "
                                              "the same file is provisioned on every appliance")
    ("listen", po::value(&o.listen)->default_value(o.listen), "host:port of the mutual-TLS sync endpoint (port 0: ephemeral)")
    ("enrol-listen", po::value(&o.enrol_listen)->default_value(o.enrol_listen),
     "host:port of the enrolment endpoint (server-authenticated TLS; a one-time token buys a certificate)")
    ("domain", po::value(&o.domain)->default_value(o.domain), "SPIFFE trust domain: identities are spiffe://<domain>/...")
    ("tls-groups", po::value(&o.groups)->default_value(o.groups),
     "TLS 1.3 key-exchange groups, in preference order (a hybrid ML-KEM group where OpenSSL has one)")
    ("cert-hours", po::value(&cert_hours)->default_value(cert_hours), "lifetime of issued certificates, hours")
    ("bundle-hours", po::value(&bundle_hours)->default_value(bundle_hours),
     "lifetime of a signed bundle, hours; appliances deny new flows after it unless a newer one arrives")
    ("poll-ms", po::value(&poll_ms)->default_value(poll_ms), "how often the policy directory is checked for changes, ms")
    ("settle-ms", po::value(&settle_ms)->default_value(settle_ms),
     "a changed policy directory is read again after this long and published only if it stayed the same "
     "(multi-file edits are never half published), ms; at most --poll-ms. Publication follows an edit "
     "after --poll-ms + --settle-ms at most")
    ("epoch-seconds", po::value(&epoch_s)->default_value(epoch_s), "key epoch length, seconds (DESIGN.md §2)")
    ("epoch-grace-ms", po::value(&grace_ms)->default_value(grace_ms),
     "how long after an epoch boundary appliances still accept the previous epoch's tags, ms")
    ("ca-key-passphrase-file", po::value(&passphrase_file),
     "file whose first line (>= 12 characters, mode 0600) encrypts the CA key at rest (ca.key, PKCS#8 "
     "AES-256); an existing clear-text ca.key is encrypted on start. Without it ca.key is stored in the clear")
    ("max-enrol-connections", po::value(&o.max_enrol_connections)->default_value(o.max_enrol_connections),
     "enrolment connections served at once; more are closed at once and logged")
    ("max-sync-connections", po::value(&o.max_sync_connections)->default_value(o.max_sync_connections),
     "appliance and agent connections served at once; more are closed at once and logged")
    ("handshake-timeout-ms", po::value(&handshake_ms)->default_value(handshake_ms),
     "a client must finish the TLS handshake and send its first message within this, ms")
    ("tag-window-ms", po::value(&window_ms)->default_value(window_ms),
     "tag freshness: |tag time - appliance clock| bound, also how early the next epoch is accepted, ms");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(d).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: ztmanager serve [options]\n\n" << d << '\n';
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "ztmanager serve: " << e.what() << "\n(see ztmanager serve --help)\n";
    return 2;
  }
  if (cert_hours <= 0 || bundle_hours <= 0 || poll_ms <= 0 || epoch_s <= 0) {
    std::cerr << "ztmanager serve: --cert-hours, --bundle-hours, --poll-ms and --epoch-seconds must be positive\n";
    return 2;
  }
  o.policy_dir = policy;
  o.state_dir = state;
  o.psk_file = psk;
  o.ca_key_passphrase_file = passphrase_file;
  o.handshake_timeout = std::chrono::milliseconds(handshake_ms);
  o.cert_lifetime = std::chrono::hours(cert_hours);
  o.bundle_lifetime = std::chrono::hours(bundle_hours);
  o.poll_interval = std::chrono::milliseconds(poll_ms);
  // Unless given, the settle interval follows a --poll-ms below its default.
  o.settle_interval = std::chrono::milliseconds(vm["settle-ms"].defaulted() ? std::min(settle_ms, poll_ms) : settle_ms);
  o.epoch_length = std::chrono::seconds(epoch_s);
  o.epoch_grace = std::chrono::milliseconds(grace_ms);
  o.tag_window = std::chrono::milliseconds(window_ms);
  auto m = zt::cp::Manager::start(o);
  if (!m) {
    std::cerr << "ztmanager: " << m.error().message << '\n';
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  (*m)->run(g_stop);
  std::cerr << "ztmanager: stopped\n";
  return 0;
}

int token(const std::vector<std::string>& args) {
  std::string state, name, kind = "appliance";
  long ttl_hours = 24;
  po::options_description d("ztmanager token create options");
  d.add_options()
    ("help,h", "show this help")
    ("state-dir", po::value(&state)->required(), "the manager's state directory")
    ("name", po::value(&name)->required(),
     "appliance name; for --kind agent, the name or numeric id of an identity in the published policy "
     "(the agent's certificate will carry spiffe://<domain>/agent/<id>)")
    ("kind", po::value(&kind)->default_value(kind), "appliance or agent")
    ("ttl-hours", po::value(&ttl_hours)->default_value(ttl_hours), "how long the token may be used, hours");
  po::variables_map vm;
  if (args.empty() || args[0] != "create") {
    std::cerr << "usage: ztmanager token create --state-dir DIR --name NAME|IDENTITY [--kind appliance|agent]\n";
    return 2;
  }
  try {
    po::store(po::command_line_parser(std::vector<std::string>(args.begin() + 1, args.end())).options(d).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: ztmanager token create [options]\nPrints a one-time enrolment token; only its hash is stored.\n"
                   "An agent token is for one identity of the published policy (by name or id); the agent's\n"
                   "certificate will carry spiffe://<domain>/agent/<id> and it gets only that identity's keys.\n\n"
                << d << '\n';
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "ztmanager token create: " << e.what() << '\n';
    return 2;
  }
  if (ttl_hours <= 0) {
    std::cerr << "ztmanager token create: --ttl-hours must be positive\n";
    return 2;
  }
  auto t = zt::cp::create_token(state, kind, name, std::chrono::hours(ttl_hours));
  if (!t) {
    std::cerr << "ztmanager token create: " << t.error().message << '\n';
    return 1;
  }
  std::cout << *t << '\n';
  return 0;
}

// Published revision and each appliance's last ACK/NACK, from the state directory (works whether
// or not the manager runs).
int status(const std::vector<std::string>& args) {
  if (args.size() != 2 || args[0] != "--state-dir") {
    std::cerr << "usage: ztmanager status --state-dir DIR\n";
    return 2;
  }
  namespace fs = std::filesystem;
  const fs::path dir = args[1];
  std::ifstream rev(dir / "revision");
  std::string r;
  if (!(rev >> r)) r = "none";
  std::cout << "published revision: " << r << '\n';
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto& e : fs::directory_iterator(dir / "appliances", ec)) {
    if (e.path().extension() == ".tmp") continue;
    std::ifstream in(e.path());
    std::string line;
    std::getline(in, line);
    rows.emplace_back(e.path().filename().string(), line);
  }
  std::sort(rows.begin(), rows.end());
  for (const auto& [name, line] : rows) std::cout << name << ": " << line << '\n';
  if (rows.empty()) std::cout << "no appliance has answered a push yet\n";
  return 0;
}

int psk(const std::vector<std::string>& args) {
  if (args.size() != 3 || args[0] != "generate" || args[1] != "--psk-file") {
    std::cerr << "usage: ztmanager psk generate --psk-file FILE\n";
    return 2;
  }
  if (auto r = zt::cp::PreSharedSecret::generate(args[2]); !r) {
    std::cerr << "ztmanager psk generate: " << r.error().message << '\n';
    return 1;
  }
  return 0;
}

constexpr const char* kUsage =
    "usage: ztmanager <command> [options]\n"
    "\n"
    "The ztgate central manager: policy-as-code source of truth, key authority and internal CA.\n"
    "\n"
    "commands:\n"
    "  serve          validate, test, sign and publish the policy directory; serve appliances\n"
    "                 over mutual TLS 1.3 and enrolments (see `ztmanager serve --help`)\n"
    "  token create   print a one-time enrolment token for an appliance (--name NAME), or for\n"
    "                 an agent of a policy identity (--kind agent --name IDENTITY-NAME-OR-ID)\n"
    "                 (see `ztmanager token create --help`)\n"
    "  status         published revision and the revision each appliance acknowledged\n"
    "                 (ztmanager status --state-dir DIR)\n"
    "  psk generate   write a new random pre-shared secret file (mode 0600)\n"
    "                 (ztmanager psk generate --psk-file FILE)\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "serve") return serve(args);
  if (cmd == "token") return token(args);
  if (cmd == "psk") return psk(args);
  if (cmd == "status") return status(args);
  std::cerr << "ztmanager: unknown command '" << cmd << "'\n" << kUsage;
  return 2;
}

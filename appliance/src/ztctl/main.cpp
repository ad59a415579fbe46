// ztctl: the operator CLI. Offline `policy` verbs today; live verbs join through the Registry.
#include <iostream>
#include <string>
#include <vector>

#include "command.hpp"

namespace zt::ctl {

const Command* Registry::find(const std::vector<std::string>& args, std::size_t& consumed) const {
  const Command* best = nullptr;
  consumed = 0;
  for (auto& c : commands_) {
    if (c.words.size() > args.size() || c.words.size() <= consumed) continue;
    bool match = true;
    for (std::size_t i = 0; i < c.words.size(); ++i) match &= args[i] == c.words[i];
    if (match) best = &c, consumed = c.words.size();
  }
  return best;
}

void Registry::print_help(std::ostream& out) const {
  out << "usage: ztctl VERB... [OPTIONS]\n\n"
         "ztgate's operator CLI. Every verb takes --help; structured output takes --json.\n"
         "Live verbs (show, clear, set, commit, confirm, rollback, test policy, trace) talk to a running ztgate\n"
         "over its admin socket "
         "(--socket, default /run/ztgate/admin.sock); show and test also work on the read-only socket PATH.ro.\n"
         "Exit status: 0 success, 1 the command ran and found a problem (invalid policy, failed test, a\n"
         "request ztgate could not carry out), 2 bad arguments, 3 ztgate not reachable, 4 refused\n"
         "(permissions, or a changing command on the read-only socket).\n\nverbs:\n";
  for (auto& c : commands_) {
    std::string head;
    for (auto& w : c.words) head += w + " ";
    head += c.synopsis;
    out << "  ztctl " << head << "\n      " << c.summary << "\n";
  }
  out << "\nglobal options:\n  -h, --help     this text\n      --version  print the version\n";
}

}  // namespace zt::ctl

int main(int argc, char** argv) {
  using namespace zt::ctl;
  Registry registry;
  register_policy_commands(registry);
  register_live_commands(registry);

  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    registry.print_help(std::cerr);
    return kExitUsage;
  }
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    registry.print_help(std::cout);
    return kExitOk;
  }
  if (args[0] == "--version") {
    std::cout << "ztctl " ZT_VERSION "\n";
    return kExitOk;
  }
  // `ztctl --socket PATH show …`: a leading --socket is moved behind the verb, where live verbs take it.
  if (args.size() >= 2 && args[0] == "--socket") {
    std::vector<std::string> moved(args.begin() + 2, args.end());
    moved.insert(moved.end(), {args[0], args[1]});
    args = std::move(moved);
  } else if (!args.empty() && args[0].starts_with("--socket=")) {
    std::vector<std::string> moved(args.begin() + 1, args.end());
    moved.push_back(args[0]);
    args = std::move(moved);
  }
  std::size_t consumed = 0;
  const Command* cmd = registry.find(args, consumed);
  if (!cmd) {
    std::string verbs;
    for (auto& c : registry.commands())
      if (c.words.size() > 1 && c.words[0] == args[0]) verbs += (verbs.empty() ? "" : ", ") + c.words[1];
    if (!verbs.empty()) {
      std::cerr << "ztctl " << args[0] << ": "
                << (args.size() > 1 ? "unknown verb '" + args[1] + "'" : std::string("missing verb"))
                << "; use one of: " << verbs << " (see `ztctl --help`)\n";
      return kExitUsage;
    }
    std::cerr << "ztctl: unknown command '" << args[0] << (args.size() > 1 && !args[1].starts_with("-") ? " " + args[1] : "")
              << "'; run `ztctl --help` for the list of verbs\n";
    return kExitUsage;
  }
  std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(consumed), args.end());
  try {
    return cmd->run(rest, std::cout, std::cerr);
  } catch (const std::exception& e) {
    std::cerr << "ztctl: " << e.what() << "\n";
    return kExitFailure;
  }
}

// ztctl's verb registry. A verb is a word path ("policy check", later "show drops") with its own
// options; main() only dispatches. The CLI issue adds live verbs (show/set, over the admin
// socket) by writing register_*_commands() and calling it from main.cpp; nothing else changes.
#pragma once

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace zt::ctl {

// Exit codes shared by every verb.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and the answer is "no" (invalid policy, failed test)
inline constexpr int kExitUsage = 2;    // bad arguments
inline constexpr int kExitUnavailable = 3;  // live verbs: ztgate not reachable (not running, wrong --socket)
inline constexpr int kExitRefused = 4;      // live verbs: not allowed (socket permissions, read-only socket)

struct Command {
  std::vector<std::string> words;  // e.g. {"policy", "check"}
  std::string synopsis;            // "DIR [--json]"
  std::string summary;             // one line for `ztctl --help`
  // Receives the arguments after the verb words; prints its own --help.
  std::function<int(const std::vector<std::string>& args, std::ostream& out, std::ostream& err)> run;
};

class Registry {
 public:
  void add(Command c) { commands_.push_back(std::move(c)); }
  // Longest verb whose words prefix `args`; `consumed` = number of words matched.
  const Command* find(const std::vector<std::string>& args, std::size_t& consumed) const;
  void print_help(std::ostream& out) const;
  const std::vector<Command>& commands() const { return commands_; }

 private:
  std::vector<Command> commands_;
};

void register_policy_commands(Registry& registry);
// Live verbs over ztgate's admin socket (live_commands.cpp).
void register_live_commands(Registry& registry);

}  // namespace zt::ctl

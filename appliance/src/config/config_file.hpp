// ztgate's YAML config file (appliance/ztgate.example.yaml; README.md in this folder).
//
// The file holds the same settings as the command line, grouped in sections (ports, policy,
// keys, manager, eal, operation, admin, metrics, volumetric) plus what has no command-line
// option (the flow-log writer's file/syslog/rate, the live tunables at start). Every command-line setting in the file becomes the
// equivalent `--name=value` argument, so Boost.Program_options validates both the same way and
// the command line wins: parse argv first, then store ConfigFile::args (po::store keeps the
// first value it saw).
#pragma once

#include <expected>
#include <map>
#include <string>
#include <vector>

#include "config/file_settings.hpp"
#include "options.hpp"

namespace zt::appliance::config {

struct ConfigFile {
  std::string path;
  std::vector<std::string> args;           // "--name=value", in file order
  std::map<std::string, int> line_of;      // option name → line in the file (1-based)
  std::map<std::string, std::string> key_of;  // option name → YAML key ("ports.a")
  FileSettings settings;
};

// Reads and checks the file's shape: known sections and keys (an unknown one is named with its
// line and the keys allowed there), scalar values, tunables validated like `set` (volumetric
// keys by `volumetric`; without it they are kept unvalidated). Does not check the values of
// command-line settings: parse_options does, when given `args`.
std::expected<ConfigFile, std::string> read_config(const std::string& path,
                                                   const VolumetricValidator& volumetric = {});

// `error` (from parse_options or Boost.PO, after storing `cf.args`) prefixed with the file,
// line and YAML key of the option it names, when that option came from the file.
std::string annotate_error(const ConfigFile& cf, const std::string& error);

// The file alone, validated completely (what `ztgate --check-config FILE` runs): read_config,
// then the settings through parse_options as if they were the command line. On success `out`
// holds the options; errors name the file, line and YAML key.
std::expected<FileSettings, std::string> load_config(const std::string& path, Options& out,
                                                     const VolumetricValidator& volumetric = {});

// The YAML keys a config file may hold, with the ztgate option each stands for ("" if none).
struct ConfigKey {
  const char* key;
  const char* option;
};
const std::vector<ConfigKey>& config_keys();

}  // namespace zt::appliance::config

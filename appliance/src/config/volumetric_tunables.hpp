// `set volumetric.<key> VALUE`: the appliance-wide volumetric limits (dp::VolumetricConfig,
// dataplane/README.md "Volumetric") as candidate tunables. Keys are the config file's
// `volumetric:` section keys (v4_prefix, source_pps, new_flows, ...), values integers; a value
// is accepted only if the whole resulting configuration passes dp::validate.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "config/candidate.hpp"
#include "zt/dataplane/volumetric.hpp"

namespace zt::appliance::config {

// The keys, in the order `set ?` lists them.
const std::vector<std::string>& volumetric_keys();
// Sets one field of `c`; the error names the key and the keys or range allowed.
std::expected<void, std::string> set_volumetric(dp::VolumetricConfig& c, std::string_view key, std::string_view value);
// A CandidateStore validator: the value applied to a copy of `base` must pass dp::validate.
VolumetricValidator volumetric_validator(dp::VolumetricConfig base);
// `base` with every volumetric tunable of `t` applied and validated (for the commit callback,
// then Control::set_volumetric or its equivalent).
std::expected<dp::VolumetricConfig, std::string> volumetric_from(const Tunables& t, dp::VolumetricConfig base);

}  // namespace zt::appliance::config

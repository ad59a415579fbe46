#include "config/volumetric_tunables.hpp"

#include <fmt/format.h>

#include <charconv>
#include <limits>

namespace zt::appliance::config {

namespace {

struct Field {
  const char* key;
  std::uint64_t max;
  void (*set)(dp::VolumetricConfig&, std::uint64_t);
};

#define ZT_VOL_FIELD(key, member, max)                                                          \
  Field {                                                                                       \
    key, max, [](dp::VolumetricConfig& c, std::uint64_t v) {                                    \
      c.member = static_cast<decltype(c.member)>(v);                                            \
    }                                                                                           \
  }

const Field kFields[] = {
    ZT_VOL_FIELD("v4_prefix", v4_prefix, 32),
    ZT_VOL_FIELD("v6_prefix", v6_prefix, 64),
    ZT_VOL_FIELD("window_ms", window_ms, std::numeric_limits<std::uint32_t>::max()),
    ZT_VOL_FIELD("source_pps", source_pps, std::numeric_limits<std::uint64_t>::max()),
    ZT_VOL_FIELD("block_pps", block_pps, std::numeric_limits<std::uint64_t>::max()),
    ZT_VOL_FIELD("mac_fail_pps", mac_fail_pps, std::numeric_limits<std::uint64_t>::max()),
    ZT_VOL_FIELD("block_ms", block_ms, std::numeric_limits<std::uint32_t>::max()),
    ZT_VOL_FIELD("new_flows_per_source", new_flows_per_source, std::numeric_limits<std::uint64_t>::max()),
    ZT_VOL_FIELD("new_flows", new_flows_global, std::numeric_limits<std::uint64_t>::max()),
    ZT_VOL_FIELD("unverified_share", unverified_new_flow_share, 100),
    ZT_VOL_FIELD("table_watermark", table_watermark_pct, 100),
    ZT_VOL_FIELD("burst_ms", burst_ms, std::numeric_limits<std::uint32_t>::max()),
    ZT_VOL_FIELD("overload_ms", overload_ms, std::numeric_limits<std::uint32_t>::max()),
    ZT_VOL_FIELD("worker_flow_log_rate", flow_log_rate, std::numeric_limits<std::uint64_t>::max()),
};
#undef ZT_VOL_FIELD

}  // namespace

const std::vector<std::string>& volumetric_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& f : kFields) k.emplace_back(f.key);
    return k;
  }();
  return keys;
}

std::expected<void, std::string> set_volumetric(dp::VolumetricConfig& c, std::string_view key, std::string_view value) {
  for (const auto& f : kFields) {
    if (key != f.key) continue;
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc{} || p != value.data() + value.size() || v > f.max)
      return std::unexpected(fmt::format("'{}': expected an integer from 0 to {}", value, f.max));
    f.set(c, v);
    return {};
  }
  std::string keys;
  for (const auto& f : kFields) keys += (keys.empty() ? "" : ", ") + std::string(f.key);
  return std::unexpected(fmt::format("unknown volumetric key '{}' (expected {})", key, keys));
}

VolumetricValidator volumetric_validator(dp::VolumetricConfig base) {
  return [base](std::string_view key, std::string_view value) -> std::expected<void, std::string> {
    dp::VolumetricConfig c = base;
    if (auto ok = set_volumetric(c, key, value); !ok) return ok;
    return dp::validate(c);
  };
}

std::expected<dp::VolumetricConfig, std::string> volumetric_from(const Tunables& t, dp::VolumetricConfig base) {
  for (const auto& [k, v] : t.volumetric)
    if (auto ok = set_volumetric(base, k, v); !ok) return std::unexpected(fmt::format("volumetric.{}: {}", k, ok.error()));
  if (auto ok = dp::validate(base); !ok) return std::unexpected(ok.error());
  return base;
}

}  // namespace zt::appliance::config

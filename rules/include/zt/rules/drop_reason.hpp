// The one list of reasons a packet is dropped (DESIGN.md §4). It feeds the enum, the per-lcore
// counters, `ztctl show drops` and the metrics; add a reason here and every consumer sees it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace zt::rules {

// X(name, description) — the name is what counters, logs and the CLI print.
#define ZT_DROP_REASONS(X)                                                                      \
  /* L2 */                                                                                      \
  X(frame_runt, "frame shorter than an Ethernet header")                                        \
  X(vlan_truncated, "802.1Q/802.1ad tag cut off by the end of the frame")                       \
  X(vlan_too_deep, "more than two VLAN tags (only 802.1Q and QinQ are accepted)")               \
  X(ethertype_unsupported, "EtherType is neither IPv4, IPv6 nor ARP")                           \
  X(arp_truncated, "ARP packet shorter than its fixed header")                                  \
  /* IPv4 */                                                                                    \
  X(ipv4_truncated, "IPv4 header cut off by the end of the frame")                              \
  X(ipv4_bad_version, "IP version field is not 4 in an IPv4 EtherType")                         \
  X(ipv4_bad_ihl, "IPv4 header length below 20 bytes or past the total length")                 \
  X(ipv4_bad_total_length, "IPv4 total length disagrees with the frame")                        \
  X(ipv4_bad_checksum, "IPv4 header checksum is wrong")                                         \
  X(ipv4_bad_options, "IPv4 options are malformed (length runs past the header)")               \
  X(ipv4_reserved_flag, "IPv4 reserved flag bit (RFC 791: must be zero) is set")                \
  X(ipv4_bad_fragment, "IPv4 fragment offset and length run past 65535 bytes")                  \
  X(ip_ttl_zero, "IPv4 TTL or IPv6 hop limit 0: no router forwards it, so it was crafted")      \
  X(ip_source_route,                                                                            \
    "source-routed (IPv4 LSRR/SSRR option, IPv6 routing header with segments left): the "       \
    "destination policy sees is not the final one")                                             \
  X(ipv4_bad_fragment_size,                                                                     \
    "IPv4 fragment is empty, not a multiple of 8 bytes before the last, or TCP at offset 8")    \
  /* IPv6 */                                                                                    \
  X(ipv6_truncated, "IPv6 header cut off by the end of the frame")                              \
  X(ipv6_bad_version, "IP version field is not 6 in an IPv6 EtherType")                         \
  X(ipv6_bad_payload_length, "IPv6 payload length disagrees with the frame")                    \
  X(ipv6_jumbogram, "IPv6 jumbogram (payload length 0), not supported")                         \
  X(ipv6_ext_truncated, "IPv6 extension header cut off by the end of the packet")               \
  X(ipv6_ext_chain_too_long, "IPv6 extension-header chain longer than the walk allows")         \
  X(ipv6_ext_misplaced, "hop-by-hop options header anywhere but first")                         \
  X(ipv6_bad_fragment, "IPv6 fragment header is malformed or repeated")                         \
  X(ipv6_routing_type0, "IPv6 routing header type 0 (deprecated by RFC 5095)")                  \
  X(ipv6_bad_ext_header, "IPv6 authentication header shorter than its fixed 12 bytes")          \
  /* fragments (DESIGN.md §4) */                                                                \
  X(frag_first_too_short, "first fragment does not hold the whole L4 header")                   \
  X(frag_no_first,                                                                              \
    "non-first fragment with no first fragment to follow (not seen yet, expired, or its flow "  \
    "is gone): nothing is reassembled or held")                                                 \
  X(frag_overlap,                                                                               \
    "fragment overlaps, duplicates or runs past the end of what its datagram already carried; " \
    "the datagram is poisoned and its later fragments drop too (RFC 5722)")                     \
  X(frag_too_many, "datagram has more fragments than the per-datagram bound")                   \
  X(frag_table_full, "the worker's fragment table is full; new fragmented datagrams refused")   \
  /* L4 */                                                                                      \
  X(tcp_truncated, "TCP header cut off by the end of the segment")                              \
  X(tcp_bad_offset, "TCP data offset below 5 words or past the segment")                        \
  X(tcp_bad_flags,                                                                              \
    "TCP flags no stack sends (SYN+RST; no ACK without SYN or RST: null, FIN, xmas scans)")      \
  X(udp_truncated, "UDP header cut off by the end of the datagram")                             \
  X(udp_bad_length, "UDP length disagrees with the IP payload length")                          \
  X(icmp_truncated, "ICMP/ICMPv6 header cut off by the end of the packet")                      \
  /* Geneve (identity tag carrier, DESIGN.md §2) */                                             \
  X(geneve_truncated, "Geneve header or options cut off by the end of the datagram")            \
  X(geneve_bad_version, "Geneve version is not 0")                                              \
  X(geneve_bad_option, "Geneve option length runs past the option area")                        \
  X(geneve_unknown_critical_option, "Geneve option with the critical bit that we do not know")  \
  X(geneve_bad_tag_option, "identity tag option has the wrong length or appears twice")         \
  X(geneve_inner_unsupported, "Geneve inner protocol is neither IPv4 nor IPv6")                 \
  X(geneve_inner_fragment, "Geneve inner packet is a fragment")                                 \
  X(geneve_fragmented,                                                                          \
    "Geneve datagram is fragmented (identity tags are checked on whole datagrams only)")        \
  X(tunnel_nested, "Geneve inside Geneve")                                                      \
  X(header_chain_too_long, "headers run past the parser's inspection window")                   \
  /* identity tag (crypto::TagReject maps here by name; DESIGN.md §2) */                       \
  X(tag_truncated, "identity tag body shorter than 32 bytes")                                   \
  X(tag_bad_option_class, "tag option class is not 0xFFF0")                                     \
  X(tag_bad_option_type, "tag option type is not 0x81")                                         \
  X(tag_bad_option_length, "tag option length is not 8 words")                                  \
  X(tag_bad_version, "identity tag version is not 1")                                           \
  X(tag_bad_alg, "identity tag names an unknown MAC algorithm")                                 \
  X(tag_bad_flags, "identity tag sets reserved flag bits")                                      \
  X(tag_bad_identity, "identity tag carries identity 0 or a reserved identity (1-255)")         \
  X(tag_alg_not_allowed, "identity tag uses AES-128-CMAC where only AES-256-CMAC is accepted")  \
  X(tag_hdr_not_allowed, "identity tag covers only the L4 header where FULL is required")       \
  X(tag_expired_epoch, "identity tag key epoch is older than the current epoch plus grace")      \
  X(tag_future_epoch, "identity tag key epoch is further ahead than the acceptance window")     \
  X(tag_no_key, "no key loaded for the identity tag's epoch")                                   \
  X(tag_stale_generation, "identity tag key generation differs from the loaded one")            \
  X(tag_time_window, "identity tag timestamp outside the freshness window")                     \
  X(tag_unknown_identity, "identity tag names an identity the appliance does not know")         \
  X(tag_too_long, "inner L4 segment longer than a tag may cover")                               \
  X(tag_forged_mac, "identity tag MAC does not verify")                                         \
  X(tag_replayed, "identity tag seen before within the freshness window")                       \
  /* forwarding */                                                                              \
  X(tx_ring_full, "egress queue full; the packet could not be sent")                            \
  /* flows and pipeline (dataplane/README.md "Pipeline") */                                    \
  X(tcp_no_syn, "TCP packet of an unknown flow that is not a SYN (no mid-stream pickup)")       \
  X(tcp_bad_state, "TCP flags impossible in the flow's state (SYN+FIN, SYN when established)")  \
  X(tcp_after_reset, "TCP segment of a flow already reset (in flight when the RST crossed)")    \
  X(flow_table_full, "the worker's flow table is full; new flows are refused, old ones kept")   \
  X(flow_quota_exceeded, "the source identity holds its maximum of flows on this worker")       \
  X(tag_missing, "untagged packet from the side of a flow that was opened with a tag")          \
  X(tag_identity_mismatch, "tag identity differs from the identity that opened the flow")       \
  X(tagged_frame_segmented, "tagged frame spread over several buffers: cannot be verified")     \
  /* policy */                                                                                  \
  X(policy_deny, "an explicit deny rule matched the flow")                                      \
  X(policy_default_deny, "no allow rule matched the flow (default deny)")                       \
  X(policy_l7_deny,                                                                             \
    "L7: the request line broke the rule's HTTP allow-list, was malformed or not whole within "   \
    "the inspection bound, the payload hit a deny pattern, or the flow was cut for one")        \
  X(l7_pool_full, "the worker's L7 inspection pool is full; new flows needing L7 are refused") \
  X(l7_out_of_order,                                                                            \
    "TCP segment ahead of the inspected L7 stream (a gap); dropped so the sender retransmits")  \
  X(l7_not_ready, "no L7 scratch prepared for this policy on this worker; L7 flows refused")   \
  X(no_policy, "no policy is loaded; new flows fail closed")                                    \
  X(policy_expired, "the policy or its keys expired without an update; new flows fail closed") \
  /* volumetric filtering (dataplane/README.md "Volumetric") */                                 \
  X(rate_limited, "over the rate class (pps or bps) of its rule for this identity")             \
  X(source_rate_limited, "untagged or invalid-tag packet over its source prefix's packet limit") \
  X(blocklisted, "source prefix on the dynamic blocklist (heavy hitter or tag-failure flooder)") \
  X(new_flow_rate_limited, "over the per-source or global new-flow rate")                       \
  X(admission_watermark,                                                                        \
    "flow table above its watermark: only MAC-verified identities may open new flows")          \
  X(overload_shed, "worker behind (RX bursts full): new untagged flows shed first")

enum class DropReason : std::uint16_t {
  none = 0,
#define ZT_DR_ENUM(name, desc) name,
  ZT_DROP_REASONS(ZT_DR_ENUM)
#undef ZT_DR_ENUM
      count_,
};

inline constexpr std::size_t kDropReasonCount = static_cast<std::size_t>(DropReason::count_);

struct DropReasonInfo {
  std::string_view name;
  std::string_view description;
};

inline constexpr std::array<DropReasonInfo, kDropReasonCount> kDropReasonInfo{{
    {"none", "not dropped"},
#define ZT_DR_INFO(name, desc) {#name, desc},
    ZT_DROP_REASONS(ZT_DR_INFO)
#undef ZT_DR_INFO
}};

constexpr std::string_view to_string(DropReason r) noexcept {
  auto i = static_cast<std::size_t>(r);
  return i < kDropReasonCount ? kDropReasonInfo[i].name : std::string_view{"invalid"};
}

constexpr std::string_view describe(DropReason r) noexcept {
  auto i = static_cast<std::size_t>(r);
  return i < kDropReasonCount ? kDropReasonInfo[i].description : std::string_view{"invalid"};
}

constexpr std::optional<DropReason> drop_reason_from_string(std::string_view s) noexcept {
  for (std::size_t i = 0; i < kDropReasonCount; ++i)
    if (kDropReasonInfo[i].name == s) return static_cast<DropReason>(i);
  return std::nullopt;
}

}  // namespace zt::rules

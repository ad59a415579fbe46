// Per-lcore IP fragment table (DESIGN.md §4 "Fragments"; dataplane/README.md "Fragments").
//
// Nothing is reassembled and no fragment is held. The first fragment (offset 0: the parser
// guarantees it carries the whole L4 header) is decided like any packet; its datagram — (src,
// dst, protocol, 16-bit id) for IPv4, (src, dst, 32-bit id) for IPv6 — is recorded here with the
// flow it belongs to and, once decided, its verdict. A later fragment follows that verdict; it is
// dropped when no first fragment was seen (frag_no_first), when it overlaps or duplicates a byte
// range already seen or contradicts the datagram's end (frag_overlap, and the datagram is
// poisoned so its later fragments drop too: RFC 5722 / RFC 3128), or when the datagram has more
// fragments than the bound (frag_too_many). A full table refuses new fragmented datagrams
// (frag_table_full). Entries live a fixed few seconds from their first fragment, or until
// the datagram is complete.
//
// Fixed capacity set at creation; the fast path allocates nothing, takes no lock, and touches at
// most kMaxProbe index slots per lookup (hashes are keyed with a per-table random seed).
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>

#include "zt/dataplane/flow_table.hpp"
#include "zt/dataplane/parser.hpp"

struct rte_mbuf;

namespace zt::dp {

// The more-fragments flag of a later fragment `l` of the frame in `m` (IpLayer does not carry
// it): IPv4 from the header, IPv6 from the fragment header just before `l.l4_off`.
bool more_fragments(const rte_mbuf* m, const IpLayer& l) noexcept;

struct FragConfig {
  std::uint32_t capacity = 4096;      // datagrams this lcore follows at once
  std::uint16_t max_fragments = 64;   // fragments one datagram may have (a 64 KiB datagram
                                      // over a 1500-byte MTU needs 45)
  double timeout_seconds = 5;         // lifetime of a datagram's entry after its first fragment
  std::uint64_t ticks_per_second = 0; // clock of `now`; 0: rte_get_tsc_hz()
};

inline constexpr std::uint32_t kNoFrag = 0xFFFFFFFFu;

struct FragResult {
  DropReason drop = DropReason::none;
  std::uint32_t slot = kNoFrag;  // the datagram's entry when drop == none
};

// What a later fragment follows: the first fragment's fate and its flow.
struct FragFollow {
  DropReason drop = DropReason::none;  // none: the first fragment was forwarded
  FlowKey flow;
  KeyDir dir = KeyDir::lo_to_hi;
};

class FragTable {
 public:
  static std::expected<std::unique_ptr<FragTable>, std::string> create(const FragConfig& cfg);
  ~FragTable();
  FragTable(const FragTable&) = delete;
  FragTable& operator=(const FragTable&) = delete;

  // A first fragment (offset 0, more to come) of the flow `flow` going `dir`: opens its
  // datagram, verdict pending until decide(). A second first fragment of a live datagram is a
  // duplicate (frag_overlap, datagram poisoned); no free entry: frag_table_full.
  FragResult open_first(const IpLayer& l, const FlowKey& flow, KeyDir dir,
                        std::uint64_t now) noexcept;
  // Records the first fragment's fate (none: forwarded).
  void decide(std::uint32_t slot, DropReason r) noexcept;

  // A later fragment (`more`: its more-fragments flag): checks it against its datagram and
  // records its byte range. On success the caller follows follow(slot).
  FragResult add_later(const IpLayer& l, bool more, std::uint64_t now) noexcept;
  // The decided fate of a datagram accepted by add_later in this burst or before.
  FragFollow follow(std::uint32_t slot) const noexcept;

  // Frees up to `n` expired entries from a rotating cursor; returns how many.
  unsigned age(std::uint64_t now, unsigned n) noexcept;

  std::uint32_t size() const noexcept { return used_; }
  std::uint32_t capacity() const noexcept { return capacity_; }
  std::uint16_t max_fragments() const noexcept { return max_frags_; }
  std::size_t memory_bytes() const noexcept { return mem_bytes_; }

  static constexpr unsigned kMaxProbe = 16;

 private:
  FragTable() = default;
  struct Key;
  struct Entry;
  struct Range {
    std::uint16_t start, end;  // [start, end) in bytes of the fragmentable part
  };
  struct Slot {
    std::uint32_t hash;
    std::uint32_t entry;  // entry index + 1; 0 = empty
  };

  static Key key_of(const IpLayer& l) noexcept;
  std::uint32_t hash(const Key& k) const noexcept;
  // A live (not expired) entry with key `k`, or kNoFrag.
  std::uint32_t find(const Key& k, std::uint32_t h, std::uint64_t now) const noexcept;
  bool index_insert(std::uint32_t h, std::uint32_t entry) noexcept;
  void release(std::uint32_t entry) noexcept;
  std::uint32_t allocate(std::uint64_t now) noexcept;
  static void poison(Entry& e, DropReason why) noexcept;

  Entry* entries_ = nullptr;
  Range* ranges_ = nullptr;       // max_frags_ per entry
  Slot* index_ = nullptr;
  std::uint32_t* free_ = nullptr; // stack of free entry indices
  std::uint32_t free_top_ = 0;
  std::uint32_t index_mask_ = 0;
  std::uint32_t capacity_ = 0;
  std::uint32_t used_ = 0;
  std::uint32_t cursor_ = 0;
  std::uint16_t max_frags_ = 0;
  std::uint64_t timeout_ = 0;
  std::uint64_t seed_ = 0;
  void* mem_ = nullptr;
  std::size_t mem_bytes_ = 0;
};

}  // namespace zt::dp

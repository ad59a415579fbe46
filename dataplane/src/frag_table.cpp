#include "zt/dataplane/frag_table.hpp"

#include <rte_cycles.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <random>

#include <fmt/format.h>

namespace zt::dp {

struct FragTable::Key {
  std::array<std::uint8_t, 16> src;
  std::array<std::uint8_t, 16> dst;
  std::uint32_t id;
  std::uint8_t proto;  // IPv4 only; IPv6 datagrams are (src, dst, id) (RFC 8200 §4.5)
  std::uint8_t version;
  std::uint16_t pad;
  friend bool operator==(const Key&, const Key&) = default;
};

struct FragTable::Entry {
  Key key;
  FlowKey flow;              // the flow of the first fragment
  std::uint64_t expires;     // caller ticks; the entry is gone at expires <= now
  std::uint32_t hash;
  std::uint32_t covered;     // bytes of the datagram seen (ranges never overlap)
  std::uint16_t count;       // fragments recorded (ranges used)
  std::uint16_t last_end;    // end of the datagram once its last fragment was seen; 0 before
  DropReason verdict;        // the first fragment's fate; none = forwarded
  DropReason poisoned;       // none, or why every later fragment of it drops
  std::uint8_t state;        // kFree, kPending, kDecided
  KeyDir dir;
};

namespace {

constexpr std::uint8_t kFree = 0, kPending = 1, kDecided = 2;
constexpr unsigned kReclaimScan = 32;  // entries inspected for an expired one when full

std::uint64_t mix(std::uint64_t h) noexcept {  // murmur3 fmix64
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::uint64_t load64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::size_t round_up(std::size_t n) noexcept { return (n + 63) & ~std::size_t{63}; }

}  // namespace

bool more_fragments(const rte_mbuf* m, const IpLayer& l) noexcept {
  std::uint8_t tmp[2];
  // IPv4: flags+offset at byte 6 (MF = 0x2000); IPv6: the fragment header's offset field at
  // byte 2 (M = bit 0) — for a later fragment the parser stops right after that header.
  const std::uint32_t off = l.version == 4 ? l.l3_off + 6u : l.l4_off - 8u + 2u;
  const auto* p = static_cast<const std::uint8_t*>(rte_pktmbuf_read(m, off, 2, tmp));
  if (p == nullptr) return true;  // cannot happen for a parsed frame; "more" claims less
  return l.version == 4 ? (p[0] & 0x20) != 0 : (p[1] & 0x01) != 0;
}

std::expected<std::unique_ptr<FragTable>, std::string> FragTable::create(const FragConfig& cfg) {
  if (cfg.capacity == 0 || cfg.capacity > (1u << 24))
    return std::unexpected(fmt::format(
        "fragment table capacity {} out of range (1 to 16777216 datagrams per worker)", cfg.capacity));
  if (cfg.max_fragments == 0 || cfg.max_fragments > 8192)
    return std::unexpected(fmt::format(
        "fragments per datagram {} out of range (1 to 8192)", cfg.max_fragments));
  const std::uint64_t tps = cfg.ticks_per_second != 0 ? cfg.ticks_per_second : rte_get_tsc_hz();
  if (tps == 0)
    return std::unexpected("fragment table: no clock rate (EAL not initialised and no "
                           "ticks_per_second given)");
  if (!(cfg.timeout_seconds > 0) || cfg.timeout_seconds > 120)
    return std::unexpected(fmt::format(
        "fragment timeout {} s out of range (above 0, at most 120 s)", cfg.timeout_seconds));

  std::unique_ptr<FragTable> t(new FragTable());
  t->capacity_ = cfg.capacity;
  t->max_frags_ = cfg.max_fragments;
  t->timeout_ = static_cast<std::uint64_t>(cfg.timeout_seconds * static_cast<double>(tps));
  if (t->timeout_ == 0) t->timeout_ = 1;
  std::uint32_t slots = 2;
  while (slots < 2ull * cfg.capacity) slots <<= 1;
  t->index_mask_ = slots - 1;

  const std::size_t e_bytes = round_up(sizeof(Entry) * cfg.capacity);
  const std::size_t r_bytes = round_up(sizeof(Range) * cfg.capacity * cfg.max_fragments);
  const std::size_t i_bytes = round_up(sizeof(Slot) * slots);
  const std::size_t f_bytes = round_up(sizeof(std::uint32_t) * cfg.capacity);
  t->mem_bytes_ = e_bytes + r_bytes + i_bytes + f_bytes;
  t->mem_ = std::calloc(1, t->mem_bytes_);
  if (t->mem_ == nullptr)
    return std::unexpected(fmt::format(
        "fragment table: cannot allocate {} bytes for {} datagrams x {} fragments; lower them",
        t->mem_bytes_, cfg.capacity, cfg.max_fragments));
  auto* base = static_cast<std::uint8_t*>(t->mem_);
  t->entries_ = reinterpret_cast<Entry*>(base);
  t->ranges_ = reinterpret_cast<Range*>(base + e_bytes);
  t->index_ = reinterpret_cast<Slot*>(base + e_bytes + r_bytes);
  t->free_ = reinterpret_cast<std::uint32_t*>(base + e_bytes + r_bytes + i_bytes);
  for (std::uint32_t i = 0; i < cfg.capacity; ++i) t->free_[i] = cfg.capacity - 1 - i;
  t->free_top_ = cfg.capacity;
  std::random_device rd;
  t->seed_ = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  return t;
}

FragTable::~FragTable() { std::free(mem_); }

FragTable::Key FragTable::key_of(const IpLayer& l) noexcept {
  Key k;
  k.src = l.src.b;
  k.dst = l.dst.b;
  k.id = l.frag_id;
  k.proto = l.version == 4 ? l.proto : 0;
  k.version = l.version;
  k.pad = 0;
  return k;
}

std::uint32_t FragTable::hash(const Key& k) const noexcept {
  std::uint64_t h = seed_;
  for (std::size_t i = 0; i < 16; i += 8) {
    h = mix(h ^ load64(k.src.data() + i));
    h = mix(h ^ load64(k.dst.data() + i));
  }
  h = mix(h ^ (static_cast<std::uint64_t>(k.id) << 16 | static_cast<std::uint64_t>(k.proto) << 8 |
               k.version));
  return static_cast<std::uint32_t>(h);
}

std::uint32_t FragTable::find(const Key& k, std::uint32_t h, std::uint64_t now) const noexcept {
  std::uint32_t s = h & index_mask_;
  for (unsigned i = 0; i < kMaxProbe; ++i, s = (s + 1) & index_mask_) {
    const Slot& sl = index_[s];
    if (sl.entry == 0) return kNoFrag;
    if (sl.hash != h) continue;
    const Entry& e = entries_[sl.entry - 1];
    if (e.expires > now && e.key == k) return sl.entry - 1;
  }
  return kNoFrag;
}

bool FragTable::index_insert(std::uint32_t h, std::uint32_t entry) noexcept {
  std::uint32_t s = h & index_mask_;
  for (unsigned i = 0; i < kMaxProbe; ++i, s = (s + 1) & index_mask_) {
    if (index_[s].entry == 0) {
      index_[s] = {h, entry + 1};
      return true;
    }
  }
  return false;  // a probe run this long only happens under a hash flood: refuse, fail closed
}

void FragTable::release(std::uint32_t entry) noexcept {
  Entry& e = entries_[entry];
  std::uint32_t i = e.hash & index_mask_;
  for (unsigned n = 0; n < kMaxProbe && index_[i].entry != entry + 1; ++n) i = (i + 1) & index_mask_;
  if (index_[i].entry == entry + 1) {
    // Backward-shift deletion (linear probing): later slots move closer to home, never farther.
    index_[i] = {0, 0};
    std::uint32_t j = i;
    for (;;) {
      j = (j + 1) & index_mask_;
      if (index_[j].entry == 0) break;
      const std::uint32_t home = index_[j].hash & index_mask_;
      const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
      if (movable) {
        index_[i] = index_[j];
        index_[j] = {0, 0};
        i = j;
      }
    }
  }
  e.state = kFree;
  free_[free_top_++] = entry;
  --used_;
}

std::uint32_t FragTable::allocate(std::uint64_t now) noexcept {
  if (free_top_ == 0) {
    // Reclaim expired entries only: a live datagram is never evicted. An entry completed in this
    // very burst (expires == now) may still be followed by a fragment of the burst: keep it.
    for (unsigned n = 0; n < kReclaimScan; ++n) {
      const std::uint32_t i = cursor_;
      cursor_ = cursor_ + 1 == capacity_ ? 0 : cursor_ + 1;
      if (entries_[i].state != kFree && entries_[i].expires < now) release(i);
    }
    if (free_top_ == 0) return kNoFrag;
  }
  ++used_;
  return free_[--free_top_];
}

void FragTable::poison(Entry& e, DropReason why) noexcept { e.poisoned = why; }

FragResult FragTable::open_first(const IpLayer& l, const FlowKey& flow, KeyDir dir,
                                 std::uint64_t now) noexcept {
  const Key k = key_of(l);
  const std::uint32_t h = hash(k);
  if (const std::uint32_t old = find(k, h, now); old != kNoFrag) {
    poison(entries_[old], DropReason::frag_overlap);  // a second first fragment: which one would the receiver keep?
    return {DropReason::frag_overlap, kNoFrag};
  }
  const std::uint32_t idx = allocate(now);
  if (idx == kNoFrag) return {DropReason::frag_table_full, kNoFrag};
  if (!index_insert(h, idx)) {
    free_[free_top_++] = idx;
    --used_;
    return {DropReason::frag_table_full, kNoFrag};
  }
  Entry& e = entries_[idx];
  e.key = k;
  e.flow = flow;
  e.expires = now + timeout_;
  e.hash = h;
  const std::uint32_t len = std::min<std::uint32_t>(l.l4_len, 0xFFFF);
  e.covered = len;
  e.count = 1;
  e.last_end = 0;
  e.verdict = DropReason::none;
  e.state = kPending;
  e.poisoned = DropReason::none;
  e.dir = dir;
  ranges_[static_cast<std::size_t>(idx) * max_frags_] = {0, static_cast<std::uint16_t>(len)};
  return {DropReason::none, idx};
}

void FragTable::decide(std::uint32_t slot, DropReason r) noexcept {
  if (slot >= capacity_ || entries_[slot].state == kFree) return;
  entries_[slot].verdict = r;
  entries_[slot].state = kDecided;
}

FragResult FragTable::add_later(const IpLayer& l, bool more, std::uint64_t now) noexcept {
  const Key k = key_of(l);
  const std::uint32_t idx = find(k, hash(k), now);
  if (idx == kNoFrag) return {DropReason::frag_no_first, kNoFrag};
  Entry& e = entries_[idx];
  if (e.poisoned != DropReason::none) return {e.poisoned, kNoFrag};
  const std::uint32_t start = l.frag_offset;
  const std::uint32_t end = start + l.l4_len;  // the parser bounds it by 65535
  Range* r = ranges_ + static_cast<std::size_t>(idx) * max_frags_;
  bool bad = end > 0xFFFF || (e.last_end != 0 && end > e.last_end);
  if (!more) {
    bad = bad || e.last_end != 0;  // a second last fragment
    for (unsigned i = 0; i < e.count && !bad; ++i) bad = r[i].end > end;  // data past the end
  }
  for (unsigned i = 0; i < e.count && !bad; ++i) bad = start < r[i].end && r[i].start < end;
  if (bad) {
    poison(e, DropReason::frag_overlap);
    return {DropReason::frag_overlap, kNoFrag};
  }
  if (e.count >= max_frags_) {
    poison(e, DropReason::frag_too_many);
    return {DropReason::frag_too_many, kNoFrag};
  }
  r[e.count++] = {static_cast<std::uint16_t>(start), static_cast<std::uint16_t>(end)};
  e.covered += end - start;
  if (!more) e.last_end = static_cast<std::uint16_t>(end);
  // Complete (no overlaps, so the byte count says it): the entry goes after this burst.
  if (e.last_end != 0 && e.covered == e.last_end) e.expires = now;
  return {DropReason::none, idx};
}

FragFollow FragTable::follow(std::uint32_t slot) const noexcept {
  FragFollow f;
  if (slot >= capacity_ || entries_[slot].state != kDecided) {
    f.drop = DropReason::frag_no_first;
    return f;
  }
  const Entry& e = entries_[slot];
  f.drop = e.verdict;
  f.flow = e.flow;
  f.dir = e.dir;
  return f;
}

unsigned FragTable::age(std::uint64_t now, unsigned n) noexcept {
  unsigned freed = 0;
  n = std::min(n, capacity_);
  for (unsigned i = 0; i < n; ++i) {
    const std::uint32_t j = cursor_;
    cursor_ = cursor_ + 1 == capacity_ ? 0 : cursor_ + 1;
    if (entries_[j].state != kFree && entries_[j].expires < now) {
      release(j);
      ++freed;
    }
  }
  return freed;
}

}  // namespace zt::dp

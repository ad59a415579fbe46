#include "zt/dataplane/flow_table.hpp"

#include <nmmintrin.h>
#include <sys/mman.h>
#include <sys/random.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::dp {

namespace {

constexpr unsigned kSlots = 8;
constexpr std::uint32_t kEmpty = 0xFFFFFFFFU;
constexpr std::uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr std::uint8_t kProtoIcmp = 1, kProtoTcp = 6, kProtoUdp = 17, kProtoIcmpv6 = 58;

inline void prefetch(const void* p) noexcept { __builtin_prefetch(p, 0, 3); }

}  // namespace

struct alignas(64) FlowTable::Bucket {
  std::uint16_t sig[kSlots];
  std::uint32_t idx[kSlots];
  std::uint8_t pad[64 - kSlots * 6];
};


std::string_view to_string(TcpState s) noexcept {
  switch (s) {
    case TcpState::none: return "none";
    case TcpState::syn_sent: return "syn_sent";
    case TcpState::syn_received: return "syn_received";
    case TcpState::established: return "established";
    case TcpState::fin_wait: return "fin_wait";
    case TcpState::closing: return "closing";
    case TcpState::closed: return "closed";
  }
  return "invalid";
}

FlowTimeouts make_timeouts(std::uint64_t tps, double tcp_syn, double tcp_established,
                           double tcp_closing, double udp, double icmp, double other) {
  auto t = [tps](double s) { return static_cast<std::uint64_t>(s * static_cast<double>(tps)); };
  return {t(tcp_syn), t(tcp_established), t(tcp_closing), t(udp), t(icmp), t(other)};
}

std::expected<std::unique_ptr<FlowTable>, std::string> FlowTable::create(const FlowTableConfig& cfg) {
  if (cfg.capacity < 64 || cfg.capacity > (1U << 30))
    return std::unexpected(fmt::format("flow table capacity {} out of range (64 to 2^30)", cfg.capacity));
  static_assert(sizeof(Bucket) == 64, "a bucket is one cache line");
  static_assert(sizeof(FlowEntry) == 96, "lookup_bulk prefetches an entry as two lines");
  std::unique_ptr<FlowTable> t(new FlowTable());
  t->capacity_ = cfg.capacity;
  t->quota_limit_ = cfg.per_identity_quota;
  t->timeouts_ = cfg.timeouts;
  // Buckets for 8 slots at <= ~60 % load, so two-choice insertion practically never fails
  // while a free entry exists.
  const std::uint32_t nb = std::bit_ceil(std::max<std::uint32_t>(16, cfg.capacity / 5));
  t->bucket_mask_ = nb - 1;
  const std::uint32_t nq = std::bit_ceil(std::max<std::uint32_t>(64, std::min(cfg.capacity, 1U << 20) * 2));
  t->quota_mask_ = nq - 1;
  // The hash key: a secret per table, so bucket collisions cannot be computed offline.
  std::uint32_t hk[10];
  for (std::size_t got = 0; got < sizeof hk;) {
    const ssize_t r = getrandom(reinterpret_cast<std::uint8_t*>(hk) + got, sizeof hk - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      return std::unexpected(fmt::format("cannot read {} random bytes for the flow table's hash key: {}",
                                         sizeof hk, std::strerror(errno)));
    got += static_cast<std::size_t>(r);
  }
  std::memcpy(t->hash_key_, hk, sizeof hk);

  const std::size_t b_bytes = std::size_t{nb} * sizeof(Bucket);
  const std::size_t e_bytes = std::size_t{cfg.capacity} * sizeof(FlowEntry);
  const std::size_t l_bytes = (cfg.capacity + 63) & ~std::size_t{63};
  const std::size_t f_bytes = std::size_t{cfg.capacity} * sizeof(std::uint32_t);
  const std::size_t q_bytes = cfg.per_identity_quota ? std::size_t{nq} * sizeof(QuotaSlot) : 0;
  const std::size_t total = b_bytes + ((e_bytes + 63) & ~std::size_t{63}) + l_bytes +
                            ((f_bytes + 63) & ~std::size_t{63}) + q_bytes;
  // Set-up path: one mapping, 2 MiB-aligned and a whole number of 2 MiB pages, marked for
  // transparent huge pages *before* it is touched (THP is usually `madvise` only, and a page
  // faulted in as 4 KiB stays 4 KiB until khugepaged gets round to it: MAP_POPULATE before the
  // madvise gave 4 KiB pages), then written in full so the fast path never takes a page fault.
  // With huge pages a random bucket or entry access costs a cache miss, not also a TLB miss
  // and a page walk (136 MiB in 4 KiB pages is 35k pages; in 2 MiB pages, 68).
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const std::size_t mapped = (total + kHuge - 1) / kHuge * kHuge;
  void* raw = mmap(nullptr, mapped + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    return std::unexpected(fmt::format("cannot map {} MiB for a flow table of {} flows; lower the "
                                       "flow capacity", total >> 20, cfg.capacity));
  // Keep only the aligned part of the over-sized mapping.
  const auto base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (base + kHuge - 1) & ~(std::uintptr_t{kHuge} - 1);
  if (aligned != base) munmap(raw, aligned - base);
  if (const std::size_t tail = base + mapped + kHuge - (aligned + mapped); tail != 0)
    munmap(reinterpret_cast<void*>(aligned + mapped), tail);
  void* mem = reinterpret_cast<void*>(aligned);
  (void)madvise(mem, mapped, MADV_HUGEPAGE);  // THP off: 4 KiB pages, slower but correct
  std::memset(mem, 0, mapped);                // faults every page in now, huge where possible
  t->mem_ = mem;
  t->mem_bytes_ = mapped;
  auto* p = static_cast<std::uint8_t*>(mem);
  t->buckets_ = reinterpret_cast<Bucket*>(p);
  p += b_bytes;
  t->entries_ = reinterpret_cast<FlowEntry*>(p);
  p += (e_bytes + 63) & ~std::size_t{63};
  t->live_ = p;
  p += l_bytes;
  t->free_ = reinterpret_cast<std::uint32_t*>(p);
  p += (f_bytes + 63) & ~std::size_t{63};
  t->quota_ = q_bytes ? reinterpret_cast<QuotaSlot*>(p) : nullptr;

  for (std::uint32_t b = 0; b < nb; ++b)
    for (unsigned s = 0; s < kSlots; ++s) t->buckets_[b].idx[s] = kEmpty;
  for (std::uint32_t i = 0; i < cfg.capacity; ++i) t->free_[i] = cfg.capacity - 1 - i;
  t->free_top_ = cfg.capacity;
  return t;
}

FlowTable::~FlowTable() {
  if (mem_ != nullptr) munmap(mem_, mem_bytes_);
}

// NH (the UMAC hash; Black et al., 1999) over the key's ten 32-bit words w with the table's
// secret words k: sum of (w[2i] + k[2i]) * (w[2i+1] + k[2i+1]) over i, 32-bit additions and
// 64-bit products. For any two distinct keys the chance over k that the sums collide is at most
// 2^-32, so an attacker who cannot see k cannot pick keys that pile into one bucket pair (a
// CRC, however seeded, cannot promise that: it is linear, and equal CRCs stay equal under any
// seed). Three SSE multiplies; a multiply-xorshift then spreads the sum over all 64 bits (a
// bijection: collisions stay as rare), the bucket taken from the high half and the signature
// from bits 8-23.
inline std::uint64_t FlowTable::hash(const FlowKey& k) const noexcept {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&k);
  const auto* hk = reinterpret_cast<const __m128i*>(hash_key_);
  const __m128i a = _mm_add_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), _mm_load_si128(hk));
  const __m128i b = _mm_add_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)), _mm_load_si128(hk + 1));
  // Words 8-9 in the low lane; the high lane is 0 + 0 and its product adds nothing.
  const __m128i c = _mm_add_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 32)), _mm_load_si128(hk + 2));
  const __m128i s = _mm_add_epi64(_mm_add_epi64(_mm_mul_epu32(a, _mm_srli_epi64(a, 32)),
                                                _mm_mul_epu32(b, _mm_srli_epi64(b, 32))),
                                  _mm_mul_epu32(c, _mm_srli_epi64(c, 32)));
  std::uint64_t h = static_cast<std::uint64_t>(_mm_cvtsi128_si64(s)) +
                    static_cast<std::uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
  h ^= h >> 32;
  h *= 0x9E3779B97F4A7C15ULL;
  return h ^ (h >> 29);
}

inline std::uint32_t FlowTable::alt_bucket(std::uint32_t bucket, std::uint16_t sig) const noexcept {
  return (bucket ^ ((std::uint32_t{sig} | 1U) * 0x5BD1E995U)) & bucket_mask_;
}

void FlowTable::lookup_bulk(const FlowKey* keys, unsigned n, FlowEntry** out) noexcept {
  std::uint32_t b1[64], b2[64];
  std::uint16_t sig[64];
  n = std::min(n, 64U);
  // Stage 1: hash, prefetch both candidate bucket lines.
  for (unsigned i = 0; i < n; ++i) {
    const std::uint64_t h = hash(keys[i]);
    const std::uint32_t x = static_cast<std::uint32_t>(h >> 32) & bucket_mask_;
    const auto sg = static_cast<std::uint16_t>(h >> 8);
    const std::uint32_t y = alt_bucket(x, sg);
    b1[i] = x, b2[i] = y, sig[i] = sg;
    prefetch(&buckets_[x]);
    prefetch(&buckets_[y]);
  }
  // Stage 2: the first signature match of a used slot in either bucket (8 signatures compared
  // at once; both buckets' masks merged, the first bucket's bits low), prefetch its entry.
  std::uint32_t cand[64];
  for (unsigned i = 0; i < n; ++i) {
    const __m128i want = _mm_set1_epi16(static_cast<short>(sig[i]));
    const Bucket& x = buckets_[b1[i]];
    const Bucket& y = buckets_[b2[i]];
    auto mask = static_cast<std::uint32_t>(_mm_movemask_epi8(
                    _mm_cmpeq_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(x.sig)), want))) |
                static_cast<std::uint32_t>(_mm_movemask_epi8(
                    _mm_cmpeq_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(y.sig)), want)))
                    << 16;
    std::uint32_t c = kEmpty;
    while (mask != 0) {
      const unsigned bit = static_cast<unsigned>(__builtin_ctz(mask));
      mask &= ~(3U << bit);
      const std::uint32_t idx = (bit < 16 ? x : y).idx[(bit & 15) / 2];
      if (idx != kEmpty) {
        c = idx;
        break;
      }
    }
    cand[i] = c;
    if (c != kEmpty) {
      // An entry is 96 bytes, so it always spans two lines (at offset 0 or 32 of the first);
      // the pipeline reads and writes all of it for every packet: fetch both.
      const auto* e = reinterpret_cast<const std::uint8_t*>(&entries_[c]);
      prefetch(e);
      prefetch(e + sizeof(FlowEntry) - 1);
    }
  }
  // Stage 3: compare keys; on a signature collision, scan every match.
  for (unsigned i = 0; i < n; ++i) {
    FlowEntry* hit = nullptr;
    if (cand[i] != kEmpty) [[likely]] {
      if (entries_[cand[i]].key == keys[i]) [[likely]] {
        hit = &entries_[cand[i]];
      } else {
        for (const std::uint32_t bi : {b1[i], b2[i]}) {
          const Bucket& b = buckets_[bi];
          for (unsigned s = 0; s < kSlots; ++s)
            if (b.idx[s] != kEmpty && b.sig[s] == sig[i] && entries_[b.idx[s]].key == keys[i])
              hit = &entries_[b.idx[s]];
        }
      }
    }
    out[i] = hit;
  }
}

std::uint64_t FlowTable::hash_of(const FlowKey& key) const noexcept { return hash(key); }

FlowEntry* FlowTable::lookup(const FlowKey& key) noexcept {
  FlowEntry* e = nullptr;
  lookup_bulk(&key, 1, &e);
  return e;
}

// Identity → flow count, linear probing. A slot, once taken by an identity, stays its own (the
// count may fall to 0), so a probe ends at the first never-used slot (identity 0 is invalid,
// DESIGN.md §2) and there are no tombstones.
bool FlowTable::quota_add(std::uint32_t identity, int delta) noexcept {
  if (quota_ == nullptr) return true;
  if (identity == 0) return delta < 0;
  std::uint32_t i = (identity * 0x9E3779B1U) & quota_mask_;
  for (std::uint32_t probe = 0; probe <= quota_mask_; ++probe, i = (i + 1) & quota_mask_) {
    QuotaSlot& q = quota_[i];
    if (q.identity == identity) {
      if (delta > 0 && q.count >= quota_limit_) return false;
      q.count = static_cast<std::uint32_t>(static_cast<std::int64_t>(q.count) + delta);
      return true;
    }
    if (q.identity == 0) {
      if (delta < 0) return true;
      q.identity = identity;
      q.count = 1;
      return true;
    }
  }
  return false;  // every slot taken by other identities: fail closed
}

std::uint32_t FlowTable::identity_flows(std::uint32_t identity) const noexcept {
  if (quota_ == nullptr || identity == 0) return 0;
  std::uint32_t i = (identity * 0x9E3779B1U) & quota_mask_;
  for (std::uint32_t probe = 0; probe <= quota_mask_; ++probe, i = (i + 1) & quota_mask_) {
    if (quota_[i].identity == identity) return quota_[i].count;
    if (quota_[i].identity == 0) return 0;
  }
  return 0;
}

void FlowTable::set_timeouts(const FlowTimeouts& t) noexcept { timeouts_ = t; }

bool FlowTable::expired(const FlowEntry& e, std::uint64_t now) const noexcept {
  std::uint64_t t;
  switch (e.key.proto) {
    case kProtoTcp:
      switch (e.tcp) {
        case TcpState::established: t = timeouts_.tcp_established; break;
        case TcpState::fin_wait:
        case TcpState::closing:
        case TcpState::closed: t = timeouts_.tcp_closing; break;
        default: t = timeouts_.tcp_syn; break;
      }
      break;
    case kProtoUdp: t = timeouts_.udp; break;
    case kProtoIcmp:
    case kProtoIcmpv6: t = timeouts_.icmp; break;
    default: t = timeouts_.other; break;
  }
  return now > e.last_seen && now - e.last_seen > t;
}

void FlowTable::remove_at(Bucket& b, unsigned slot) noexcept {
  const std::uint32_t idx = b.idx[slot];
  b.idx[slot] = kEmpty;
  live_[idx] = 0;
  if (quota_ != nullptr) quota_add(entries_[idx].identity, -1);
  free_[free_top_++] = idx;
  --used_;
}

InsertResult FlowTable::insert(const FlowKey& key, KeyDir initiator, std::uint32_t identity,
                               std::uint64_t now, FlowEntry** entry) noexcept {
  const std::uint64_t h = hash(key);
  const std::uint32_t b1 = static_cast<std::uint32_t>(h >> 32) & bucket_mask_;
  const auto sig = static_cast<std::uint16_t>(h >> 8);
  const std::uint32_t b2 = alt_bucket(b1, sig);
  Bucket* cands[2] = {&buckets_[b1], &buckets_[b2]};

  // Power of two choices: the new flow goes to the emptier of its two buckets, which keeps
  // bucket loads far below 8 slots until the entry array itself runs out.
  Bucket* free_b = nullptr;
  unsigned free_s = 0, best_free = 0;
  for (Bucket* b : cands) {
    unsigned nfree = 0, first = 0;
    for (unsigned s = 0; s < kSlots; ++s) {
      if (b->idx[s] == kEmpty) {
        if (nfree++ == 0) first = s;
      } else if (b->sig[s] == sig && entries_[b->idx[s]].key == key) {
        *entry = &entries_[b->idx[s]];
        return InsertResult::exists;
      }
    }
    if (nfree > best_free) best_free = nfree, free_b = b, free_s = first;
  }
  if (free_b == nullptr || free_top_ == 0) {
    // Reclaim expired flows in the two candidate buckets: never a live one.
    for (Bucket* b : cands)
      for (unsigned s = 0; s < kSlots; ++s)
        if (b->idx[s] != kEmpty && expired(entries_[b->idx[s]], now)) {
          remove_at(*b, s);
          if (free_b == nullptr) free_b = b, free_s = s;
        }
    if (free_b == nullptr || free_top_ == 0) return InsertResult::table_full;
  }
  if (quota_limit_ != 0 && !quota_add(identity, +1)) return InsertResult::quota_exceeded;

  const std::uint32_t idx = free_[--free_top_];
  FlowEntry& e = entries_[idx];
  e = FlowEntry{};
  e.key = key;
  e.identity = identity;
  e.initiator = initiator;
  e.last_seen = now;
  e.tcp = TcpState::none;
  live_[idx] = 1;
  free_b->sig[free_s] = sig;
  free_b->idx[free_s] = idx;
  ++used_;
  *entry = &e;
  return InsertResult::inserted;
}

void FlowTable::erase(FlowEntry* e) noexcept {
  const std::uint64_t h = hash(e->key);
  const std::uint32_t b1 = static_cast<std::uint32_t>(h >> 32) & bucket_mask_;
  const auto sig = static_cast<std::uint16_t>(h >> 8);
  const auto idx = static_cast<std::uint32_t>(e - entries_);
  for (const std::uint32_t bi : {b1, alt_bucket(b1, sig)}) {
    Bucket& b = buckets_[bi];
    for (unsigned s = 0; s < kSlots; ++s)
      if (b.idx[s] == idx) {
        remove_at(b, s);
        return;
      }
  }
}

unsigned FlowTable::age(std::uint64_t now, unsigned buckets, std::uint64_t revision, StaleFlowHook stale) noexcept {
  unsigned expired_n = 0;
  const bool known = revision != kUnknownRevision;
  const auto rev = static_cast<std::uint32_t>(revision);
  unsigned stale_left = stale.budget != 0 ? stale.budget : ~0u;
  for (unsigned i = 0; i < buckets && stale_left != 0; ++i) {
    if (age_cursor_ == 0) {  // a round begins
      round_rev_ = rev;
      round_clean_ = known;
    }
    round_clean_ = round_clean_ && known && rev == round_rev_;
    Bucket& b = buckets_[age_cursor_];
    age_cursor_ = (age_cursor_ + 1) & bucket_mask_;
    for (unsigned s = 0; s < kSlots; ++s) {
      if (b.idx[s] == kEmpty) continue;
      FlowEntry& e = entries_[b.idx[s]];
      if (expired(e, now)) {
        remove_at(b, s);
        ++expired_n;
        continue;
      }
      if (known && stale.fn != nullptr && e.revision != rev) {
        if (stale_left != 0) --stale_left;  // this bucket is finished even past the budget
        if (stale.fn(stale.ctx, e)) {
          remove_at(b, s);  // revoked by the current revision
          continue;
        }
      }
      if (e.revision != round_rev_) round_clean_ = false;
    }
    if (age_cursor_ == 0) {  // the round is complete
      clean_valid_ = round_clean_;
      clean_rev_ = round_rev_;
    }
  }
  return expired_n;
}

std::uint32_t FlowTable::clear() noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t bi = 0; bi <= bucket_mask_; ++bi)
    for (unsigned s = 0; s < kSlots; ++s)
      if (buckets_[bi].idx[s] != kEmpty) {
        remove_at(buckets_[bi], s);
        ++n;
      }
  return n;
}

TcpVerdict FlowTable::track_tcp(FlowEntry& e, KeyDir dir, std::uint8_t f) noexcept {
  const bool from_init = dir == e.initiator;
  const bool syn = f & kSyn, ack = f & kAck, fin = f & kFin, rst = f & kRst;
  if (syn && fin) return TcpVerdict::invalid;  // no stack sends SYN+FIN: a scan or evasion
  if (rst) {
    e.tcp = TcpState::closed;
    return TcpVerdict::ok;
  }
  switch (e.tcp) {
    case TcpState::none:
      if (from_init && syn && !ack) {
        e.tcp = TcpState::syn_sent;
        return TcpVerdict::ok;
      }
      return TcpVerdict::invalid;
    case TcpState::syn_sent:
      if (from_init) return (syn && !ack) ? TcpVerdict::ok : TcpVerdict::invalid;  // retransmit
      if (syn && ack) {
        e.tcp = TcpState::syn_received;
        return TcpVerdict::ok;
      }
      return TcpVerdict::invalid;
    case TcpState::syn_received:
      if (!from_init) return (syn && ack) ? TcpVerdict::ok : TcpVerdict::invalid;
      if (syn) return TcpVerdict::invalid;
      if (ack) {
        e.tcp = fin ? TcpState::fin_wait : TcpState::established;
        if (fin) e.fin_seen |= static_cast<std::uint8_t>(1U << static_cast<unsigned>(dir));
        return TcpVerdict::ok;
      }
      return TcpVerdict::invalid;
    case TcpState::established:
    case TcpState::fin_wait:
      if (syn) return TcpVerdict::invalid;
      if (fin) {
        e.fin_seen |= static_cast<std::uint8_t>(1U << static_cast<unsigned>(dir));
        e.tcp = e.fin_seen == 3 ? TcpState::closing : TcpState::fin_wait;
      }
      return TcpVerdict::ok;
    case TcpState::closing:
      return syn ? TcpVerdict::invalid : TcpVerdict::ok;
    case TcpState::closed:
      // The 4-tuple reused for a new connection after a reset.
      if (from_init && syn && !ack) {
        e.tcp = TcpState::syn_sent;
        e.fin_seen = 0;
        return TcpVerdict::ok;
      }
      return TcpVerdict::invalid;
  }
  return TcpVerdict::invalid;
}

}  // namespace zt::dp

#include "zt/dataplane/capture.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <rte_errno.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace zt::dp {

namespace {

constexpr unsigned kDrainBurst = 64;
constexpr std::uint16_t kPrivSize = (sizeof(CaptureMeta) + RTE_MBUF_PRIV_ALIGN - 1) & ~(RTE_MBUF_PRIV_ALIGN - 1);

CaptureMeta& meta_of(rte_mbuf* m) noexcept { return *static_cast<CaptureMeta*>(rte_mbuf_to_priv(m)); }

// pcapng (draft-ietf-opsawg-pcapng): little-endian host order, blocks padded to 32 bits.
class Block {
 public:
  explicit Block(std::uint32_t type) { u32(type), u32(0); }
  void u16(std::uint16_t v) { raw(&v, 2); }
  void u32(std::uint32_t v) { raw(&v, 4); }
  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  void pad() {
    while (buf_.size() % 4 != 0) buf_.push_back(0);
  }
  void option(std::uint16_t code, const void* p, std::size_t n) {
    u16(code), u16(static_cast<std::uint16_t>(n)), raw(p, n), pad();
  }
  void option(std::uint16_t code, const std::string& s) { option(code, s.data(), s.size()); }
  void end_options() { u16(0), u16(0); }
  // Fills both length fields; returns the bytes to write.
  const std::vector<std::uint8_t>& finish() {
    pad();
    const auto total = static_cast<std::uint32_t>(buf_.size() + 4);
    u32(total);
    std::memcpy(buf_.data() + 4, &total, 4);
    return buf_;
  }

 private:
  std::vector<std::uint8_t> buf_;
};

bool put(std::FILE* f, const std::vector<std::uint8_t>& b) { return std::fwrite(b.data(), 1, b.size(), f) == b.size(); }

std::string comment(const CaptureMeta& m) {
  const auto r = static_cast<rules::DropReason>(m.drop);
  if (r == rules::DropReason::none) return fmt::format("forwarded (worker {})", m.worker);
  return fmt::format("dropped: {} - {} (worker {})", rules::to_string(r), rules::describe(r), m.worker);
}

}  // namespace

void CaptureTap::copy(const rte_mbuf* m, rules::DropReason drop, unsigned in_port, std::int64_t now_ns,
                      std::uint32_t snaplen) noexcept {
  rte_mbuf* c = rte_pktmbuf_alloc(pool_);
  if (c == nullptr) {
    lost_.store(lost_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  const std::uint32_t len = std::min<std::uint32_t>(rte_pktmbuf_pkt_len(m), snaplen);
  auto* dst = rte_pktmbuf_mtod(c, std::uint8_t*);
  const void* src = rte_pktmbuf_read(m, 0, len, dst);
  if (src != nullptr && src != dst) std::memcpy(dst, src, len);
  c->data_len = static_cast<std::uint16_t>(len);
  c->pkt_len = len;
  CaptureMeta& meta = meta_of(c);
  meta.time_ns = now_ns;
  meta.orig_len = rte_pktmbuf_pkt_len(m);
  meta.drop = static_cast<std::uint16_t>(drop);
  meta.port = static_cast<std::uint8_t>(in_port);
  meta.worker = worker_;
  if (rte_ring_sp_enqueue(ring_, c) != 0) {
    rte_pktmbuf_free(c);
    lost_.store(lost_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return;
  }
  captured_.store(captured_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

std::expected<std::unique_ptr<Capture>, std::string> Capture::create(const CaptureConfig& cfg) {
  if (cfg.workers == 0 || cfg.workers > 255) return std::unexpected("capture: expected 1 to 255 workers");
  if (cfg.max_snaplen < 64) return std::unexpected("capture: max_snaplen below 64 bytes");
  std::unique_ptr<Capture> c(new Capture());
  c->cfg_ = cfg;
  const auto pool_name = cfg.name + "_cap";
  c->pool_ = rte_pktmbuf_pool_create(pool_name.c_str(), cfg.pool_size, std::min(cfg.pool_size / 8, 128u),
                                     kPrivSize, static_cast<std::uint16_t>(cfg.max_snaplen + RTE_PKTMBUF_HEADROOM),
                                     cfg.socket);
  if (c->pool_ == nullptr)
    return std::unexpected(fmt::format("capture: mbuf pool '{}' ({} x {} B): {}", pool_name, cfg.pool_size,
                                       cfg.max_snaplen, rte_strerror(rte_errno)));
  for (unsigned w = 0; w < cfg.workers; ++w) {
    auto t = std::make_unique<CaptureTap>();
    const auto rname = fmt::format("{}_cap{}", cfg.name, w);
    t->ring_ = rte_ring_create(rname.c_str(), rte_align32pow2(cfg.ring_depth + 1), cfg.socket,
                               RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (t->ring_ == nullptr)
      return std::unexpected(fmt::format("capture: ring '{}': {}", rname, rte_strerror(rte_errno)));
    t->pool_ = c->pool_;
    t->worker_ = static_cast<std::uint8_t>(w);
    c->taps_.push_back(std::move(t));
  }
  return c;
}

Capture::~Capture() {
  disarm();
  {
    std::lock_guard lk(mu_);
    drain_locked(false);
    if (out_ != nullptr) std::fclose(out_);
  }
  for (auto& t : taps_) rte_ring_free(t->ring_);
  rte_mempool_free(pool_);
}

void Capture::disarm() noexcept {
  for (auto& t : taps_) t->mode_.store(0, std::memory_order_relaxed);
}

std::expected<void, std::string> Capture::start(const CaptureRequest& r) {
  std::lock_guard lk(mu_);
  if (st_.active) return std::unexpected(fmt::format("capture: already capturing to '{}' (capture stop first)", st_.file));
  const std::uint16_t snap = r.snaplen == 0 ? cfg_.max_snaplen : r.snaplen;
  if (snap > cfg_.max_snaplen || snap < 14)
    return std::unexpected(fmt::format("capture: snaplen {}: expected 14 to {}", snap, cfg_.max_snaplen));
  drain_locked(false);  // copies a late worker queued after the last stop
  const int fd = ::open(r.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return std::unexpected(fmt::format("capture: cannot create '{}': {}", r.file, std::strerror(errno)));
  out_ = ::fdopen(fd, "w");
  if (out_ == nullptr) {
    ::close(fd);
    return std::unexpected(fmt::format("capture: '{}': {}", r.file, std::strerror(errno)));
  }
  // Section header: byte-order magic, version 1.0, section length unknown; shb_userappl.
  Block shb(0x0A0D0D0A);
  shb.u32(0x1A2B3C4D), shb.u16(1), shb.u16(0), shb.u32(0xffffffff), shb.u32(0xffffffff);
  shb.option(4, std::string("ztgate"));
  shb.end_options();
  bool ok = put(out_, shb.finish());
  std::vector<std::string> names = r.port_names;
  if (names.empty()) names = {"port0", "port1"};
  for (const auto& n : names) {
    Block idb(1);
    idb.u16(1), idb.u16(0), idb.u32(snap);  // LINKTYPE_ETHERNET
    idb.option(2, n);                        // if_name
    const std::uint8_t ns = 9;               // if_tsresol: 10^-9
    idb.option(9, &ns, 1);
    idb.end_options();
    ok = ok && put(out_, idb.finish());
  }
  if (!ok || std::fflush(out_) != 0) {
    std::fclose(out_);
    out_ = nullptr;
    return std::unexpected(fmt::format("capture: writing '{}': {}", r.file, std::strerror(errno)));
  }
  interfaces_ = static_cast<unsigned>(names.size());
  snaplen_ = snap;
  st_ = {};
  st_.active = true;
  st_.file = r.file;
  st_.drops_only = r.drops_only;
  st_.count = r.count;
  lost_at_start_.clear();
  for (auto& t : taps_) lost_at_start_.push_back(t->lost());
  const std::uint32_t mode = CaptureTap::kArmed | (r.drops_only ? CaptureTap::kDropsOnly : 0) |
                             (std::uint32_t{snap} << CaptureTap::kSnapShift);
  for (auto& t : taps_) t->mode_.store(mode, std::memory_order_relaxed);
  return {};
}

bool Capture::write_packet(const rte_mbuf* m, const CaptureMeta& meta) {
  Block epb(6);
  const std::uint32_t iface = meta.port < interfaces_ ? meta.port : 0;
  const auto ts = static_cast<std::uint64_t>(meta.time_ns);
  const std::uint32_t len = rte_pktmbuf_data_len(m);
  epb.u32(iface), epb.u32(static_cast<std::uint32_t>(ts >> 32)), epb.u32(static_cast<std::uint32_t>(ts));
  epb.u32(len), epb.u32(meta.orig_len);
  epb.raw(rte_pktmbuf_mtod(m, const void*), len);
  epb.pad();
  epb.option(1, comment(meta));        // opt_comment: the verdict
  const std::uint32_t flags = 1;       // epb_flags: inbound
  epb.option(2, &flags, 4);
  epb.end_options();
  return put(out_, epb.finish());
}

std::size_t Capture::drain_locked(bool write) {
  std::size_t written = 0;
  rte_mbuf* burst[kDrainBurst];
  for (auto& t : taps_) {
    unsigned n;
    while ((n = rte_ring_sc_dequeue_burst(t->ring_, reinterpret_cast<void**>(burst), kDrainBurst, nullptr)) > 0) {
      for (unsigned i = 0; i < n; ++i) {
        const bool want = write && out_ != nullptr && (st_.count == 0 || st_.written < st_.count);
        if (want) {
          if (write_packet(burst[i], meta_of(burst[i]))) {
            ++st_.written, ++written;
          } else {
            ++st_.write_errors;
            st_.error = std::strerror(errno);
          }
        }
        rte_pktmbuf_free(burst[i]);
      }
    }
  }
  return written;
}

void Capture::finish_locked() {
  disarm();
  drain_locked(st_.active);
  if (out_ != nullptr) {
    if (std::fclose(out_) != 0 && st_.error.empty()) st_.error = std::strerror(errno), ++st_.write_errors;
    out_ = nullptr;
  }
  st_.lost = 0;
  for (std::size_t w = 0; w < taps_.size() && w < lost_at_start_.size(); ++w)
    st_.lost += taps_[w]->lost() - lost_at_start_[w];
  st_.active = false;
}

std::size_t Capture::poll() {
  std::lock_guard lk(mu_);
  if (!st_.active) return 0;
  const std::size_t n = drain_locked(true);
  if (out_ != nullptr) std::fflush(out_);
  if (st_.count != 0 && st_.written >= st_.count) finish_locked();
  return n;
}

std::expected<CaptureStatus, std::string> Capture::stop() {
  std::lock_guard lk(mu_);
  if (!st_.active && st_.file.empty()) return std::unexpected("capture: no capture was started");
  if (st_.active) finish_locked();
  return st_;
}

CaptureStatus Capture::status() const {
  std::lock_guard lk(mu_);
  CaptureStatus s = st_;
  if (s.active) {
    s.lost = 0;
    for (std::size_t w = 0; w < taps_.size() && w < lost_at_start_.size(); ++w) s.lost += taps_[w]->lost() - lost_at_start_[w];
  }
  return s;
}

}  // namespace zt::dp

// A multi-segment rte_mbuf chain built by hand, without EAL or mempool: enough for
// rte_pktmbuf_read() and so for parse_mbuf(). Each segment lives in its own allocation of exactly
// its size, so AddressSanitizer catches a read that crosses a segment's end.
#pragma once

#include <rte_mbuf.h>

#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace zt::test {

class MbufChain {
 public:
  // Splits `frame` before each offset in `cuts` (strictly increasing, each in (0, size)).
  MbufChain(std::span<const std::uint8_t> frame, std::span<const std::size_t> cuts)
      : bufs_(cuts.size() + 1), mbufs_(cuts.size() + 1) {
    std::size_t start = 0;
    for (std::size_t i = 0; i < mbufs_.size(); ++i) {
      const std::size_t stop = i < cuts.size() ? cuts[i] : frame.size();
      if (stop - start > UINT16_MAX) std::abort();  // data_len is 16 bits: cut more often
      bufs_[i].assign(frame.begin() + static_cast<long>(start),
                      frame.begin() + static_cast<long>(stop));
      rte_mbuf& m = mbufs_[i];
      m.buf_addr = bufs_[i].data();
      m.buf_len = static_cast<std::uint16_t>(bufs_[i].size());
      m.data_off = 0;
      m.data_len = static_cast<std::uint16_t>(bufs_[i].size());
      m.pkt_len = static_cast<std::uint32_t>(bufs_[i].size());
      m.nb_segs = 1;
      m.next = i + 1 < mbufs_.size() ? &mbufs_[i + 1] : nullptr;
      start = stop;
    }
    mbufs_[0].pkt_len = static_cast<std::uint32_t>(frame.size());
    mbufs_[0].nb_segs = static_cast<std::uint16_t>(mbufs_.size());
  }
  MbufChain(const MbufChain&) = delete;
  MbufChain& operator=(const MbufChain&) = delete;

  const rte_mbuf* head() const { return mbufs_.data(); }

 private:
  std::vector<std::vector<std::uint8_t>> bufs_;
  std::vector<rte_mbuf> mbufs_;
};

}  // namespace zt::test

// Schema round trip and the framing limits (DESIGN.md §5).
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "zt/controlplane/framing.hpp"
#include "ztgate.pb.h"

namespace zt::cp {
namespace {

using namespace std::chrono_literals;

struct SocketPair {
  int fd[2];
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~SocketPair() {
    ::close(fd[0]);
    if (fd[1] >= 0) ::close(fd[1]);
  }
};

v1::ServerMessage sample_push() {
  v1::ServerMessage m;
  auto* p = m.mutable_push();
  p->set_revision(42);
  p->set_nonce("n-1");
  p->mutable_bundle()->set_digest("abc");
  p->mutable_bundle()->set_signature(std::string(64, '\x01'));
  p->mutable_bundle()->set_algorithm(v1::SIGNATURE_ALGORITHM_ED25519);
  auto* s = p->mutable_keys()->add_secrets();
  s->set_epoch(7);
  s->mutable_sv()->set_ciphertext(std::string(48, '\x02'));
  return m;
}

TEST(Schema, PushSurvivesAFramedRoundTripOverASocket) {
  SocketPair sp;
  FdStream a(sp.fd[0]), b(sp.fd[1]);
  ASSERT_TRUE(write_message(a, sample_push()).has_value());
  v1::ServerMessage got;
  ASSERT_TRUE(read_message(b, got, 1000ms).has_value());
  ASSERT_TRUE(got.has_push());
  EXPECT_EQ(got.push().revision(), 42u);
  EXPECT_EQ(got.push().nonce(), "n-1");
  EXPECT_EQ(got.push().bundle().signature(), std::string(64, '\x01'));
  EXPECT_EQ(got.push().keys().secrets(0).epoch(), 7u);
}

TEST(Schema, NackCarriesCodeMessageAndResource) {
  v1::ClientMessage m;
  auto* n = m.mutable_nack();
  n->set_revision(9);
  n->set_code(v1::NACK_CODE_INVALID_POLICY);
  n->set_message("rules.yaml:3:5: unknown identity 'web-b'");
  n->set_resource("rules.yaml:3:5");
  n->set_enforced_revision(8);
  auto frame = encode_frame(m);
  ASSERT_TRUE(frame.has_value());
  v1::ClientMessage back;
  ASSERT_TRUE(back.ParseFromArray(frame->data() + kFrameHeaderLen, static_cast<int>(frame->size() - kFrameHeaderLen)));
  EXPECT_EQ(back.nack().code(), v1::NACK_CODE_INVALID_POLICY);
  EXPECT_EQ(back.nack().resource(), "rules.yaml:3:5");
  EXPECT_EQ(back.nack().enforced_revision(), 8u);
}

TEST(Framing, HeaderIsFourBytesBigEndianLength) {
  v1::ClientMessage m;
  m.mutable_ack()->set_revision(1);
  auto frame = encode_frame(m);
  ASSERT_TRUE(frame.has_value());
  const std::size_t body = frame->size() - 4;
  EXPECT_EQ(static_cast<unsigned char>((*frame)[0]), 0);
  EXPECT_EQ(static_cast<unsigned char>((*frame)[3]), body);
}

TEST(Framing, SenderRefusesAMessageAboveTheLimit) {
  auto r = encode_frame(sample_push(), 16);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("exceeds the 16-byte frame limit"), std::string::npos) << r.error().message;
}

TEST(Framing, ReceiverRefusesAnOversizedAnnouncementBeforeReadingTheBody) {
  SocketPair sp;
  // 0x7fffffff bytes announced, none sent: the reader must refuse at once, not wait or allocate.
  const unsigned char hdr[4] = {0x7f, 0xff, 0xff, 0xff};
  ASSERT_EQ(::write(sp.fd[0], hdr, 4), 4);
  FdStream b(sp.fd[1]);
  v1::ServerMessage got;
  auto r = read_message(b, got, 1000ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("above the"), std::string::npos) << r.error().message;
}

TEST(Framing, TruncatedFrameIsAnErrorNotAHang) {
  SocketPair sp;
  auto frame = encode_frame(sample_push());
  ASSERT_TRUE(frame.has_value());
  ASSERT_EQ(::write(sp.fd[0], frame->data(), frame->size() - 5), static_cast<ssize_t>(frame->size() - 5));
  ::close(sp.fd[0]);
  sp.fd[0] = ::dup(sp.fd[1]);  // keep the destructor's close balanced
  FdStream b(sp.fd[1]);
  v1::ServerMessage got;
  auto r = read_message(b, got, 1000ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("truncated frame"), std::string::npos) << r.error().message;
}

TEST(Framing, GarbageBodyIsRefusedWithTheMessageType) {
  SocketPair sp;
  const unsigned char bad[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
  ASSERT_EQ(::write(sp.fd[0], bad, sizeof bad), static_cast<ssize_t>(sizeof bad));
  FdStream b(sp.fd[1]);
  v1::ServerMessage got;
  auto r = read_message(b, got, 1000ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("zt.cp.v1.ServerMessage"), std::string::npos) << r.error().message;
}

TEST(Framing, SilentPeerTimesOut) {
  SocketPair sp;
  FdStream b(sp.fd[1]);
  v1::ServerMessage got;
  auto r = read_message(b, got, 100ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("timed out"), std::string::npos);
}

}  // namespace
}  // namespace zt::cp

// The plain WebSocket session (codec framing on a bare socket) from the wire:
// an in-process EdgeServer with fake backends, and a raw TCP client that
// writes frames byte by byte if it likes and reads what the edge writes. The
// codec's own cases are in ws_codec_test.cc; these check the session's part:
// handshake, pongs, close handshake, error closes, the idle ping, ordering.

#include "edge/plain_ws_session.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read.hpp"
#include "boost/asio/write.hpp"
#include "edge/edge_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/edge_fakes.h"

namespace chat::edge {
namespace {

namespace net = boost::asio;
using ::chat::edge::testing::ServingDirectory;
using ::chat::edge::testing::ServingMessageBackend;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;

std::string Frame(uint8_t opcode, std::string_view payload, bool fin = true, uint8_t rsv = 0,
                  bool masked = true) {
  static constexpr uint8_t kKey[4] = {0x11, 0x80, 0xfe, 0x42};
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  const uint8_t mask_bit = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(mask_bit | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size()));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i) {
      out.push_back(static_cast<char>(uint64_t{payload.size()} >> (8 * i)));
    }
  }
  if (masked) out.append(reinterpret_cast<const char*>(kKey), 4);
  for (size_t i = 0; i < payload.size(); ++i) {
    out.push_back(static_cast<char>(payload[i] ^ (masked ? kKey[i % 4] : 0)));
  }
  return out;
}

std::string CloseFrame(uint16_t code, std::string_view reason = "") {
  std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  payload.append(reason);
  return Frame(kClose, payload);
}

struct ServerFrame {
  uint8_t opcode = 0;
  bool fin = false;
  std::string payload;
  uint16_t close_code() const {
    return payload.size() < 2 ? 0
                              : static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                                      static_cast<uint8_t>(payload[1]));
  }
};

// A WebSocket client with nothing between the test and the socket.
class RawClient {
 public:
  absl::StatusOr<std::string> Handshake(int port, std::string_view extra_headers = "",
                                        std::string_view target = "/?name=alice") {
    boost::system::error_code ec;
    socket_.connect({net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
    if (ec) return absl::UnavailableError(ec.message());
    timeval tv{5, 0};  // every read has a deadline
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string request = "GET ";
    request.append(target).append(
        " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    request.append(extra_headers).append("\r\n");
    Send(request);
    std::string head;
    char c;
    while (head.size() < 4 || head.substr(head.size() - 4) != "\r\n\r\n") {
      if (net::read(socket_, net::buffer(&c, 1), ec) != 1) {
        return absl::DeadlineExceededError(absl::StrCat("handshake: ", ec.message(), ": ", head));
      }
      head.push_back(c);
    }
    return head;
  }
  absl::StatusOr<std::string> Upgrade(int port) {
    return Handshake(
        port, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
  }

  void Send(std::string_view bytes) {
    boost::system::error_code ec;
    net::write(socket_, net::buffer(bytes.data(), bytes.size()), ec);
  }
  // One byte per write, with a pause now and then so that the edge sees them
  // in separate reads.
  void SendByteByByte(std::string_view bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      Send(bytes.substr(i, 1));
      if (i % 3 == 0) std::this_thread::sleep_for(1ms);
    }
  }

  absl::StatusOr<ServerFrame> Read() {
    ServerFrame frame;
    uint8_t head[2];
    if (!ReadExactly(head, 2)) return absl::UnavailableError("closed");
    frame.fin = (head[0] & 0x80) != 0;
    frame.opcode = head[0] & 0x0F;
    if ((head[1] & 0x80) != 0) return absl::InternalError("a server frame is masked");
    uint64_t size = head[1] & 0x7F;
    if (size >= 126) {
      uint8_t ext[8];
      const size_t n = size == 126 ? 2 : 8;
      if (!ReadExactly(ext, n)) return absl::UnavailableError("closed");
      size = 0;
      for (size_t i = 0; i < n; ++i) size = (size << 8) | ext[i];
    }
    frame.payload.resize(size);
    if (size > 0 && !ReadExactly(frame.payload.data(), size)) {
      return absl::UnavailableError("closed");
    }
    return frame;
  }
  // The next frame that is not a hello/ping action of the protocol? No: the
  // next frame of `opcode`, skipping others.
  absl::StatusOr<ServerFrame> ReadOpcode(uint8_t opcode) {
    for (int i = 0; i < 100; ++i) {
      auto frame = Read();
      if (!frame.ok() || frame->opcode == opcode) return frame;
    }
    return absl::NotFoundError("no such frame");
  }
  // Hangs up, as a client does once the close handshake is over.
  void Hangup() {
    boost::system::error_code ec;
    socket_.close(ec);
  }
  // True once the edge closed the TCP connection (EOF, not a timeout).
  bool ReadsEof() {
    char buffer[4096];
    for (int i = 0; i < 1000; ++i) {
      boost::system::error_code ec;
      socket_.read_some(net::buffer(buffer), ec);
      if (ec == net::error::eof) return true;
      if (ec) return false;  // a timeout or a reset
    }
    return false;
  }

 private:
  bool ReadExactly(void* out, size_t n) {
    boost::system::error_code ec;
    return net::read(socket_, net::buffer(out, n), ec) == n;
  }

  net::io_context io_;
  net::ip::tcp::socket socket_{io_};
};

class PlainWsSessionTest : public ::testing::Test {
 protected:
  void Start(int idle_timeout_s = 600, std::chrono::seconds max_age = 7200s) {
    EdgeOptions options;
    options.listen = "127.0.0.1:0";
    options.edge_id = "e1";
    options.threads = 2;
    options.close_grace = 2s;
    options.logic.max_message_bytes = 4096;
    options.logic.idle_timeout_s = idle_timeout_s;
    options.logic.max_inflight_sends = max_inflight_sends_;
    options.max_connection_age = max_age;
    EdgeBackends backends;
    backends.directory = &directory_;
    backends.messages = &messages_;
    server_ = std::make_unique<EdgeServer>(options, backends);
    ASSERT_TRUE(server_->Start().ok());
  }
  void SetUp() override { Start(); }

  // A client past its hello.
  std::unique_ptr<RawClient> Connected() {
    auto client = std::make_unique<RawClient>();
    auto head = client->Upgrade(server_->port());
    EXPECT_TRUE(head.ok()) << head.status();
    auto hello = client->Read();
    EXPECT_TRUE(hello.ok()) << hello.status();
    if (hello.ok()) {
      EXPECT_THAT(hello->payload, HasSubstr("\"hello\""));
    }
    return client;
  }

  // The close frame the edge sends, then its FIN.
  void ExpectClosedWith(RawClient& client, uint16_t code) {
    auto close = client.ReadOpcode(kClose);
    ASSERT_TRUE(close.ok()) << close.status();
    EXPECT_EQ(close->close_code(), code);
    EXPECT_TRUE(client.ReadsEof());
    client.Hangup();
  }

  void ExpectUnregistered(size_t n) {
    EXPECT_TRUE(directory_.WaitFor([&] { return directory_.unregistered.size() >= n; }));
  }

  int max_inflight_sends_ = 256;  // read by Start
  ServingDirectory directory_;
  ServingMessageBackend messages_;
  std::unique_ptr<EdgeServer> server_;
};

TEST_F(PlainWsSessionTest, ReadsPausedBySendsInFlightResumeWithNothingLostOrReordered) {
  max_inflight_sends_ = 4;
  Start();
  auto client = Connected();
  // Twelve sends and a ping in one write: the edge reads them together, and
  // what follows the fourth send waits, unparsed, while reads are paused.
  constexpr int kSends = 12;
  std::string burst;
  for (int i = 0; i < kSends; ++i) {
    burst += Frame(kText, absl::StrCat(R"({"action":"send","send_to":"bob","message":"m)", i,
                                       R"(","request_id":"r)", i, R"("})"));
  }
  burst += Frame(kPing, "p");
  client->Send(burst);

  ASSERT_TRUE(messages_.WaitFor([&] { return messages_.calls.size() >= 4; }));
  messages_.Locked([&] { EXPECT_EQ(messages_.calls.size(), 4u) << "a fifth send while paused"; });
  // Answered one at a time, oldest first: reading resumes below half the
  // limit and the rest come, in order.
  SendResult ok;
  ok.status = absl::OkStatus();
  ok.conversation = "alice:bob";
  ok.delivered = 1;
  for (int i = 0; i < kSends; ++i) {
    ASSERT_TRUE(messages_.WaitFor([&] { return messages_.calls.size() > static_cast<size_t>(i); }))
        << "send " << i << " never reached the backend";
    ok.id = absl::StrCat("id", i);
    ok.seq = ok.useq = i + 1;
    messages_.AnswerSend(i, ok);
  }
  messages_.Locked([&] {
    ASSERT_EQ(messages_.calls.size(), static_cast<size_t>(kSends));
    for (int i = 0; i < kSends; ++i) {
      EXPECT_EQ(messages_.calls[i].send.message, absl::StrCat("m", i));
    }
  });
  int next = 0;
  bool ponged = false;
  while (next < kSends || !ponged) {
    auto frame = client->Read();
    ASSERT_TRUE(frame.ok()) << frame.status() << " after " << next << " answers";
    if (frame->opcode == kPong) {
      EXPECT_EQ(frame->payload, "p");
      ponged = true;
      continue;
    }
    ASSERT_EQ(frame->opcode, kText);
    ASSERT_THAT(frame->payload, HasSubstr("\"sent\""));
    EXPECT_THAT(frame->payload, HasSubstr(absl::StrCat("\"request_id\":\"r", next, "\"")));
    ++next;
  }
}

TEST_F(PlainWsSessionTest, HandshakeAnswersWithTheAcceptKeyThenHello) {
  RawClient client;
  auto head = client.Upgrade(server_->port());
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_THAT(*head, ::testing::StartsWith("HTTP/1.1 101 Switching Protocols\r\n"));
  EXPECT_THAT(*head, HasSubstr("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  EXPECT_THAT(*head, HasSubstr("Upgrade: websocket\r\n"));
  EXPECT_THAT(*head, HasSubstr("Server: chat-edge\r\n"));
  EXPECT_THAT(*head, ::testing::Not(HasSubstr("Sec-WebSocket-Protocol")));
  auto hello = client.Read();
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(hello->opcode, kText);
  EXPECT_TRUE(hello->fin);
  EXPECT_THAT(hello->payload, HasSubstr("\"hello\""));
}

TEST_F(PlainWsSessionTest, HandshakeWithoutKeyIs400AndWrongVersionIs426) {
  RawClient no_key;
  auto head = no_key.Handshake(server_->port(), "Sec-WebSocket-Version: 13\r\n");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_THAT(*head, ::testing::StartsWith("HTTP/1.1 400"));
  RawClient old;
  head =
      old.Handshake(server_->port(),
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_THAT(*head, ::testing::StartsWith("HTTP/1.1 426"));
  EXPECT_THAT(*head, HasSubstr("Sec-WebSocket-Version: 13\r\n"));
  // Both were registered before the answer; both are gone again.
  ExpectUnregistered(2);
}

TEST_F(PlainWsSessionTest, PingIsAnsweredWithItsPayload) {
  auto client = Connected();
  client->Send(Frame(kPing, "are you there"));
  auto pong = client->Read();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->opcode, kPong);
  EXPECT_EQ(pong->payload, "are you there");
  client->SendByteByByte(Frame(kPing, ""));
  pong = client->Read();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->opcode, kPong);
  EXPECT_EQ(pong->payload, "");
  // An unsolicited pong is ignored.
  client->Send(Frame(kPong, "x") + Frame(kText, R"({"action":"ping","request_id":"after"})"));
  auto answer = client->Read();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(answer->payload, HasSubstr("\"after\""));
}

TEST_F(PlainWsSessionTest, FragmentsSplitAnywhereWithAPingBetweenMakeOneMessage) {
  auto client = Connected();
  const std::string text = R"({"action":"ping","request_id":"frag\u00e9 é"})";
  client->SendByteByByte(Frame(kText, text.substr(0, 7), false) + Frame(kPing, "mid") +
                         Frame(kCont, text.substr(7, 20), false) + Frame(kCont, text.substr(27)));
  auto pong = client->Read();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->opcode, kPong);
  EXPECT_EQ(pong->payload, "mid");
  auto answer = client->Read();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->opcode, kText);
  EXPECT_THAT(answer->payload, HasSubstr("\"pong\""));
  EXPECT_THAT(answer->payload, HasSubstr("frag"));
}

TEST_F(PlainWsSessionTest, ManyFramesInOneWriteAreAnsweredInOrder) {
  auto client = Connected();
  std::string frames;
  for (int i = 0; i < 40; ++i) {
    frames += Frame(kText, absl::StrCat(R"({"action":"ping","request_id":)", i, "}"));
  }
  client->Send(frames);
  for (int i = 0; i < 40; ++i) {
    auto answer = client->Read();
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_THAT(answer->payload, HasSubstr(absl::StrCat("\"request_id\":", i, "}")));
  }
}

// Frames handed to the session from another thread (as the gRPC loop does),
// inside and outside a DeliveryBatch, while the client also makes the
// session answer on its own strand: every frame arrives, once, in order.
TEST_F(PlainWsSessionTest, FramesFromAnotherThreadArriveInOrderInsideAndOutsideBatches) {
  auto client = Connected();
  std::thread other([&] {
    int n = 0;
    // Every other round in a batch, the last one too: a batch's frames are
    // written when it closes, with nothing after it to push them out.
    for (int round = 0; round < 21; ++round) {
      std::optional<DeliveryBatch> batch;
      if (round % 2 == 0) batch.emplace();
      for (int i = 0; i < 25; ++i, ++n) {
        auto frame = std::make_shared<const std::string>(absl::StrCat(R"({"n":)", n, "}"));
        server_->hub().ForAll([&](LocalConnection& c) { c.Deliver(frame); });
      }
    }
  });
  // Meanwhile the session's own strand writes too (pong answers).
  for (int i = 0; i < 20; ++i) {
    client->Send(Frame(kText, absl::StrCat(R"({"action":"ping","request_id":)", i, "}")));
  }
  other.join();
  int next = 0;
  int pongs = 0;
  while (next < 525 || pongs < 20) {
    auto frame = client->Read();
    ASSERT_TRUE(frame.ok()) << frame.status() << " after n=" << next << ", pongs " << pongs;
    if (frame->payload.find("\"pong\"") != std::string::npos) {
      ++pongs;
      continue;
    }
    ASSERT_EQ(frame->payload, absl::StrCat(R"({"n":)", next, "}"));
    ++next;
  }
}

TEST_F(PlainWsSessionTest, PeerCloseIsEchoedThenTheEdgeHangsUp) {
  auto client = Connected();
  client->Send(CloseFrame(1000, "bye"));
  ExpectClosedWith(*client, 1000);
  ExpectUnregistered(1);
  // A close without a code is answered by one without a code.
  auto second = Connected();
  second->Send(Frame(kClose, ""));
  auto close = second->ReadOpcode(kClose);
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->payload, "");
  EXPECT_TRUE(second->ReadsEof());
}

TEST_F(PlainWsSessionTest, ProtocolErrorsCloseWithTheirCodes) {
  struct Case {
    const char* what;
    std::string bytes;
    uint16_t code;
  };
  const Case cases[] = {
      {"unmasked", Frame(kText, "{}", true, 0, false), 1002},
      {"reserved bit", Frame(kText, "{}", true, 4), 1002},
      {"reserved opcode", Frame(0x3, ""), 1002},
      {"continuation alone", Frame(kCont, "x"), 1002},
      {"fragmented ping", Frame(kPing, "x", false), 1002},
      {"bad close code", CloseFrame(1005), 1002},
      {"close of one byte", Frame(kClose, "x"), 1002},
      {"invalid UTF-8", Frame(kText, "{\"a\":\"\xc3\x28\"}"), 1007},
      {"UTF-8 cut by the end", Frame(kText, "abc\xe2\x82"), 1007},
      {"bad UTF-8 close reason", CloseFrame(1000, "\xed\xa0\x80"), 1007},
      {"too big", Frame(kText, std::string(4097, 'x')), 1009},
      {"too big in fragments",
       Frame(kText, std::string(3000, 'x'), false) + Frame(kCont, std::string(1100, 'x')), 1009},
  };
  size_t n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto client = Connected();
    client->Send(c.bytes);
    ExpectClosedWith(*client, c.code);
    ExpectUnregistered(++n);
  }
}

TEST_F(PlainWsSessionTest, TooBigFrameIsRefusedAtItsHeaderAndTheCloseFrameArrives) {
  auto client = Connected();
  // Announces 1 MiB and sends a part of it: the edge answers at the header
  // and drops the rest; its close frame must not be lost to a reset.
  std::string frame = Frame(kBinary, std::string(1 << 20, 'x'));
  client->Send(frame.substr(0, 200000));
  ExpectClosedWith(*client, 1009);
}

TEST_F(PlainWsSessionTest, BinaryMessagesAreRefusedButTheConnectionStays) {
  auto client = Connected();
  client->Send(Frame(kBinary, "\x01\x02"));
  auto error = client->Read();
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_THAT(error->payload, HasSubstr("bad_request"));
  client->Send(Frame(kText, R"({"action":"ping","request_id":"still"})"));
  auto answer = client->Read();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(answer->payload, HasSubstr("\"still\""));
}

TEST_F(PlainWsSessionTest, FramesAfterTheClientsCloseAreIgnored) {
  auto client = Connected();
  client->Send(CloseFrame(1001) + Frame(kText, R"({"action":"ping","request_id":"late"})"));
  auto close = client->Read();
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->opcode, kClose);  // no answer to the late ping before it
  EXPECT_EQ(close->close_code(), 1001);
}

class PlainWsSessionIdleTest : public PlainWsSessionTest {
 protected:
  void SetUp() override { Start(/*idle_timeout_s=*/1); }
};

TEST_F(PlainWsSessionIdleTest, ASilentClientIsPingedThenDropped) {
  auto client = Connected();
  const auto start = std::chrono::steady_clock::now();
  auto ping = client->Read();
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->opcode, kPing);
  // No answer: cut at the idle timeout, without a close frame (as Beast did).
  EXPECT_TRUE(client->ReadsEof());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
  ExpectUnregistered(1);
}

TEST_F(PlainWsSessionIdleTest, AClientThatAnswersPingsStays) {
  auto client = Connected();
  const auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {
    auto ping = client->Read();
    ASSERT_TRUE(ping.ok()) << ping.status();
    ASSERT_EQ(ping->opcode, kPing);
    client->Send(Frame(kPong, ping->payload));
  }
  client->Send(Frame(kText, R"({"action":"ping","request_id":"alive"})"));
  auto answer = client->ReadOpcode(kText);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(answer->payload, HasSubstr("\"alive\""));
}

class PlainWsSessionAgeTest : public PlainWsSessionTest {
 protected:
  void SetUp() override { Start(/*idle_timeout_s=*/1, /*max_age=*/2s); }
};

TEST_F(PlainWsSessionAgeTest, TheAgeLimitClosesWith1001WhileIdleChecksGoOn) {
  // One timer serves both: pings every second (answered), then the age limit.
  auto client = Connected();
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    auto frame = client->Read();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (frame->opcode == kPing) {
      client->Send(Frame(kPong, frame->payload));
      continue;
    }
    ASSERT_EQ(frame->opcode, kClose);
    EXPECT_EQ(frame->close_code(), 1001);
    EXPECT_THAT(frame->payload, HasSubstr("age limit"));
    break;
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1500ms);
  client->Send(CloseFrame(1001));
  EXPECT_TRUE(client->ReadsEof());
  ExpectUnregistered(1);
}

TEST(PlainWsSessionSize, StaysSmall) {
  // Most of it is ConnectionLogic; the framing adds the parser and the queue.
  std::printf("sizeof(PlainWsSession) = %zu, of which ConnectionLogic %zu, WsFrameParser %zu\n",
              sizeof(PlainWsSession), sizeof(ConnectionLogic), sizeof(WsFrameParser));
  EXPECT_LE(sizeof(WsFrameParser), 80u);
  // With make_shared's control block (16 bytes), within jemalloc's 640-byte
  // class: every idle connection holds one (the next class is 768 bytes).
  EXPECT_LE(sizeof(PlainWsSession), 624u);
}

}  // namespace
}  // namespace chat::edge

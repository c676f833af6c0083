// The whole edge in-process: EdgeServer on a loopback port with fake backends
// (EdgeBackends) instead of gRPC clients, and real WebSocket clients. What is
// between the socket and the backend interfaces — handshake, registration,
// sessions, the local hub, drain — runs as in production.

#include "edge/edge_server.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/cluster.h"
#include "tests/support/ws_client.h"
#include "tests/unit/edge_fakes.h"

namespace chat::edge {
namespace {

using ::chat::edge::testing::ServingDirectory;
using ::chat::edge::testing::ServingMessageBackend;
using ::chat::testing::Frame;
using ::chat::testing::HandshakeOptions;
using ::chat::testing::HttpGet;
using ::chat::testing::RawRequest;
using ::chat::testing::WsClient;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

HandshakeOptions As(const std::string& name) {
  HandshakeOptions options;
  options.target = absl::StrCat("/?name=", name);
  return options;
}

std::string Str(const boost::json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : "";
}

class EdgeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EdgeOptions options;
    options.listen = "127.0.0.1:0";
    options.edge_id = "e1";
    options.threads = 2;
    options.close_grace = 2s;
    EdgeBackends backends;
    backends.directory = &directory_;
    backends.messages = &messages_;
    server_ = std::make_unique<EdgeServer>(options, backends);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_GT(server_->port(), 0);
  }

  // Connects `name` and returns its connection id (from hello).
  std::string Connect(WsClient& client, const std::string& name) {
    absl::Status s = client.Connect(server_->port(), As(name));
    EXPECT_TRUE(s.ok()) << s;
    return Str(client.hello().contains("connection_id") ? client.hello().at("connection_id")
                                                        : boost::json::value());
  }

  // Declared before the server: they outlive it.
  ServingDirectory directory_;
  ServingMessageBackend messages_;
  std::unique_ptr<EdgeServer> server_;
};

TEST_F(EdgeServerTest, HelloFollowsARegistrationAndAnAttach) {
  WsClient alice;
  const std::string id = Connect(alice, "alice");
  EXPECT_EQ(Str(alice.hello().at("user")), "alice");
  EXPECT_THAT(id, ::testing::StartsWith("e1-"));
  directory_.Locked([&] {
    ASSERT_EQ(directory_.registered.size(), 1u);
    EXPECT_EQ(directory_.registered[0].connection_id, id);
    EXPECT_EQ(directory_.registered[0].user, "alice");
    EXPECT_EQ(directory_.registered[0].ip, "127.0.0.1");
  });
  messages_.Locked([&] {
    ASSERT_EQ(messages_.attaches.size(), 1u);
    EXPECT_EQ(messages_.attaches[0].connection_id, id);
    EXPECT_EQ(messages_.attaches[0].after_useq, -1);
  });
}

TEST_F(EdgeServerTest, UnavailableRegistryRefusesTheHandshakeWith503AndRetryAfter) {
  directory_.Locked([&] { directory_.register_status = absl::UnavailableError("registry down"); });
  WsClient alice;
  EXPECT_FALSE(alice.Connect(server_->port(), As("alice")).ok());
  EXPECT_EQ(alice.http_status(), 503);

  // The same refusal, raw, for its headers.
  auto raw = RawRequest(server_->port(),
                        "GET /?name=bob HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_THAT(*raw, ::testing::StartsWith("HTTP/1.1 503"));
  EXPECT_THAT(*raw, HasSubstr("Retry-After: 2\r\n"));
  messages_.Locked([&] { EXPECT_TRUE(messages_.attaches.empty()) << "no session was opened"; });

  // Nothing counted as live: the registry back, the same user connects.
  directory_.Locked([&] { directory_.register_status = absl::OkStatus(); });
  WsClient again;
  Connect(again, "alice");
  auto ready = HttpGet(server_->port(), "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_THAT(ready->body, HasSubstr("\"connections\":1"));
}

TEST_F(EdgeServerTest, SendReachesTheMessageBackendAndItsAnswerComesBack) {
  WsClient alice;
  const std::string id = Connect(alice, "alice");

  ASSERT_TRUE(
      alice.SendText(R"({"action":"send","send_to":"bob","message":"hi bob","request_id":"r1"})")
          .ok());
  ASSERT_TRUE(messages_.WaitFor([&] { return messages_.calls.size() == 1; }));
  messages_.Locked([&] {
    const OutgoingSend& send = messages_.calls[0].send;
    EXPECT_EQ(send.sent_by, "alice");
    EXPECT_EQ(send.send_to, "bob");
    EXPECT_EQ(send.message, "hi bob");
    EXPECT_EQ(send.from_connection_id, id);
    EXPECT_GT(send.received_us, 0);
  });
  SendResult ok;
  ok.status = absl::OkStatus();
  ok.id = "01JD7XAAAAAAAAAAAAAAAAAAAA";
  ok.ts_ms = 1764050000123;
  ok.delivered = 1;
  ok.conversation = "alice:bob";
  ok.seq = 1;
  ok.useq = 1;
  messages_.AnswerSend(0, ok);
  auto sent = alice.ReadAction("sent");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(Str(sent->at("request_id")), "r1");
  EXPECT_EQ(Str(sent->at("id")), ok.id);
  EXPECT_EQ(sent->at("delivered").as_int64(), 1);

  ASSERT_TRUE(
      alice.SendText(R"({"action":"send","send_to":"nobody","message":"hi?","request_id":"r2"})")
          .ok());
  ASSERT_TRUE(messages_.WaitFor([&] { return messages_.calls.size() == 2; }));
  SendResult unknown;
  unknown.status = absl::NotFoundError("no such user: nobody");
  messages_.AnswerSend(1, unknown);
  auto error = alice.ReadAction("error");
  ASSERT_TRUE(error.ok()) << error.status();
  EXPECT_EQ(Str(error->at("request_id")), "r2");
  EXPECT_EQ(Str(error->at("code")), "unknown_user");
}

TEST_F(EdgeServerTest, ADeliveryThroughTheHubReachesOnlyItsConnection) {
  WsClient alice, bob;
  Connect(alice, "alice");
  const std::string bob_id = Connect(bob, "bob");

  MessageObject m;
  m.id = "01JD7XBBBBBBBBBBBBBBBBBBBB";
  m.conversation = "alice:bob";
  m.seq = 1;
  m.useq = 1;
  m.sent_by = "alice";
  m.send_to = "bob";
  m.message = "hello bob";
  m.ts_ms = 1764050000123;
  auto frame = std::make_shared<const std::string>(EncodeDelivery(m));
  // As the message link hands a delivery to the connections it names.
  const int live =
      server_->hub().ForEach(std::vector<std::string>{bob_id},
                             [&](LocalConnection& c) { c.DeliverStored(frame, m.useq, false, 0); });
  EXPECT_EQ(live, 1);
  auto got = bob.Read();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->payload, *frame);
  ASSERT_TRUE(messages_.WaitFor([&] { return !messages_.reached.empty(); }))
      << "the written useq is reported as reached";
  messages_.Locked([&] { EXPECT_EQ(messages_.reached[0], (std::pair<int64_t, int64_t>(1, 1))); });

  // Alice's next frame is the answer to her ping, not bob's delivery.
  ASSERT_TRUE(alice.SendText(R"({"action":"ping","request_id":"p"})").ok());
  auto next = alice.Read();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(Str(next->json["action"]), "pong") << next->payload;
}

TEST_F(EdgeServerTest, AKickFromTheDirectoryClosesWithItsCodeAndReason) {
  WsClient alice, other;
  const std::string id = Connect(alice, "alice");
  Connect(other, "alice");
  // As the directory client does for a RouteChange KICKED.
  EXPECT_TRUE(server_->hub().Kick(id, 4000, "disconnected by an operator"));
  auto closed = alice.Read();
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_TRUE(closed->closed);
  EXPECT_EQ(closed->close_code, 4000);
  EXPECT_EQ(closed->close_reason, "disconnected by an operator");
  ASSERT_TRUE(directory_.WaitFor([&] { return directory_.unregistered.size() == 1; }));
  directory_.Locked([&] { EXPECT_EQ(directory_.unregistered[0], id); });
  ASSERT_TRUE(messages_.WaitFor([&] { return messages_.detaches.size() == 1; }));

  // The user's other connection is untouched.
  ASSERT_TRUE(other.SendText(R"({"action":"ping"})").ok());
  auto pong = other.ReadAction("pong");
  EXPECT_TRUE(pong.ok()) << pong.status();
  EXPECT_FALSE(server_->hub().Kick("e1-unknown", 4003, "x"));
}

TEST_F(EdgeServerTest, ReadyzFollowsTheBackends) {
  auto get = [&] {
    auto r = HttpGet(server_->port(), "/readyz");
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : chat::testing::HttpResult{};
  };
  auto r = get();
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("\"ready\":true"));

  messages_.ready = false;
  r = get();
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("\"connection_service\":true,\"message_service\":false"));

  messages_.ready = true;
  directory_.ready = false;
  r = get();
  EXPECT_EQ(r.status, 503);
  EXPECT_THAT(r.body, HasSubstr("\"connection_service\":false,\"message_service\":true"));

  directory_.ready = true;
  EXPECT_EQ(get().status, 200);
}

TEST_F(EdgeServerTest, ShutdownClosesEveryConnectionWith1001AndUnregistersThem) {
  WsClient alice, bob;
  const std::string alice_id = Connect(alice, "alice");
  const std::string bob_id = Connect(bob, "bob");

  // What SIGTERM does in main(). The clients answer the close from their
  // reader threads, so the drain ends when both have.
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown(5s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s) << "drained before the deadline";
  for (WsClient* c : {&alice, &bob}) {
    auto closed = c->Read();
    ASSERT_TRUE(closed.ok()) << closed.status();
    EXPECT_TRUE(closed->closed);
    EXPECT_EQ(closed->close_code, 1001);
    EXPECT_EQ(closed->close_reason, "server shutting down");
  }
  directory_.Locked([&] {
    EXPECT_THAT(directory_.unregistered, ::testing::UnorderedElementsAre(alice_id, bob_id));
  });
  messages_.Locked(
      [&] { EXPECT_THAT(messages_.detaches, ::testing::UnorderedElementsAre(alice_id, bob_id)); });

  // Nothing is accepted any more.
  WsClient late;
  EXPECT_FALSE(late.Connect(server_->port(), As("carol"), 1s).ok());
}

}  // namespace
}  // namespace chat::edge

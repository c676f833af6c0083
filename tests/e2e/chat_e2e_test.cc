// Protocol v1 against the three real binaries: the original app's scenario,
// every action, every error code the edge can produce, closes and limits.
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

class ChatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusterOptions options;
    options.edge_flags = {"--max_outbound_bytes=65536", "--bad_frames_max=5",
                          "--max_message_bytes=4096", "--messages_per_second=1000",
                          "--rate_burst=1000",
                          // The hammering rule (1008) has its own test in security_e2e.
                          "--rate_limit_strikes=100000",
                          // The slow consumer starts reading only after its
                          // flood; give it time to find its 4008 on a busy machine
                          // (Beast bounds the closing handshake by the handshake
                          // timeout, our grace bounds it too).
                          "--close_grace_ms=60000", "--handshake_timeout_s=60"};
    cluster_ = new Cluster("chat", options);
    start_status_ = new absl::Status(cluster_->Start());
  }
  // A failure in SetUpTestSuite would only skip the tests (and ctest counts
  // skips as passes): every test fails instead when the cluster did not start.
  void SetUp() override { ASSERT_TRUE(start_status_->ok()) << *start_status_; }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete start_status_;
    start_status_ = nullptr;
  }
  int port() const { return cluster_->edge_port(); }
  static Cluster* cluster_;
  static absl::Status* start_status_;
};
Cluster* ChatTest::cluster_ = nullptr;
absl::Status* ChatTest::start_status_ = nullptr;

TEST_F(ChatTest, OriginalAppScenarioVerbatim) {
  auto alice = Connect(port(), "alice");
  auto bob = Connect(port(), "bob");
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(
      alice
          ->SendText(
              R"({"action":"send","message":"Hello World!","send_to":"bob","sent_by":"alice"})")
          .ok());
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "sent_by"), "alice");
  EXPECT_EQ(Str(*got, "send_to"), "bob");
  EXPECT_EQ(Str(*got, "message"), "Hello World!");
  EXPECT_EQ(Str(*got, "id").size(), 26u) << json::serialize(*got);
  ASSERT_TRUE(got->contains("ts") && got->at("ts").is_int64());
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  EXPECT_NEAR(static_cast<double>(got->at("ts").as_int64()), static_cast<double>(now_ms), 10000);
  // A successful send without request_id is silent for the sender.
  auto echo = alice->Read(300ms);
  EXPECT_FALSE(echo.ok()) << "alice got an unexpected frame: " << echo->payload;
}

TEST_F(ChatTest, HelloFrameDescribesTheConnection) {
  auto carol = Connect(port(), "carol");
  ASSERT_TRUE(carol);
  const json::object& hello = carol->hello();
  EXPECT_EQ(hello.at("protocol").as_int64(), 2);
  EXPECT_FALSE(Str(hello, "epoch").empty()) << json::serialize(hello);
  EXPECT_EQ(Str(hello, "user"), "carol");
  EXPECT_EQ(Str(hello, "server"), "e1");
  EXPECT_EQ(Str(hello, "connection_id").rfind("e1-", 0), 0u) << json::serialize(hello);
  const json::object& limits = hello.at("limits").as_object();
  EXPECT_EQ(limits.at("max_message_bytes").as_int64(), 4096);
  EXPECT_EQ(limits.at("messages_per_second").as_int64(), 1000);
  EXPECT_EQ(limits.at("idle_timeout_s").as_int64(), 600);
}

TEST_F(ChatTest, ConnectionIdsAreUnique) {
  auto a = Connect(port(), "dave");
  auto b = Connect(port(), "dave");
  ASSERT_TRUE(a && b);
  EXPECT_NE(Str(a->hello(), "connection_id"), Str(b->hello(), "connection_id"));
}

TEST_F(ChatTest, AuthorizationSubprotocolIsAnsweredOthersDeclined) {
  HandshakeOptions old_ui;
  old_ui.subprotocols = {"authorization", "eyJhbGciOiJIUzI1NiJ9.e30.sig"};
  auto a = Connect(port(), "erin", old_ui);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->accepted_subprotocol(), "authorization");

  HandshakeOptions other;
  other.subprotocols = {"chat.v2", "mqtt"};
  auto b = Connect(port(), "erin", other);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->accepted_subprotocol(), "");
}

TEST_F(ChatTest, AnyPathUpgrades) {
  for (const char* path : {"/", "/ws", "/Prod", "/Prod/chat"}) {
    WsClient client;
    HandshakeOptions options;
    options.target = absl::StrCat(path, "?name=frank");
    EXPECT_TRUE(client.Connect(port(), options).ok()) << path;
  }
}

TEST_F(ChatTest, NameIsFormDecoded) {
  struct Case {
    const char* raw;
    const char* user;
  } cases[] = {{"J%C3%B6rg+Smith", "J\xC3\xB6rg Smith"},
               {"a%20b", "a b"},
               {"%E2%9C%93", "\xE2\x9C\x93"},
               {"plain", "plain"}};
  for (const auto& c : cases) {
    WsClient client;
    HandshakeOptions options;
    options.target = absl::StrCat("/?name=", c.raw);
    ASSERT_TRUE(client.Connect(port(), options).ok()) << c.raw;
    EXPECT_EQ(Str(client.hello(), "user"), c.user) << c.raw;
  }
}

TEST_F(ChatTest, BadNamesAreRefusedWith400AndAReason) {
  const std::string long_name(65, 'x');
  for (const std::string& raw :
       {std::string("/"), std::string("/?name="), std::string("/?name=%20alice"),
        std::string("/?name=alice+"), std::string("/?name=a%00b"), std::string("/?name=%FF%FE"),
        std::string("/?name=%ZZ"), std::string("/?name=a%0Ab"), "/?name=" + long_name}) {
    WsClient client;
    HandshakeOptions options;
    options.target = raw;
    options.expect_hello = false;
    absl::Status s = client.Connect(port(), options);
    EXPECT_FALSE(s.ok()) << raw;
    EXPECT_EQ(client.http_status(), 400) << raw;
    EXPECT_FALSE(client.http_body().empty()) << raw;
    EXPECT_EQ(client.http_body().find('\n'), client.http_body().size() - 1)
        << "one line: " << client.http_body();
  }
  // The 64-byte maximum itself is fine.
  WsClient ok;
  HandshakeOptions options;
  options.target = "/?name=" + std::string(64, 'y');
  EXPECT_TRUE(ok.Connect(port(), options).ok());
}

TEST_F(ChatTest, SendWithRequestIdIsAnsweredWithSent) {
  auto grace = Connect(port(), "grace");
  auto heidi1 = Connect(port(), "heidi");
  auto heidi2 = Connect(port(), "heidi");
  ASSERT_TRUE(grace && heidi1 && heidi2);
  ASSERT_TRUE(
      grace->SendText(R"({"action":"send","send_to":"heidi","message":"hi","request_id":"c-17"})")
          .ok());
  auto sent = grace->ReadAction("sent");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(Str(*sent, "request_id"), "c-17");
  EXPECT_EQ(sent->at("delivered").as_int64(), 2);
  auto m1 = heidi1->ReadAction("send");
  auto m2 = heidi2->ReadAction("send");
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ(Str(*m1, "id"), Str(*sent, "id"));
  EXPECT_EQ(Str(*m2, "id"), Str(*sent, "id"));
  EXPECT_EQ(m1->at("ts"), sent->at("ts"));
  // Integer request ids come back as integers.
  ASSERT_TRUE(
      grace->SendText(R"({"action":"send","send_to":"heidi","message":"2","request_id":7})").ok());
  auto sent2 = grace->ReadAction("sent");
  ASSERT_TRUE(sent2.ok());
  EXPECT_EQ(sent2->at("request_id").as_int64(), 7);
  EXPECT_NE(Str(*sent2, "id"), Str(*sent, "id"));
  EXPECT_GT(Str(*sent2, "id"), Str(*sent, "id")) << "ids sort by time";
}

TEST_F(ChatTest, SendToYourselfReachesAllYourConnections) {
  auto ivan1 = Connect(port(), "ivan");
  auto ivan2 = Connect(port(), "ivan");
  ASSERT_TRUE(ivan1 && ivan2);
  ASSERT_TRUE(
      ivan1
          ->SendText(
              R"({"action":"send","send_to":"ivan","message":"note to self","request_id":1})")
          .ok());
  auto sent = ivan1->ReadAction("sent");
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(sent->at("delivered").as_int64(), 2);
  EXPECT_TRUE(ivan1->ReadAction("send").ok());
  EXPECT_TRUE(ivan2->ReadAction("send").ok());
}

TEST_F(ChatTest, MessageIsRelayedVerbatim) {
  auto a = Connect(port(), "judy");
  auto b = Connect(port(), "ken");
  ASSERT_TRUE(a && b);
  const std::string tricky = "<img src=x onerror=alert(1)> \"quotes\" \\ \xE2\x9C\x93 \n\t{}";
  json::object frame{{"action", "send"}, {"send_to", "ken"}, {"message", tricky}};
  ASSERT_TRUE(a->SendJson(frame).ok());
  auto got = b->ReadAction("send");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Str(*got, "message"), tricky);
}

TEST_F(ChatTest, EveryClientErrorCodeIsReachable) {
  auto a = Connect(port(), "leo");
  ASSERT_TRUE(a);
  // bad_request: not JSON, not an object, no action, ill-typed fields.
  auto reconnect = [&] {  // the bad-frame budget is 5 here
    a = Connect(port(), "leo");
    ASSERT_TRUE(a);
  };
  int bad = 0;
  for (const char* frame :
       {"not json", "[1,2]", "42", R"({"send_to":"bob"})", R"({"action":7})",
        R"({"action":"send","message":"x"})", R"({"action":"send","send_to":"bob","message":5})",
        R"({"action":"users","limit":"ten"})", R"({"action":"watch","users":"bob"})",
        R"({"action":"ping","request_id":1.5})", R"({"action":"ping","request_id":{}})"}) {
    if (++bad % 5 == 0) reconnect();
    ExpectError(*a, frame, "bad_request");
  }
  reconnect();
  json::object e = ExpectError(*a, R"({"action":"fly","request_id":"r1"})", "unknown_action");
  EXPECT_EQ(Str(e, "request_id"), "r1");
  EXPECT_EQ(e.at("temporary").as_bool(), false);
  for (const char* reserved : {"received", "typing", "reactions", "groups"}) {
    ExpectError(*a, absl::StrCat(R"({"action":")", reserved, R"("})"), "unknown_action");
  }
  reconnect();
  reconnect();
  e = ExpectError(
      *a, R"({"action":"send","send_to":"leo","message":"x","sent_by":"mallory","request_id":3})",
      "forbidden");
  EXPECT_EQ(e.at("request_id").as_int64(), 3);
  e = ExpectError(*a, R"({"action":"send","send_to":"nobody-ever","message":"x"})", "unknown_user");
  EXPECT_EQ(e.at("temporary").as_bool(), false);
  EXPECT_NE(Str(e, "message").find("nobody-ever"), std::string::npos) << json::serialize(e);
  {
    auto gone = Connect(port(), "mike");
    ASSERT_TRUE(gone);
    gone->Close();
  }
  // An offline user's messages are stored, not refused.
  ASSERT_TRUE(a->SendText(R"({"action":"send","send_to":"mike","message":"x","request_id":"p"})")
                  .ok());
  auto stored = a->ReadAction("sent");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(Str(*stored, "request_id"), "p");
}

TEST_F(ChatTest, ErrorsCarryRequestIdAndTemporaryFlag) {
  auto a = Connect(port(), "nina");
  ASSERT_TRUE(a);
  json::object e =
      ExpectError(*a, R"({"action":"send","send_to":"x","request_id":"abc"})", "bad_request");
  EXPECT_EQ(Str(e, "request_id"), "abc");
  EXPECT_FALSE(e.at("temporary").as_bool());
  EXPECT_EQ(Str(e, "action"), "error");
}

TEST_F(ChatTest, RateLimitedIsTemporary) {
  // This suite allows 1000/s; a burst beyond the bucket must be refused.
  auto a = Connect(port(), "olga");
  ASSERT_TRUE(a);
  std::string burst;
  for (int i = 0; i < 1300; ++i) ASSERT_TRUE(a->SendText(R"({"action":"ping"})").ok());
  auto e = a->ReadAction("error", 10s);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(Str(*e, "code"), "rate_limited");
  EXPECT_TRUE(e->at("temporary").as_bool());
  // Temporary: once the bucket refills, the same connection is served again.
  bool served = Eventually(
      [&] {
        if (!a->SendText(R"({"action":"ping","request_id":"after"})").ok()) return false;
        for (;;) {
          auto f = a->ReadAction("pong", 200ms);
          if (!f.ok()) return false;
          if (f->contains("request_id") && Str(*f, "request_id") == "after") return true;
        }
      },
      10s);
  EXPECT_TRUE(served) << "rate_limited must be temporary; the connection stays usable";
}

TEST_F(ChatTest, BinaryFrameIsBadRequestAndConnectionStays) {
  auto a = Connect(port(), "pat");
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->SendBinary(std::string("\x01\x02\x03", 3)).ok());
  auto e = a->ReadAction("error");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(Str(*e, "code"), "bad_request");
  ASSERT_TRUE(a->SendText(R"({"action":"ping","request_id":1})").ok());
  EXPECT_TRUE(a->ReadAction("pong").ok()) << "connection must stay open";
}

TEST_F(ChatTest, PingPong) {
  auto a = Connect(port(), "quinn");
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->SendText(R"({"action":"ping"})").ok());
  auto p = a->ReadAction("pong");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->at("ts").is_int64());
  EXPECT_FALSE(p->contains("request_id"));
  ASSERT_TRUE(a->SendText(R"({"action":"ping","request_id":"x"})").ok());
  p = a->ReadAction("pong");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(Str(*p, "request_id"), "x");
}

TEST_F(ChatTest, UsersListsEveryoneSortedWithStatusAndPages) {
  auto u1 = Connect(port(), "\xEF\xBF\xBDu-1");
  auto u2 = Connect(port(), "\xEF\xBF\xBDu-2");
  auto u3 = Connect(port(), "\xEF\xBF\xBDu-3");
  ASSERT_TRUE(u1 && u2 && u3);
  u3->Close();
  std::string last;
  ASSERT_TRUE(Eventually([&] {
    u1->SendText(R"({"action":"users","after":"\uFFFDu-","limit":10})").IgnoreError();
    auto r = u1->ReadAction("users");
    if (!r.ok()) return false;
    last = json::serialize(*r);
    const auto& contacts = r->at("contacts").as_array();
    return contacts.size() == 3 && !contacts[2].as_object().at("status").as_bool();
  })) << "last reply: "
      << last;
  ASSERT_TRUE(
      u1->SendText(R"({"action":"users","after":"\uFFFDu-","limit":2,"request_id":5})").ok());
  auto page1 = u1->ReadAction("users");
  ASSERT_TRUE(page1.ok());
  const auto& c1 = page1->at("contacts").as_array();
  ASSERT_EQ(c1.size(), 2u) << json::serialize(*page1);
  EXPECT_EQ(Str(c1[0].as_object(), "name"), "\xEF\xBF\xBDu-1");
  EXPECT_TRUE(c1[0].as_object().at("status").as_bool());
  EXPECT_EQ(Str(*page1, "next"), "\xEF\xBF\xBDu-2");
  EXPECT_EQ(page1->at("request_id").as_int64(), 5);
  ASSERT_TRUE(u1->SendText(R"({"action":"users","after":"\uFFFDu-2","limit":2})").ok());
  auto page2 = u1->ReadAction("users");
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->at("contacts").as_array().size(), 1u);
  EXPECT_FALSE(page2->contains("next")) << json::serialize(*page2);
  // online_only skips the third user.
  ASSERT_TRUE(u1->SendText(R"({"action":"users","after":"\uFFFDu-","online_only":true})").ok());
  auto online = u1->ReadAction("users");
  ASSERT_TRUE(online.ok());
  EXPECT_EQ(online->at("contacts").as_array().size(), 2u) << json::serialize(*online);
  // The plain old-client request includes the requester.
  ASSERT_TRUE(u1->SendText(R"({"action":"users"})").ok());
  auto all = u1->ReadAction("users");
  ASSERT_TRUE(all.ok());
  bool found_self = false;
  std::string previous;
  for (const auto& c : all->at("contacts").as_array()) {
    const std::string name = Str(c.as_object(), "name");
    EXPECT_LT(previous, name) << "sorted by name";
    previous = name;
    if (name == "\xEF\xBF\xBDu-1") found_self = true;
  }
  EXPECT_TRUE(found_self);
}

TEST_F(ChatTest, WatchReportsPresenceTransitionsOnlyOnce) {
  auto watcher = Connect(port(), "rita");
  ASSERT_TRUE(watcher);
  ASSERT_TRUE(
      watcher->SendText(R"({"action":"watch","users":["sam","sam","tom"],"request_id":"w"})").ok());
  auto watching = watcher->ReadAction("watching");
  ASSERT_TRUE(watching.ok());
  EXPECT_EQ(json::serialize(watching->at("users")), R"(["sam","tom"])");
  EXPECT_EQ(Str(*watching, "request_id"), "w");

  auto tab1 = Connect(port(), "sam");
  ASSERT_TRUE(tab1);
  auto on = watcher->ReadAction("presence");
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_EQ(Str(*on, "name"), "sam");
  EXPECT_TRUE(on->at("status").as_bool());
  EXPECT_TRUE(on->at("ts").is_int64());
  auto tab2 = Connect(port(), "sam");  // second tab: no second "true"
  ASSERT_TRUE(tab2);
  tab1->Close();  // one of two closes: no "false"
  auto none = watcher->Read(700ms);
  EXPECT_FALSE(none.ok()) << "unexpected frame: " << none->payload;
  tab2->Close();
  auto off = watcher->ReadAction("presence");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(Str(*off, "name"), "sam");
  EXPECT_FALSE(off->at("status").as_bool());
  // [] clears the watch set.
  ASSERT_TRUE(watcher->SendText(R"({"action":"watch","users":[]})").ok());
  ASSERT_TRUE(watcher->ReadAction("watching").ok());
  auto tom = Connect(port(), "tom");
  ASSERT_TRUE(tom);
  auto quiet = watcher->Read(500ms);
  EXPECT_FALSE(quiet.ok()) << "watch was cleared, got " << quiet->payload;
}

TEST_F(ChatTest, OversizedMessageClosesWith1009) {
  auto a = Connect(port(), "uma");
  ASSERT_TRUE(a);
  json::object frame{{"action", "send"}, {"send_to", "uma"}, {"message", std::string(5000, 'x')}};
  ASSERT_TRUE(a->SendJson(frame).ok());
  auto code = a->ReadUntilClosed();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1009);
}

TEST_F(ChatTest, InvalidUtf8ClosesWith1007) {
  auto a = Connect(port(), "vic");
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->SendText("{\"action\":\"ping\",\"x\":\"\xC3\x28\"}").ok());
  auto code = a->ReadUntilClosed();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1007);
}

TEST_F(ChatTest, RepeatedBadFramesCloseWith1008) {
  auto a = Connect(port(), "wendy");
  ASSERT_TRUE(a);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(a->SendText("garbage").ok());
  auto code = a->ReadUntilClosed();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1008);
}

TEST_F(ChatTest, SlowConsumerIsClosedWith4008AndOthersKeepFlowing) {
  auto slow = std::make_unique<WsClient>();
  HandshakeOptions options;
  options.target = "/?name=xavier";
  options.start_reader = false;
  options.expect_hello = false;
  ASSERT_TRUE(slow->Connect(port(), options).ok());
  slow->SetReceiveBuffer(4096);
  auto sender = Connect(port(), "yara");
  auto bystander = Connect(port(), "zed");
  ASSERT_TRUE(sender && bystander);
  // xavier reads nothing while ~2 MB are sent to him; the edge allows 64 KiB.
  const std::string chunk(3000, 'm');
  for (int i = 0; i < 700; ++i) {
    json::object frame{{"action", "send"}, {"send_to", "xavier"}, {"message", chunk}};
    ASSERT_TRUE(sender->SendJson(frame).ok());
    if (i % 100 == 0) {
      ASSERT_TRUE(
          sender->SendText(R"({"action":"send","send_to":"zed","message":"still here"})").ok());
      auto got = bystander->ReadAction("send");
      ASSERT_TRUE(got.ok()) << "bystander starved at " << i << ": " << got.status();
    }
  }
  // Reading again drains what the socket holds, then the close frame. A
  // normal receive buffer again, so our kernel advertises the window as it
  // drains (with a tiny one it waits for the edge's zero-window probes, which
  // back off to minutes); the pings' segments carry the window too.
  slow->SetReceiveBuffer(1 << 20);
  slow->StartReader();
  absl::StatusOr<uint16_t> code = absl::DeadlineExceededError("not read yet");
  for (int i = 0; i < 60 && absl::IsDeadlineExceeded(code.status()); ++i) {
    slow->SendText(R"({"action":"ping"})").IgnoreError();
    code = slow->ReadUntilClosed(1s);
  }
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 4008);
}

TEST_F(ChatTest, HealthAndReadiness) {
  auto health = HttpGet(port(), "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  auto ready = HttpGet(port(), "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200) << ready->body;
  auto missing = HttpGet(port(), "/no/such/thing");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
}

TEST_F(ChatTest, HugeHeaderIsRefused) {
  auto r = HttpGet(port(), "/healthz", {{"X-Big", std::string(20000, 'a')}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 431);
}

}  // namespace
}  // namespace chat::testing

#include "edge/connection_logic.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"
#include "tests/unit/edge_fakes.h"

namespace chat::edge {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using testing::FakeDirectory;
using testing::FakeLocalConnection;
using testing::FakeMessageBackend;
using testing::FakeSink;
using ::testing::IsEmpty;
using ::testing::Pair;

json::object Obj(const std::string& text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "frame is not one JSON object: " << text;
    return {};
  }
  return v.get_object();
}

class ConnectionLogicTest : public ::testing::Test {
 protected:
  ConnectionLogicTest() {
    config_.server_id = "edge-1";
    config_.max_message_bytes = 1000;
    config_.messages_per_second = 50;
    config_.rate_burst = 50;
    config_.bad_frames_max = 3;
    config_.bad_frames_window_ms = 60'000;
    config_.max_inflight_sends = 4;
  }

  ConnectionLogic& logic() {
    if (logic_ == nullptr) {
      logic_ = std::make_unique<ConnectionLogic>("alice", "e1-7", &config_, &messages_, &directory_,
                                                 &hub_, &sink_, &clock_);
    }
    return *logic_;
  }

  // Sends a frame and lets posted answers run, as the strand would.
  void Frame(const std::string& text) {
    logic().OnText(text);
    sink_.RunPosted();
  }

  // The only frame sent since the last call, as JSON; fails if there is not exactly one.
  json::object OnlyFrame() {
    std::vector<std::string> frames = std::move(sink_.frames);
    sink_.frames.clear();
    if (frames.size() != 1) {
      ADD_FAILURE() << "expected exactly one frame, got " << frames.size() << ":\n"
                    << ::testing::PrintToString(frames);
      return {};
    }
    return Obj(frames[0]);
  }

  // Starts the connection and answers its attach.
  void Start(absl::StatusOr<AttachInfo> info) {
    logic().Start();
    ASSERT_EQ(messages_.attaches.size(), 1u) << "the connection must attach before its hello";
    EXPECT_EQ(messages_.attaches[0].after_useq, -1);
    EXPECT_THAT(sink_.frames, IsEmpty()) << "no hello before the attach is answered";
    messages_.attaches[0].done(std::move(info));
    sink_.RunPosted();
  }

  static MessageObject Msg(int64_t useq, std::string from = "bob", std::string to = "alice") {
    return {"id" + std::to_string(useq), "c1", useq, useq, from, to, "m" + std::to_string(useq),
            1764050000000 + useq};
  }

  void Answer(size_t call, SendResult result) {
    ASSERT_LT(call, messages_.calls.size()) << "no send #" << call << " reached the backend";
    messages_.calls[call].done(result);
    sink_.RunPosted();
  }

  static SendResult Ok(int delivered) {
    SendResult r;
    r.status = absl::OkStatus();
    r.id = "01JD7XAAAAAAAAAAAAAAAAAAAA";
    r.ts_ms = 1764050000123;
    r.delivered = delivered;
    return r;
  }
  // message-service's canonical code and reason, as the link hands them over.
  static SendResult Failed(absl::StatusCode code, const std::string& error) {
    SendResult r;
    r.status = absl::Status(code, error);
    return r;
  }

  LogicConfig config_;
  chat::testing::FakeClock clock_{1764050000000};
  FakeMessageBackend messages_;
  FakeDirectory directory_;
  LocalHub hub_;
  FakeSink sink_;
  std::unique_ptr<ConnectionLogic> logic_;
};

TEST_F(ConnectionLogicTest, HelloNamesTheUserConnectionServerAndLimits) {
  Start(AttachInfo{"ep0", 0, 0});
  json::object hello = OnlyFrame();
  EXPECT_EQ(hello["action"], "hello");
  EXPECT_EQ(hello["protocol"], 2);
  EXPECT_EQ(hello["epoch"], "ep0");
  EXPECT_EQ(hello["user"], "alice");
  EXPECT_EQ(hello["connection_id"], "e1-7");
  EXPECT_EQ(hello["server"], "edge-1");
  EXPECT_EQ(json::serialize(hello["limits"]),
            R"({"max_message_bytes":1000,"messages_per_second":50,"idle_timeout_s":600})");
}

TEST_F(ConnectionLogicTest, SendGoesToTheBackendAsTheConnectionsUser) {
  Frame(R"({"action":"send","send_to":"bob","message":"Hello World!","sent_by":"alice"})");
  ASSERT_EQ(messages_.calls.size(), 1u);
  const OutgoingSend& send = messages_.calls[0].send;
  EXPECT_EQ(send.sent_by, "alice");
  EXPECT_EQ(send.send_to, "bob");
  EXPECT_EQ(send.message, "Hello World!");
  EXPECT_EQ(send.from_connection_id, "e1-7");

  Frame(R"({"action":"send","send_to":"bob","message":"no sent_by"})");
  ASSERT_EQ(messages_.calls.size(), 2u);
  EXPECT_EQ(messages_.calls[1].send.sent_by, "alice") << "identity comes from the handshake";
}

TEST_F(ConnectionLogicTest, SuccessfulSendIsSilentWithoutRequestId) {
  Frame(R"({"action":"send","send_to":"bob","message":"hi"})");
  Answer(0, Ok(2));
  EXPECT_THAT(sink_.frames, IsEmpty()) << "the old app expects no reply to a send";
}

TEST_F(ConnectionLogicTest, SuccessfulSendWithRequestIdGetsSent) {
  Frame(R"({"action":"send","send_to":"bob","message":"hi","request_id":"c-17"})");
  EXPECT_THAT(sink_.frames, IsEmpty()) << "no reply before the backend answered";
  Answer(0, Ok(2));
  json::object sent = OnlyFrame();
  EXPECT_EQ(sent["action"], "sent");
  EXPECT_EQ(sent["request_id"], "c-17");
  EXPECT_EQ(sent["id"], "01JD7XAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(sent["ts"], 1764050000123);
  EXPECT_EQ(sent["delivered"], 2);
}

TEST_F(ConnectionLogicTest, BackendFailuresBecomeErrorFramesEvenWithoutRequestId) {
  struct Case {
    absl::StatusCode status;
    const char* code;
    bool temporary;
  } cases[] = {
      {absl::StatusCode::kNotFound, "unknown_user", false},
      {absl::StatusCode::kInvalidArgument, "bad_request", false},
      {absl::StatusCode::kPermissionDenied, "bad_request", false},
      {absl::StatusCode::kUnavailable, "unavailable", true},
      {absl::StatusCode::kResourceExhausted, "unavailable", true},
      {absl::StatusCode::kDeadlineExceeded, "unavailable", true},
      {absl::StatusCode::kInternal, "unavailable", true},
      {static_cast<absl::StatusCode>(99), "unavailable", true},  // a code from the future
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    Frame(R"({"action":"send","send_to":"bob","message":"hi"})");
    Answer(i, Failed(cases[i].status, "because"));
    json::object error = OnlyFrame();
    EXPECT_EQ(error["action"], "error") << cases[i].code;
    EXPECT_EQ(error["code"], cases[i].code);
    EXPECT_EQ(error["message"], "because") << cases[i].code;
    EXPECT_EQ(error["temporary"], cases[i].temporary) << cases[i].code;
    EXPECT_FALSE(error.contains("request_id")) << cases[i].code;
  }
}

TEST_F(ConnectionLogicTest, UnavailableWithoutReasonStillSaysNothingWasDelivered) {
  Frame(R"({"action":"send","send_to":"bob","message":"hi","request_id":4})");
  Answer(0, Failed(absl::StatusCode::kUnavailable, ""));
  json::object error = OnlyFrame();
  EXPECT_EQ(error["code"], "unavailable");
  EXPECT_EQ(error["request_id"], 4);
  EXPECT_NE(error["message"], "") << "an error frame must explain itself";
}

TEST_F(ConnectionLogicTest, SentByAnotherUserIsForbiddenAndNotSent) {
  Frame(R"({"action":"send","send_to":"bob","message":"hi","sent_by":"mallory","request_id":1})");
  EXPECT_THAT(messages_.calls, IsEmpty()) << "an impersonating send reached the backend";
  json::object error = OnlyFrame();
  EXPECT_EQ(error["code"], "forbidden");
  EXPECT_EQ(error["request_id"], 1);
  EXPECT_EQ(error["temporary"], false);
}

TEST_F(ConnectionLogicTest, MessageOverTheLimitIsBadRequestAndNotSent) {
  Frame(R"({"action":"send","send_to":"bob","message":")" + std::string(1001, 'x') + R"("})");
  EXPECT_THAT(messages_.calls, IsEmpty());
  EXPECT_EQ(OnlyFrame()["code"], "bad_request");
  Frame(R"({"action":"send","send_to":"bob","message":")" + std::string(1000, 'x') + R"("})");
  EXPECT_EQ(messages_.calls.size(), 1u) << "exactly the limit is allowed";
}

TEST_F(ConnectionLogicTest, ParseErrorsAreAnsweredAndTheConnectionStaysOpen) {
  Frame("not json");
  EXPECT_EQ(OnlyFrame()["code"], "bad_request");
  Frame(R"({"action":"nope","request_id":"x"})");
  json::object unknown = OnlyFrame();
  EXPECT_EQ(unknown["code"], "unknown_action");
  EXPECT_EQ(unknown["request_id"], "x");
  logic().OnBinary();
  EXPECT_EQ(OnlyFrame()["code"], "bad_request");
  EXPECT_THAT(sink_.closes, IsEmpty()) << "3 bad frames with a max of 3 must not close";
  Frame(R"({"action":"ping","request_id":1})");
  EXPECT_EQ(OnlyFrame()["action"], "pong");
}

TEST_F(ConnectionLogicTest, TooManyBadFramesClosesWith1008AndThenStaysSilent) {
  for (int i = 0; i < 4; ++i) Frame("[]");
  EXPECT_THAT(sink_.closes, ElementsAre(Pair(kClosePolicy, ::testing::_)));
  EXPECT_EQ(sink_.frames.size(), 4u) << "each bad frame is answered before the close";
  sink_.frames.clear();
  Frame(R"({"action":"ping"})");
  logic().OnBinary();
  EXPECT_THAT(sink_.frames, IsEmpty()) << "nothing is processed after the close";
  EXPECT_EQ(sink_.closes.size(), 1u) << "closed once";
}

TEST_F(ConnectionLogicTest, BadFramesOutsideTheWindowDoNotAddUp) {
  for (int i = 0; i < 10; ++i) {
    Frame("[]");
    clock_.Advance(30'001);  // at most 2 bad frames in any 60 s
  }
  EXPECT_THAT(sink_.closes, IsEmpty());
}

TEST_F(ConnectionLogicTest, OverTheRateIsRateLimitedUntilTokensReturn) {
  config_.messages_per_second = 2;
  config_.rate_burst = 2;
  Frame(R"({"action":"ping","request_id":1})");
  Frame(R"({"action":"ping","request_id":2})");
  ASSERT_EQ(sink_.frames.size(), 2u);
  sink_.frames.clear();

  Frame(R"({"action":"send","send_to":"bob","message":"hi","request_id":3})");
  json::object limited = OnlyFrame();
  EXPECT_EQ(limited["code"], "rate_limited");
  EXPECT_EQ(limited["temporary"], true);
  EXPECT_EQ(limited["request_id"], 3);
  EXPECT_THAT(messages_.calls, IsEmpty()) << "a rate-limited send must not be delivered";

  clock_.Advance(500);  // one token at 2/s
  Frame(R"({"action":"ping","request_id":4})");
  EXPECT_EQ(OnlyFrame()["action"], "pong");
}

TEST_F(ConnectionLogicTest, PingAnswersWithServerTime) {
  Frame(R"({"action":"ping"})");
  json::object pong = OnlyFrame();
  EXPECT_EQ(pong["action"], "pong");
  EXPECT_EQ(pong["ts"], 1764050000000);
  EXPECT_FALSE(pong.contains("request_id"));
}

TEST_F(ConnectionLogicTest, UsersAsksTheDirectoryAndRepliesWithContacts) {
  Frame(R"({"action":"users","online_only":true,"limit":2,"after":"a","request_id":5})");
  ASSERT_EQ(directory_.list_calls.size(), 1u);
  EXPECT_TRUE(directory_.list_calls[0].online_only);
  EXPECT_EQ(directory_.list_calls[0].limit, 2);
  EXPECT_EQ(directory_.list_calls[0].after, "a");

  UserPage page;
  page.users = {{"alice", true}, {"bob", true}};
  page.next = "bob";
  directory_.list_calls[0].done(page);
  sink_.RunPosted();
  json::object users = OnlyFrame();
  EXPECT_EQ(users["action"], "users");
  EXPECT_EQ(json::serialize(users["contacts"]),
            R"([{"name":"alice","status":true},{"name":"bob","status":true}])");
  EXPECT_EQ(users["next"], "bob");
  EXPECT_EQ(users["request_id"], 5);
}

TEST_F(ConnectionLogicTest, UsersWhileTheDirectoryIsDownIsUnavailable) {
  Frame(R"({"action":"users"})");
  ASSERT_EQ(directory_.list_calls.size(), 1u);
  directory_.list_calls[0].done(absl::UnavailableError("connection refused"));
  sink_.RunPosted();
  json::object error = OnlyFrame();
  EXPECT_EQ(error["code"], "unavailable");
  EXPECT_EQ(error["temporary"], true);
}

TEST_F(ConnectionLogicTest, WatchRepliesAndPresenceReachesThisConnection) {
  auto self = std::make_shared<FakeLocalConnection>();
  hub_.Add("e1-7", self);
  Frame(R"({"action":"watch","users":["bob","carol","bob"],"request_id":"w"})");
  json::object watching = OnlyFrame();
  EXPECT_EQ(watching["action"], "watching");
  EXPECT_EQ(json::serialize(watching["users"]), R"(["bob","carol"])");
  EXPECT_EQ(watching["request_id"], "w");

  hub_.OnPresence("bob", false, 1764050000456);
  EXPECT_THAT(
      self->texts(),
      ElementsAre(R"({"action":"presence","name":"bob","status":false,"ts":1764050000456})"));

  logic().OnClosed();
  hub_.OnPresence("bob", true, 1764050000999);
  EXPECT_EQ(self->frames.size(), 1u) << "a closed connection's watches must be gone";
}

TEST_F(ConnectionLogicTest, TooManySendsInFlightPauseReadingUntilAnswersReturn) {
  for (int i = 0; i < 3; ++i) Frame(R"({"action":"send","send_to":"bob","message":"hi"})");
  EXPECT_THAT(sink_.pauses, IsEmpty()) << "3 in flight is below the limit of 4";
  Frame(R"({"action":"send","send_to":"bob","message":"hi"})");
  EXPECT_THAT(sink_.pauses, ElementsAre(true)) << "4 in flight reaches the limit";

  Answer(0, Ok(1));
  Answer(1, Ok(1));
  EXPECT_THAT(sink_.pauses, ElementsAre(true)) << "2 in flight is not below half of 4";
  Answer(2, Ok(1));
  EXPECT_THAT(sink_.pauses, ElementsAre(true, false)) << "1 in flight: resume reading";
}

TEST_F(ConnectionLogicTest, AnswersArrivingAfterCloseSendNothing) {
  Frame(R"({"action":"send","send_to":"bob","message":"hi","request_id":1})");
  logic().OnClosed();
  Answer(0, Ok(1));
  EXPECT_THAT(sink_.frames, IsEmpty());
}

// ---- protocol version 2: attach, pushes, catch-up, version 2 frames ----

TEST_F(ConnectionLogicTest, HelloGoesOutEvenWhenTheAttachFails) {
  Start(absl::UnavailableError("down"));
  json::object hello = OnlyFrame();
  EXPECT_EQ(hello["action"], "hello");
  EXPECT_FALSE(hello.contains("epoch")) << "no epoch known without message-service";
  EXPECT_THAT(messages_.pages, IsEmpty());
}

TEST_F(ConnectionLogicTest, MissedMessagesArePushedAfterHelloPacedByTheSocket) {
  Start(AttachInfo{"ep", 5, 2});  // the user's stream ends at 5; 1..2 reached
  ASSERT_EQ(OnlyFrame()["action"], "hello");
  ASSERT_EQ(messages_.pages.size(), 1u);
  EXPECT_EQ(messages_.pages[0].kind, "unread");
  EXPECT_EQ(messages_.pages[0].from, 2);

  // A live frame arriving meanwhile waits behind the pushes.
  logic().OnStored(std::make_shared<const std::string>("live6"), 6, false);
  EXPECT_THAT(sink_.frames, IsEmpty());

  sink_.queued_bytes = 100;  // the socket has not taken the first page yet
  SyncReply page;
  page.messages = {Msg(3), Msg(4)};
  page.useq = 4;
  page.more = true;
  messages_.pages[0].done(page);
  sink_.RunPosted();
  ASSERT_EQ(sink_.frames.size(), 2u);
  EXPECT_EQ(Obj(sink_.frames[0])["useq"], 3);
  EXPECT_THAT(sink_.tags, ElementsAre(Pair(3, 3), Pair(4, 4)));
  EXPECT_EQ(messages_.pages.size(), 1u) << "next page only once the queue drained";

  sink_.queued_bytes = 0;
  logic().OnQueueEmpty();
  ASSERT_EQ(messages_.pages.size(), 2u);
  EXPECT_EQ(messages_.pages[1].from, 4);
  SyncReply last;
  last.messages = {Msg(5), Msg(6)};  // 6 was committed after the attach
  last.useq = 6;
  messages_.pages[1].done(last);
  sink_.RunPosted();
  std::vector<std::string> useqs;
  for (const auto& f : sink_.frames) {
    json::object o = Obj(f);
    useqs.push_back(o.contains("useq") ? json::serialize(o["useq"]) : f);
  }
  EXPECT_THAT(useqs, ElementsAre("3", "4", "5", "6"))
      << "the held live frame 6 came with the page: not sent twice";

  logic().OnStored(std::make_shared<const std::string>("live7"), 7, false);
  EXPECT_EQ(sink_.frames.back(), "live7") << "after the catch-up live frames go straight out";
}

TEST_F(ConnectionLogicTest, WrittenFramesMoveTheReachedMark) {
  Start(AttachInfo{"ep", 0, 0});
  logic().OnWritten(1, 1);
  logic().OnWritten(2, 4);
  EXPECT_THAT(messages_.reached, ElementsAre(Pair(1, 1), Pair(2, 4)));
}

TEST_F(ConnectionLogicTest, OwnCopiesAndReceiptsOnlyReachVersion2Connections) {
  Start(AttachInfo{"ep", 0, 0});
  sink_.frames.clear();
  logic().OnStored(std::make_shared<const std::string>("own"), 1, true);
  logic().OnReceipt(std::make_shared<const std::string>("receipt"));
  EXPECT_THAT(sink_.frames, IsEmpty()) << "a version 1 client would misread them";

  Frame(R"({"action":"sync","since":0})");
  ASSERT_EQ(messages_.pages.size(), 1u);
  logic().OnStored(std::make_shared<const std::string>("own2"), 2, true);
  logic().OnReceipt(std::make_shared<const std::string>("receipt2"));
  EXPECT_THAT(sink_.frames, ElementsAre("own2", "receipt2"));
}

TEST_F(ConnectionLogicTest, SyncedReplyCarriesItsRangeForTheReachedMark) {
  Start(AttachInfo{"ep", 3, 3});
  sink_.frames.clear();
  Frame(R"({"action":"sync","since":1,"limit":10,"epoch":"old","request_id":9})");
  ASSERT_EQ(messages_.pages.size(), 1u);
  EXPECT_EQ(messages_.pages[0].kind, "sync");
  EXPECT_EQ(messages_.pages[0].from, 1);
  EXPECT_EQ(messages_.pages[0].limit, 10);
  EXPECT_EQ(messages_.pages[0].epoch, "old");
  SyncReply reply;
  reply.messages = {Msg(2), Msg(3)};
  reply.useq = 3;
  reply.epoch = "ep";
  messages_.pages[0].done(reply);
  sink_.RunPosted();
  json::object synced = OnlyFrame();
  EXPECT_EQ(synced["action"], "synced");
  EXPECT_EQ(synced["request_id"], 9);
  EXPECT_EQ(synced["useq"], 3);
  EXPECT_EQ(synced["more"], false);
  EXPECT_EQ(synced["messages"].as_array().size(), 2u);
  EXPECT_THAT(sink_.tags, ElementsAre(Pair(2, 3)));
}

TEST_F(ConnectionLogicTest, StoreErrorsMapToProtocolErrors) {
  Start(AttachInfo{"ep", 0, 0});
  sink_.frames.clear();
  Frame(R"({"action":"history","with":"nobody","request_id":1})");
  ASSERT_EQ(messages_.histories.size(), 1u);
  messages_.histories[0](absl::NotFoundError("no user named 'nobody'"));
  sink_.RunPosted();
  json::object e = OnlyFrame();
  EXPECT_EQ(e["code"], "unknown_user");
  EXPECT_EQ(e["request_id"], 1);

  Frame(R"({"action":"conversations"})");
  ASSERT_EQ(messages_.conversations.size(), 1u);
  messages_.conversations[0](absl::UnavailableError("disk"));
  sink_.RunPosted();
  e = OnlyFrame();
  EXPECT_EQ(e["code"], "unavailable");
  EXPECT_EQ(e["temporary"], true);
}

TEST_F(ConnectionLogicTest, ReattachResumesFromTheLastWrittenUseq) {
  Start(AttachInfo{"ep", 4, 4});
  logic().OnWritten(5, 5);
  logic().Reattach();
  ASSERT_EQ(messages_.attaches.size(), 2u);
  EXPECT_EQ(messages_.attaches[1].after_useq, 5);
  sink_.frames.clear();
  messages_.attaches[1].done(AttachInfo{"ep", 7, 5});
  sink_.RunPosted();
  EXPECT_THAT(sink_.frames, IsEmpty()) << "no second hello";
  ASSERT_EQ(messages_.pages.size(), 1u);
  EXPECT_EQ(messages_.pages[0].kind, "sync") << "everything after 5, not only unread";
  EXPECT_EQ(messages_.pages[0].from, 5);
  SyncReply page;
  page.messages = {Msg(6, "alice", "bob"), Msg(7)};  // 6: sent by alice elsewhere
  page.useq = 7;
  messages_.pages[0].done(page);
  sink_.RunPosted();
  ASSERT_EQ(sink_.frames.size(), 1u) << "a version 1 connection gets no copy of its own message";
  EXPECT_EQ(Obj(sink_.frames[0])["useq"], 7);
}

TEST_F(ConnectionLogicTest, AReplacedStoreClosesTheConnectionWith1012) {
  Start(AttachInfo{"old", 3, 3});
  logic().Reattach();
  ASSERT_EQ(messages_.attaches.size(), 2u);
  messages_.attaches[1].done(AttachInfo{"new", 1, 0});
  sink_.RunPosted();
  ASSERT_EQ(sink_.closes.size(), 1u) << "its numbers mean nothing in the new store";
  EXPECT_EQ(sink_.closes[0].first, 1012);
  EXPECT_THAT(messages_.pages, IsEmpty()) << "nothing pushed from the new store";
}

TEST_F(ConnectionLogicTest, ACatchUpDoesNotEchoWhatThisConnectionSent) {
  Start(AttachInfo{"ep", 2, 2});
  Frame(R"({"action":"sync","since":2})");  // version 2: gets copies of its own messages
  ASSERT_EQ(messages_.pages.size(), 1u);
  messages_.pages[0].done(SyncReply{{}, 2, false, "ep", false});
  sink_.RunPosted();
  Frame(R"({"action":"send","send_to":"bob","message":"mine","request_id":1})");
  SendResult sent = Ok(1);
  sent.useq = 3;
  Answer(0, sent);
  sink_.frames.clear();
  logic().Reattach();
  messages_.attaches[1].done(AttachInfo{"ep", 4, 4});
  sink_.RunPosted();
  ASSERT_EQ(messages_.pages.size(), 2u);
  SyncReply page;
  page.messages = {Msg(3, "alice", "bob"), Msg(4, "alice", "carol")};  // 4: from another device
  page.useq = 4;
  messages_.pages[1].done(page);
  sink_.RunPosted();
  ASSERT_EQ(sink_.frames.size(), 1u) << ::testing::PrintToString(sink_.frames);
  EXPECT_EQ(Obj(sink_.frames[0])["useq"], 4) << "its own message 3 came back as `sent` already";
}

TEST_F(ConnectionLogicTest, ClosingDetachesFromMessageService) {
  Start(AttachInfo{"ep", 0, 0});
  logic().OnClosed();
  EXPECT_THAT(messages_.detaches, ElementsAre("e1-7"));
}

TEST_F(ConnectionLogicTest, SendCarriesTheIdempotencyKeyAndSentTheNumbers) {
  Frame(
      R"({"action":"send","send_to":"bob","message":"hi","idempotency_key":"k1","request_id":3})");
  ASSERT_EQ(messages_.calls.size(), 1u);
  EXPECT_EQ(messages_.calls[0].send.idempotency_key, "k1");
  SendResult r = Ok(0);
  r.conversation = "c1";
  r.seq = 4;
  r.useq = 9;
  r.duplicate = true;
  Answer(0, r);
  json::object sent = OnlyFrame();
  EXPECT_EQ(sent["action"], "sent");
  EXPECT_EQ(sent["conversation"], "c1");
  EXPECT_EQ(sent["seq"], 4);
  EXPECT_EQ(sent["useq"], 9);
  EXPECT_EQ(sent["duplicate"], true);
  EXPECT_EQ(sent["delivered"], 0);
}

}  // namespace
}  // namespace chat::edge

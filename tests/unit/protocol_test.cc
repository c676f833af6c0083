#include "edge/protocol.h"

#include <string>
#include <variant>

#include "absl/status/status.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chat::edge {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The request_id as JSON text, or "<none>".
std::string IdText(const RequestId& id) { return id.has_value() ? json::serialize(*id) : "<none>"; }

RequestError ParseError(std::string_view text) {
  auto parsed = ParseRequest(text);
  if (auto* error = std::get_if<RequestError>(&parsed)) return *error;
  ADD_FAILURE() << "expected an error for " << text << ", but it parsed as a valid request";
  return {ErrorCode::kInternal, "<parsed ok>", std::nullopt};
}

Request ParseOk(std::string_view text) {
  auto parsed = ParseRequest(text);
  if (auto* request = std::get_if<Request>(&parsed)) return std::move(*request);
  const auto& error = std::get<RequestError>(parsed);
  ADD_FAILURE() << "expected " << text << " to parse, got " << ErrorCodeName(error.code) << ": "
                << error.message;
  return {std::nullopt, PingAction{}};
}

template <typename T>
T ActionOf(std::string_view text) {
  Request request = ParseOk(text);
  if (auto* action = std::get_if<T>(&request.action)) return *action;
  ADD_FAILURE() << text << " parsed into another action (index " << request.action.index() << ")";
  return T{};
}

json::object Frame(const std::string& text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    ADD_FAILURE() << "server frame is not one JSON object: " << text;
    return {};
  }
  return v.get_object();
}

// ----- routing on `action` and request ids -----

TEST(ParseRequestTest, NotJsonIsBadRequestWithoutId) {
  RequestError e = ParseError("hello");
  EXPECT_EQ(ErrorCodeName(e.code), "bad_request");
  EXPECT_THAT(e.message, HasSubstr("JSON"));
  EXPECT_EQ(IdText(e.request_id), "<none>");
  EXPECT_EQ(ErrorCodeName(ParseError("").code), "bad_request");
  EXPECT_EQ(ErrorCodeName(ParseError(R"({"action":"ping")").code), "bad_request");
}

TEST(ParseRequestTest, JsonThatIsNotAnObjectIsBadRequest) {
  for (const char* text : {"[]", R"(["action","ping"])", "42", R"("ping")", "null", "true"}) {
    RequestError e = ParseError(text);
    EXPECT_EQ(ErrorCodeName(e.code), "bad_request") << text;
    EXPECT_THAT(e.message, HasSubstr("object")) << text;
  }
}

TEST(ParseRequestTest, MissingOrNonStringActionIsBadRequestAndKeepsTheId) {
  RequestError missing = ParseError(R"({"request_id":7})");
  EXPECT_EQ(ErrorCodeName(missing.code), "bad_request");
  EXPECT_EQ(IdText(missing.request_id), "7");
  RequestError number = ParseError(R"({"action":5,"request_id":"r1"})");
  EXPECT_EQ(ErrorCodeName(number.code), "bad_request");
  EXPECT_EQ(IdText(number.request_id), R"("r1")");
}

TEST(ParseRequestTest, UnknownAndReservedActionsAreUnknownAction) {
  for (const char* action : {"sendmessage", "received", "typing", "reaction", "SEND", "$default"}) {
    const std::string text = std::string(R"({"action":")") + action + R"(","request_id":3})";
    RequestError e = ParseError(text);
    EXPECT_EQ(ErrorCodeName(e.code), "unknown_action") << text;
    EXPECT_EQ(IdText(e.request_id), "3") << text;
  }
}

TEST(ParseRequestTest, RequestIdIsEchoedVerbatim) {
  EXPECT_EQ(IdText(ParseOk(R"({"action":"ping","request_id":"c-17"})").request_id), R"("c-17")");
  EXPECT_EQ(IdText(ParseOk(R"({"action":"ping","request_id":7})").request_id), "7");
  EXPECT_EQ(IdText(ParseOk(R"({"action":"ping","request_id":-3})").request_id), "-3");
  EXPECT_EQ(IdText(ParseOk(R"({"action":"ping","request_id":18446744073709551615})").request_id),
            "18446744073709551615");
  EXPECT_EQ(IdText(ParseOk(R"({"action":"ping"})").request_id), "<none>");
  EXPECT_EQ(IdText(ParseOk(R"({"action":"ping","request_id":null})").request_id), "<none>");
}

TEST(ParseRequestTest, IllTypedOrHugeRequestIdIsBadRequest) {
  for (const char* text :
       {R"({"action":"ping","request_id":1.5})", R"({"action":"ping","request_id":true})",
        R"({"action":"ping","request_id":{"a":1}})", R"({"action":"ping","request_id":[1]})"}) {
    EXPECT_EQ(ErrorCodeName(ParseError(text).code), "bad_request") << text;
  }
  const std::string long_id = R"({"action":"ping","request_id":")" + std::string(257, 'x') + "\"}";
  EXPECT_EQ(ErrorCodeName(ParseError(long_id).code), "bad_request");
  const std::string max_id = R"({"action":"ping","request_id":")" + std::string(256, 'x') + "\"}";
  EXPECT_EQ(IdText(ParseOk(max_id).request_id).size(), 258u);
}

TEST(ParseRequestTest, DeeplyNestedJsonIsRefusedNotCrashed) {
  std::string text =
      R"({"action":"ping","x":)" + std::string(10000, '[') + std::string(10000, ']') + "}";
  EXPECT_EQ(ErrorCodeName(ParseError(text).code), "bad_request");
}

// ----- send -----

TEST(ParseRequestTest, SendCarriesTheOldAppsFields) {
  auto send = ActionOf<SendAction>(
      R"({"action":"send","message":"Hello World!","send_to":"bob","sent_by":"alice"})");
  EXPECT_EQ(send.send_to, "bob");
  EXPECT_EQ(send.message, "Hello World!");
  EXPECT_EQ(send.sent_by.value_or("<none>"), "alice");
  auto anonymous =
      ActionOf<SendAction>(R"({"action":"send","message":"<b>hi</b>","send_to":"bob"})");
  EXPECT_EQ(anonymous.sent_by.value_or("<none>"), "<none>");
  EXPECT_EQ(anonymous.message, "<b>hi</b>") << "the message is relayed verbatim";
  auto empty = ActionOf<SendAction>(R"({"action":"send","message":"","send_to":"bob"})");
  EXPECT_EQ(empty.message, "");
}

TEST(ParseRequestTest, SendWithMissingOrIllTypedFieldsIsBadRequest) {
  struct Case {
    const char* text;
    const char* mentions;
  } cases[] = {
      {R"({"action":"send","message":"hi","request_id":1})", "send_to"},
      {R"({"action":"send","send_to":"bob","request_id":1})", "message"},
      {R"({"action":"send","send_to":7,"message":"hi","request_id":1})", "send_to"},
      {R"({"action":"send","send_to":"bob","message":["hi"],"request_id":1})", "message"},
      {R"({"action":"send","send_to":"bob","message":"hi","sent_by":1,"request_id":1})", "sent_by"},
      {R"({"action":"send","send_to":"","message":"hi","request_id":1})", "send_to"},
      {R"({"action":"send","send_to":" bob","message":"hi","request_id":1})", "send_to"},
  };
  for (const auto& c : cases) {
    RequestError e = ParseError(c.text);
    EXPECT_EQ(ErrorCodeName(e.code), "bad_request") << c.text;
    EXPECT_THAT(e.message, HasSubstr(c.mentions)) << c.text;
    EXPECT_EQ(IdText(e.request_id), "1") << c.text;
  }
  const std::string long_name =
      R"({"action":"send","send_to":")" + std::string(65, 'b') + R"(","message":"hi"})";
  EXPECT_EQ(ErrorCodeName(ParseError(long_name).code), "bad_request");
}

// ----- users -----

TEST(ParseRequestTest, UsersDefaultsAndOptions) {
  auto plain = ActionOf<UsersAction>(R"({"action":"users"})");
  EXPECT_FALSE(plain.online_only);
  EXPECT_EQ(plain.limit, 1000);
  EXPECT_EQ(plain.after, "");
  auto full =
      ActionOf<UsersAction>(R"({"action":"users","online_only":true,"limit":5,"after":"bob"})");
  EXPECT_TRUE(full.online_only);
  EXPECT_EQ(full.limit, 5);
  EXPECT_EQ(full.after, "bob");
  EXPECT_EQ(ActionOf<UsersAction>(R"({"action":"users","limit":5000})").limit, 1000)
      << "the limit is capped at 1000";
  EXPECT_EQ(ActionOf<UsersAction>(R"({"action":"users","limit":18446744073709551615})").limit,
            1000);
}

TEST(ParseRequestTest, UsersWithIllTypedOptionsIsBadRequest) {
  for (const char* text :
       {R"({"action":"users","limit":0})", R"({"action":"users","limit":-1})",
        R"({"action":"users","limit":2.5})", R"({"action":"users","limit":"5"})",
        R"({"action":"users","online_only":"yes"})", R"({"action":"users","online_only":1})",
        R"({"action":"users","after":3})"}) {
    EXPECT_EQ(ErrorCodeName(ParseError(text).code), "bad_request") << text;
  }
}

// ----- watch and ping -----

TEST(ParseRequestTest, WatchDeduplicatesAndKeepsOrder) {
  auto watch = ActionOf<WatchAction>(R"({"action":"watch","users":["bob","carol","bob"]})");
  EXPECT_THAT(watch.users, ElementsAre("bob", "carol"));
  EXPECT_THAT(ActionOf<WatchAction>(R"({"action":"watch","users":[]})").users, ElementsAre())
      << "[] clears the watch set";
}

TEST(ParseRequestTest, WatchUpTo1000Names) {
  auto list = [](int n) {
    std::string text = R"({"action":"watch","users":[)";
    for (int i = 0; i < n; ++i) text += (i ? ",\"u" : "\"u") + std::to_string(i) + "\"";
    return text + "]}";
  };
  EXPECT_EQ(ActionOf<WatchAction>(list(1000)).users.size(), 1000u);
  RequestError e = ParseError(list(1001));
  EXPECT_EQ(ErrorCodeName(e.code), "bad_request");
  EXPECT_THAT(e.message, HasSubstr("1000"));
}

TEST(ParseRequestTest, WatchWithBadUsersIsBadRequest) {
  for (const char* text :
       {R"({"action":"watch"})", R"({"action":"watch","users":"bob"})",
        R"({"action":"watch","users":[1]})", R"({"action":"watch","users":["ok",""]})",
        R"({"action":"watch","users":["bob "]})"}) {
    EXPECT_EQ(ErrorCodeName(ParseError(text).code), "bad_request") << text;
  }
}

TEST(ParseRequestTest, PingIgnoresExtraFields) {
  Request r = ParseOk(R"({"action":"ping","extra":{"x":[1,2]},"request_id":"p"})");
  EXPECT_TRUE(std::holds_alternative<PingAction>(r.action));
  EXPECT_EQ(IdText(r.request_id), R"("p")");
}

// ----- encoding -----

// The one place message-service's canonical codes become protocol errors.
TEST(ErrorCodeTest, FailedSendsMapFromCanonicalCodes) {
  EXPECT_EQ(SendErrorCode(absl::StatusCode::kNotFound), ErrorCode::kUnknownUser);
  EXPECT_EQ(SendErrorCode(absl::StatusCode::kInvalidArgument), ErrorCode::kBadRequest);
  EXPECT_EQ(SendErrorCode(absl::StatusCode::kPermissionDenied), ErrorCode::kBadRequest);
  for (absl::StatusCode retryable :
       {absl::StatusCode::kUnavailable, absl::StatusCode::kResourceExhausted,
        absl::StatusCode::kDeadlineExceeded, absl::StatusCode::kAborted,
        absl::StatusCode::kInternal, absl::StatusCode::kUnknown,
        absl::StatusCode::kFailedPrecondition, static_cast<absl::StatusCode>(99)}) {
    EXPECT_EQ(SendErrorCode(retryable), ErrorCode::kUnavailable) << static_cast<int>(retryable);
    EXPECT_TRUE(IsTemporary(SendErrorCode(retryable)));
  }
}

TEST(ErrorCodeTest, NamesAndTemporaryFlagsMatchTheProtocolTable) {
  struct Row {
    ErrorCode code;
    const char* name;
    bool temporary;
  } rows[] = {
      {ErrorCode::kBadRequest, "bad_request", false},
      {ErrorCode::kUnknownAction, "unknown_action", false},
      {ErrorCode::kForbidden, "forbidden", false},
      {ErrorCode::kUnknownUser, "unknown_user", false},
      {ErrorCode::kRecipientOffline, "recipient_offline", false},
      {ErrorCode::kRateLimited, "rate_limited", true},
      {ErrorCode::kUnavailable, "unavailable", true},
      {ErrorCode::kInternal, "internal", true},
  };
  for (const auto& row : rows) {
    json::object frame = Frame(EncodeError(row.code, "why", json::value(7)));
    EXPECT_EQ(frame["action"], "error") << row.name;
    EXPECT_EQ(frame["code"], row.name);
    EXPECT_EQ(frame["message"], "why") << row.name;
    EXPECT_EQ(frame["request_id"], 7) << row.name;
    EXPECT_EQ(frame["temporary"], row.temporary) << row.name;
  }
}

TEST(EncodeTest, ErrorWithoutRequestIdHasNoRequestIdField) {
  json::object frame = Frame(EncodeError(ErrorCode::kBadRequest, "x", std::nullopt));
  EXPECT_FALSE(frame.contains("request_id")) << json::serialize(frame);
}

TEST(EncodeTest, HelloCarriesIdentityAndLimits) {
  json::object frame =
      Frame(EncodeHello("alice", "e1-4f2a9c", "edge-1", {131072, 50, 600}, "7f3a"));
  EXPECT_EQ(frame["action"], "hello");
  EXPECT_EQ(frame["protocol"], 2);
  EXPECT_EQ(frame["epoch"], "7f3a");
  EXPECT_EQ(frame["user"], "alice");
  EXPECT_EQ(frame["connection_id"], "e1-4f2a9c");
  EXPECT_EQ(frame["server"], "edge-1");
  ASSERT_TRUE(frame["limits"].is_object()) << json::serialize(frame);
  json::object& limits = frame["limits"].get_object();
  EXPECT_EQ(limits["max_message_bytes"], 131072);
  EXPECT_EQ(limits["messages_per_second"], 50);
  EXPECT_EQ(limits["idle_timeout_s"], 600);
}

TEST(EncodeTest, DeliveryHasEveryFieldOldAndNewClientsRead) {
  const std::string message = "<b>\"quoted\"</b>\n\u00e9\u2603";
  json::object frame = Frame(EncodeDelivery(
      {"01JD7X", "conv", 3, 42, "alice", "bob", message, 1764050000123, false, "", ""}));
  EXPECT_EQ(frame["action"], "send");
  EXPECT_EQ(frame["conversation"], "conv");
  EXPECT_EQ(frame["seq"], 3);
  EXPECT_EQ(frame["useq"], 42);
  EXPECT_EQ(frame["sent_by"], "alice");
  EXPECT_EQ(frame["send_to"], "bob");
  EXPECT_EQ(frame["message"], json::string(message)) << "the message must round-trip verbatim";
  EXPECT_EQ(frame["id"], "01JD7X");
  EXPECT_EQ(frame["ts"], 1764050000123);
}

TEST(EncodeTest, OnlyServerMessagesCarryServerTypeAndMetadata) {
  MessageObject plain;
  plain.id = "01JD7X";
  plain.conversation = "conv";
  plain.seq = 1;
  plain.useq = 1;
  plain.sent_by = "alice";
  plain.send_to = "bob";
  plain.message = "hi";
  plain.ts_ms = 1764050000123;
  json::object frame = Frame(EncodeDelivery(plain));
  EXPECT_FALSE(frame.contains("server")) << "a WebSocket user's message: " << frame;
  EXPECT_FALSE(frame.contains("type")) << frame;
  EXPECT_FALSE(frame.contains("metadata")) << frame;

  MessageObject notice = plain;
  notice.sent_by = "system";
  notice.server = true;
  notice.type = "notice.maintenance";
  notice.metadata = R"({"window_min":30,"links":["a"]})";
  frame = Frame(EncodeDelivery(notice));
  EXPECT_EQ(frame["server"], true);
  EXPECT_EQ(frame["type"], "notice.maintenance");
  ASSERT_TRUE(frame["metadata"].is_object()) << "metadata is an object, not a string: " << frame;
  EXPECT_EQ(frame["metadata"], json::parse(R"({"window_min":30,"links":["a"]})"));
  EXPECT_EQ(frame["message"], "hi") << "the text stays for clients that ignore the rest";

  // The same in stored-message replies.
  SyncReply reply;
  reply.messages = {plain, notice};
  reply.useq = 2;
  json::object synced = Frame(EncodeSynced(&reply, std::nullopt));
  const json::array& messages = synced["messages"].as_array();
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_FALSE(messages[0].as_object().contains("server"));
  EXPECT_EQ(messages[1].as_object().at("server"), true);
  EXPECT_EQ(messages[1].as_object().at("type"), "notice.maintenance");
  EXPECT_TRUE(messages[1].as_object().at("metadata").is_object());
  HistoryReply history;
  history.with = "system";
  history.conversation = "conv";
  history.messages = {notice};
  json::object page = Frame(EncodeHistory(history, std::nullopt));
  EXPECT_EQ(page["messages"].as_array()[0].as_object().at("server"), true);

  // Metadata that is not an object (never accepted upstream) is left out.
  notice.metadata = "[1]";
  EXPECT_FALSE(Frame(EncodeDelivery(notice)).contains("metadata"));
}

TEST(EncodeTest, SentReply) {
  json::object frame = Frame(EncodeSent(
      json::value("c-17"), {absl::OkStatus(), "01JD7X", 1764050000123, 2, "conv", 3, 41, false}));
  EXPECT_EQ(frame["action"], "sent");
  EXPECT_EQ(frame["conversation"], "conv");
  EXPECT_EQ(frame["seq"], 3);
  EXPECT_EQ(frame["useq"], 41);
  EXPECT_FALSE(frame.contains("duplicate"));
  EXPECT_EQ(frame["request_id"], "c-17");
  EXPECT_EQ(frame["id"], "01JD7X");
  EXPECT_EQ(frame["ts"], 1764050000123);
  EXPECT_EQ(frame["delivered"], 2);
}

TEST(EncodeTest, UsersReplyWithAndWithoutNext) {
  json::object frame = Frame(EncodeUsers({{"alice", true}, {"bob", false}}, "bob", json::value(9)));
  EXPECT_EQ(frame["action"], "users");
  EXPECT_EQ(json::serialize(frame["contacts"]),
            R"([{"name":"alice","status":true},{"name":"bob","status":false}])");
  EXPECT_EQ(frame["next"], "bob");
  EXPECT_EQ(frame["request_id"], 9);

  json::object last = Frame(EncodeUsers({}, "", std::nullopt));
  EXPECT_EQ(json::serialize(last["contacts"]), "[]");
  EXPECT_FALSE(last.contains("next")) << "'next' only when there is another page";
  EXPECT_FALSE(last.contains("request_id"));
}

TEST(EncodeTest, WatchingPresenceAndPong) {
  json::object watching = Frame(EncodeWatching({"bob", "carol"}, json::value("w")));
  EXPECT_EQ(watching["action"], "watching");
  EXPECT_EQ(json::serialize(watching["users"]), R"(["bob","carol"])");
  EXPECT_EQ(watching["request_id"], "w");

  json::object presence = Frame(EncodePresence("bob", false, 1764050000456));
  EXPECT_EQ(presence["action"], "presence");
  EXPECT_EQ(presence["name"], "bob");
  EXPECT_EQ(presence["status"], false);
  EXPECT_EQ(presence["ts"], 1764050000456);

  json::object pong = Frame(EncodePong(1764050000789, std::nullopt));
  EXPECT_EQ(pong["action"], "pong");
  EXPECT_EQ(pong["ts"], 1764050000789);
  EXPECT_FALSE(pong.contains("request_id"));
  EXPECT_EQ(Frame(EncodePong(1, json::value(5)))["request_id"], 5);
}

// ---- version 2 actions ----

template <typename T>
T ParseAs(const std::string& text) {
  auto parsed = ParseRequest(text);
  if (!std::holds_alternative<Request>(parsed)) {
    ADD_FAILURE() << "refused: " << text << ": " << std::get<RequestError>(parsed).message;
    return {};
  }
  const Action& action = std::get<Request>(parsed).action;
  if (!std::holds_alternative<T>(action)) {
    ADD_FAILURE() << "wrong action for " << text;
    return {};
  }
  return std::get<T>(action);
}

TEST(ParseV2Test, SyncDefaultsAndCaps) {
  SyncAction sync = ParseAs<SyncAction>(R"({"action":"sync"})");
  EXPECT_EQ(sync.since, 0);
  EXPECT_EQ(sync.limit, 500);
  sync = ParseAs<SyncAction>(R"({"action":"sync","since":41,"limit":9000,"epoch":"7f"})");
  EXPECT_EQ(sync.since, 41);
  EXPECT_EQ(sync.limit, 500) << "above the cap it is capped";
  EXPECT_EQ(sync.epoch, "7f");
}

TEST(ParseV2Test, IllTypedOrOutOfRangeFieldsAreBadRequests) {
  for (const char* text : {
           R"({"action":"sync","since":-1})",
           R"({"action":"sync","limit":0})",
           R"({"action":"sync","limit":"x"})",
           R"({"action":"sync","limit":1.5})",
           R"({"action":"sync","epoch":7})",
           R"({"action":"history"})",
           R"({"action":"history","with":""})",
           R"({"action":"history","with":"bob","before":-3})",
           R"({"action":"conversations","limit":1.5})",
           R"({"action":"conversations","after":3})",
           R"({"action":"read","with":"bob"})",
           R"({"action":"read","with":"bob","seq":-1})",
           R"({"action":"read","seq":3})",
           R"({"action":"send","send_to":"bob","message":"x","idempotency_key":""})",
           R"({"action":"send","send_to":"bob","message":"x","idempotency_key":5})",
       }) {
    RequestError e = ParseError(text);
    EXPECT_EQ(e.code, ErrorCode::kBadRequest) << text;
  }
  RequestError long_key =
      ParseError(R"({"action":"send","send_to":"bob","message":"x","idempotency_key":")" +
                 std::string(65, 'k') + R"("})");
  EXPECT_EQ(long_key.code, ErrorCode::kBadRequest);
}

TEST(ParseV2Test, HistoryReadAndConversations) {
  HistoryAction h =
      ParseAs<HistoryAction>(R"({"action":"history","with":"bob","before":120,"limit":50})");
  EXPECT_EQ(h.with, "bob");
  EXPECT_EQ(h.before, 120);
  EXPECT_EQ(h.limit, 50);
  EXPECT_EQ(ParseAs<HistoryAction>(R"({"action":"history","with":"bob"})").limit, 50);
  ReadAction r = ParseAs<ReadAction>(R"({"action":"read","with":"bob","seq":120})");
  EXPECT_EQ(r.seq, 120);
  ConversationsAction c = ParseAs<ConversationsAction>(R"({"action":"conversations","after":"x"})");
  EXPECT_EQ(c.limit, 50);
  EXPECT_EQ(c.after, "x");
}

TEST(EncodeV2Test, SyncedStaysUnderOneMebibyte) {
  SyncReply reply;
  for (int i = 1; i <= 40; ++i) {
    // Control characters take six bytes each once escaped.
    reply.messages.push_back(
        {"id", "c", i, i, "a", "b", std::string(20000, '\x01'), 1, false, "", ""});
  }
  reply.useq = 40;
  std::string frame = EncodeSynced(&reply, std::nullopt);
  EXPECT_LE(frame.size(), kMaxReplyBytes);
  json::object o = Frame(frame);
  EXPECT_EQ(o["more"], true);
  const auto& arr = o["messages"].as_array();
  ASSERT_FALSE(arr.empty());
  EXPECT_EQ(o["useq"], arr.back().as_object().at("useq")) << "useq is the last one included";
  EXPECT_EQ(reply.messages.size(), arr.size());
}

TEST(EncodeV2Test, ConversationsStayUnderOneMebibyteAndPageOn) {
  ConversationsReply reply;
  for (int i = 0; i < 20; ++i) {
    ConversationEntry e;
    e.with = "peer" + std::to_string(i);
    e.conversation = "c" + std::to_string(i);
    e.last = {"id", e.conversation, 1,  100 - i, e.with, "me", std::string(30000, '\x02'),
              1,    false,          "", ""};
    reply.items.push_back(e);
  }
  std::string frame = EncodeConversations(reply, std::nullopt);
  EXPECT_LE(frame.size(), kMaxReplyBytes);
  json::object o = Frame(frame);
  const auto& items = o["items"].as_array();
  ASSERT_FALSE(items.empty());
  ASSERT_LT(items.size(), 20u);
  EXPECT_EQ(o["next"], json::value(std::to_string(
                           items.back().as_object().at("last").as_object().at("useq").as_int64())))
      << "the next page starts after the last item shown";
}

TEST(EncodeV2Test, ReceiptHasOnlyTheMarkThatMoved) {
  json::object o = Frame(EncodeReceipt({"c", "alice", 120, 0, 5}));
  EXPECT_EQ(o["action"], "receipt");
  EXPECT_EQ(o["read_seq"], 120);
  EXPECT_FALSE(o.contains("delivered_seq"));
}

}  // namespace
}  // namespace chat::edge

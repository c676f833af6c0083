// Messages from backends through the public gRPC API, as WebSocket clients
// see them (the three real binaries): "server": true, "type" and "metadata"
// in the live frame and in stored-message replies; a WebSocket user's frames
// never carry them, whatever the user writes in their own frame.
#include <chrono>

#include "chat/v1/chat.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

chat::v1::SendResponse BackendSend(chat::v1::MessageService::Stub* stub,
                                   const chat::v1::SendRequest& request, grpc::Status* status) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  chat::v1::SendResponse response;
  *status = stub->Send(&ctx, request, &response);
  return response;
}

bool IsSendWithMessage(const json::object& frame, const std::string& message) {
  return Str(frame, "action") == "send" && Str(frame, "message") == message;
}

TEST(ServerMessageTest, BackendMessagesAreMarkedAndTypedUserMessagesNever) {
  Cluster cluster("server-messages");
  ASSERT_TRUE(cluster.Start().ok());
  auto bob = Connect(cluster.edge_port(), "bob");
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(bob && alice);
  auto stub = chat::v1::MessageService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.message_port()), grpc::InsecureChannelCredentials()));

  chat::v1::SendRequest request;
  request.set_sent_by("billing");
  request.set_send_to("bob");
  request.set_message("Invoice 1042 is ready");
  request.set_type("invoice.ready");
  request.set_metadata(R"({"invoice":1042,"lines":[{"sku":"x","qty":2}]})");
  grpc::Status status;
  chat::v1::SendResponse sent = BackendSend(stub.get(), request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(sent.delivered(), 1);

  auto frame = bob->ReadAction("send");
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(Str(*frame, "id"), sent.id()) << json::serialize(*frame);
  EXPECT_EQ(Str(*frame, "sent_by"), "billing");
  EXPECT_EQ(Str(*frame, "message"), "Invoice 1042 is ready") << "the text stays for old clients";
  ASSERT_TRUE(frame->contains("server")) << json::serialize(*frame);
  EXPECT_EQ(frame->at("server"), true);
  EXPECT_EQ(Str(*frame, "type"), "invoice.ready");
  ASSERT_TRUE(frame->contains("metadata") && frame->at("metadata").is_object())
      << "metadata is a JSON object, not a string: " << json::serialize(*frame);
  EXPECT_EQ(frame->at("metadata"),
            json::parse(R"({"invoice":1042,"lines":[{"sku":"x","qty":2}]})"));

  // alice tries to pass as the server: her frame's extra fields are ignored.
  ASSERT_TRUE(alice
                  ->SendText(R"({"action":"send","send_to":"bob","sent_by":"alice",)"
                             R"("message":"trust me","server":true,"type":"invoice.ready",)"
                             R"("metadata":{"invoice":1},"request_id":"r1"})")
                  .ok());
  auto answer = alice->ReadAction("sent");
  ASSERT_TRUE(answer.ok()) << answer.status();
  auto hers = bob->ReadAction("send");
  ASSERT_TRUE(hers.ok()) << hers.status();
  EXPECT_TRUE(IsSendWithMessage(*hers, "trust me")) << json::serialize(*hers);
  EXPECT_FALSE(hers->contains("server")) << json::serialize(*hers);
  EXPECT_FALSE(hers->contains("type")) << json::serialize(*hers);
  EXPECT_FALSE(hers->contains("metadata")) << json::serialize(*hers);
  // Nor anything a version 1 client did not get before: the old fields only
  // (plus the version 2 numbers).
  for (const auto& [key, value] : *hers) {
    static const char* const kKnown[] = {"action", "sent_by", "send_to",      "message", "id",
                                         "ts",     "seq",     "conversation", "useq"};
    bool known = false;
    for (const char* k : kKnown) known = known || key == k;
    EXPECT_TRUE(known) << "unexpected field " << key << " in " << json::serialize(*hers);
  }

  // Stored with the message: bob's sync returns the same fields.
  ASSERT_TRUE(bob->SendText(R"({"action":"sync","since":0,"request_id":"s1"})").ok());
  auto synced = bob->ReadAction("synced");
  ASSERT_TRUE(synced.ok()) << synced.status();
  const json::array& messages = synced->at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u) << json::serialize(*synced);
  const json::object& first = messages[0].as_object();
  EXPECT_EQ(first.at("server"), true) << json::serialize(first);
  EXPECT_EQ(Str(first, "type"), "invoice.ready");
  EXPECT_TRUE(first.at("metadata").is_object()) << json::serialize(first);
  const json::object& second = messages[1].as_object();
  EXPECT_FALSE(second.contains("server")) << json::serialize(second);
  EXPECT_FALSE(second.contains("type")) << json::serialize(second);

  // Several recipients: each gets their own server message.
  chat::v1::SendRequest both;
  both.set_sent_by("system");
  both.add_recipients("alice");
  both.add_recipients("bob");
  both.set_message("Maintenance at 18:00");
  both.set_type("notice.maintenance");
  chat::v1::SendResponse results = BackendSend(stub.get(), both, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(results.results_size(), 2);
  for (WsClient* client : {alice.get(), bob.get()}) {
    auto notice = client->ReadAction("send");
    ASSERT_TRUE(notice.ok()) << notice.status();
    EXPECT_TRUE(IsSendWithMessage(*notice, "Maintenance at 18:00")) << json::serialize(*notice);
    EXPECT_EQ(notice->at("server"), true);
    EXPECT_EQ(Str(*notice, "type"), "notice.maintenance");
    EXPECT_FALSE(notice->contains("metadata")) << "none was given";
  }
}

// DeleteUser through the real services: the messages go, the user's socket
// closes with 4003, the name is unknown until someone connects with it again.
TEST(ServerMessageTest, DeleteUserErasesAndDisconnects) {
  Cluster cluster("delete-user");
  ASSERT_TRUE(cluster.Start().ok());
  auto carol = Connect(cluster.edge_port(), "carol");
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(carol && alice);
  for (const char* text : {"one", "two"}) {
    ASSERT_TRUE(alice
                    ->SendText(absl::StrCat(R"({"action":"send","send_to":"carol","message":")",
                                            text, R"(","request_id":"r"})"))
                    .ok());
    ASSERT_TRUE(alice->ReadAction("sent").ok());
    ASSERT_TRUE(carol->ReadAction("send").ok());
  }
  auto stub = chat::v1::MessageService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.message_port()), grpc::InsecureChannelCredentials()));
  chat::v1::DeleteUserRequest request;
  request.set_name("carol");
  chat::v1::DeleteUserResponse response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  grpc::Status status = stub->DeleteUser(&ctx, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.messages_deleted(), 2);
  EXPECT_EQ(response.disconnected(), 1);
  auto closed = carol->ReadUntilClosed(10s);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(*closed, 4003);

  // alice's stream lost the erased messages; carol is unknown now.
  ASSERT_TRUE(alice->SendText(R"({"action":"sync","request_id":"s"})").ok());
  auto synced = alice->ReadAction("synced");
  ASSERT_TRUE(synced.ok()) << synced.status();
  EXPECT_TRUE(synced->at("messages").as_array().empty()) << json::serialize(*synced);
  ExpectError(*alice, R"({"action":"send","send_to":"carol","message":"hello?","request_id":"u"})",
              "unknown_user");
  grpc::ClientContext again;
  again.set_deadline(std::chrono::system_clock::now() + 10s);
  EXPECT_EQ(stub->DeleteUser(&again, request, &response).error_code(), grpc::StatusCode::NOT_FOUND);

  // The name starts afresh.
  auto back = Connect(cluster.edge_port(), "carol");
  ASSERT_TRUE(back);
  ASSERT_TRUE(alice
                  ->SendText(R"({"action":"send","send_to":"carol","message":"welcome",)"
                             R"("request_id":"w"})")
                  .ok());
  auto sent = alice->ReadAction("sent");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->at("seq"), 1) << json::serialize(*sent);
  auto got = back->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "message"), "welcome");
  EXPECT_EQ(got->at("useq"), 1) << json::serialize(*got);
}

}  // namespace
}  // namespace chat::testing

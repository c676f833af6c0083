#include "message-service/message_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "message-service/edge_links.h"
#include "message-service/id_generator.h"
#include "message-service/router.h"
#include "message-service/routes_feed.h"
#include "message-service/routing_table.h"
#include "tests/grpc/grpc_test_util.h"
#include "tests/support/fake_clock.h"

namespace chat::message {
namespace {

using chat::testing::Ctx;
using chat::testing::Show;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
namespace v1 = chat::v1;

constexpr int64_t kNow = 1764050000123;

// One edge's EdgeLink, driven with the sync API: everything the service sent
// down the link is gathered in `deliveries` and `results`.
class Link {
 public:
  explicit Link(v1::MessageService::Stub* stub) : ctx_(Ctx(std::chrono::seconds(20))) {
    stream_ = stub->EdgeLink(ctx_.get());
  }

  bool WriteHello(const std::string& edge_id) {
    v1::EdgeUp hello;
    hello.set_edge_id(edge_id);
    return stream_->Write(hello);
  }

  // Sends the hello and reads the greeting (an empty EdgeDown).
  ::testing::AssertionResult Hello(const std::string& edge_id) {
    if (!WriteHello(edge_id)) return ::testing::AssertionFailure() << "hello not written";
    v1::EdgeDown greeting;
    if (!stream_->Read(&greeting)) {
      return ::testing::AssertionFailure() << "no greeting; stream ended with " << Show(Finish());
    }
    if (greeting.deliveries_size() + greeting.results_size() != 0) {
      return ::testing::AssertionFailure()
             << "the greeting is not empty: " << greeting.DebugString();
    }
    return ::testing::AssertionSuccess();
  }

  bool Send(const std::vector<std::pair<uint64_t, v1::SendRequest>>& sends) {
    v1::EdgeUp up;
    for (const auto& [seq, request] : sends) {
      auto* s = up.add_sends();
      s->set_seq(seq);
      *s->mutable_request() = request;
    }
    return stream_->Write(up);
  }

  // Reads until at least `results` results and `deliveries` deliveries came.
  ::testing::AssertionResult ReadUntil(size_t results, size_t deliveries) {
    while (this->results.size() < results || this->deliveries.size() < deliveries) {
      v1::EdgeDown down;
      if (!stream_->Read(&down)) {
        return ::testing::AssertionFailure()
               << "stream ended after " << this->results.size() << " results and "
               << this->deliveries.size() << " deliveries (wanted " << results << " and "
               << deliveries << "): " << Show(Finish());
      }
      ++messages;
      for (auto& r : *down.mutable_results()) this->results.push_back(std::move(r));
      for (auto& d : *down.mutable_deliveries()) this->deliveries.push_back(std::move(d));
    }
    return ::testing::AssertionSuccess();
  }

  // The result for `seq`, or a default one after recording a failure.
  v1::EdgeSendResult Result(uint64_t seq) const {
    for (const auto& r : results) {
      if (r.seq() == seq) return r;
    }
    ADD_FAILURE() << "no result for seq " << seq;
    return {};
  }

  grpc::Status Finish() {
    if (!finished_) {
      stream_->WritesDone();
      status_ = stream_->Finish();
      finished_ = true;
    }
    return status_;
  }
  // Reads until the server ends the stream; returns its status.
  grpc::Status ReadToEnd() {
    v1::EdgeDown down;
    while (stream_->Read(&down)) {
    }
    return Finish();
  }

  std::vector<v1::EdgeSendResult> results;
  std::vector<v1::Delivery> deliveries;
  int messages = 0;

 private:
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::EdgeUp, v1::EdgeDown>> stream_;
  grpc::Status status_;
  bool finished_ = false;
};

v1::SendRequest Req(const std::string& from, const std::string& to, const std::string& message) {
  v1::SendRequest r;
  r.set_sent_by(from);
  r.set_send_to(to);
  r.set_message(message);
  return r;
}

std::string StatusName(v1::SendStatus s) { return v1::SendStatus_Name(s); }

class MessageServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = server_.Start(&service_);
    ASSERT_TRUE(started.ok()) << started;
    channel_ = server_.channel();
    stub_ = v1::MessageService::NewStub(channel_);
  }

  // The routes connection-service would stream: alice on e1 twice, carol on
  // e2, bob known but offline.
  void LoadRoutes() {
    v1::RouteUpdate snapshot;
    snapshot.set_reset(true);
    for (const char* user : {"alice", "bob", "carol"}) snapshot.add_users(user);
    auto add = [&](const char* id, const char* user, const char* edge) {
      auto* c = snapshot.add_changes();
      c->set_kind(v1::RouteChange::ADDED);
      c->mutable_connection()->set_connection_id(id);
      c->mutable_connection()->set_user(user);
      c->mutable_connection()->set_edge_id(edge);
    };
    add("e1-1", "alice", "e1");
    add("e1-2", "alice", "e1");
    add("e2-1", "carol", "e2");
    snapshot.set_snapshot_done(true);
    ApplyRouteUpdate(snapshot, &table_);
  }

  RoutingTable table_;
  IdGenerator ids_{7};
  chat::testing::FakeClock clock_{kNow};
  Router router_{&table_, &ids_, &clock_, 128 * 1024};
  EdgeLinks links_;
  MessageServiceImpl service_{&router_, &links_, MessageServiceOptions()};
  chat::testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::MessageService::Stub> stub_;
};

TEST_F(MessageServiceTest, EdgeLinkIsRefusedWhileTheRoutingTableIsNotLoaded) {
  Link link(stub_.get());
  link.WriteHello("e1");  // may or may not get through; the answer is what matters
  grpc::Status status = link.ReadToEnd();
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << Show(status);
  EXPECT_EQ(links_.size(), 0u);
}

TEST_F(MessageServiceTest, FirstEdgeUpWithoutEdgeIdIsInvalid) {
  LoadRoutes();
  Link link(stub_.get());
  ASSERT_TRUE(link.Send({{1, Req("alice", "alice", "hi")}}));
  grpc::Status status = link.ReadToEnd();
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
}

TEST_F(MessageServiceTest, ABatchOfSendsGetsResultsAndGroupedDeliveries) {
  LoadRoutes();
  Link e1(stub_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e1.Send({{11, Req("alice", "alice", "note to self")},
                       {12, Req("alice", "nobody", "hi")},
                       {13, Req("alice", "bob", "hi")},
                       {14, Req("alice", " bad", "hi")}}));
  ASSERT_TRUE(e1.ReadUntil(4, 1));

  v1::EdgeSendResult ok = e1.Result(11);
  EXPECT_EQ(StatusName(ok.status()), "SEND_OK") << ok.error();
  EXPECT_EQ(ok.delivered(), 2) << "alice has two connections on e1";
  EXPECT_EQ(ok.id().size(), 26u) << ok.id();
  EXPECT_EQ(ok.ts_ms(), kNow);
  EXPECT_EQ(StatusName(e1.Result(12).status()), "SEND_UNKNOWN_USER");
  EXPECT_EQ(StatusName(e1.Result(13).status()), "SEND_RECIPIENT_OFFLINE");
  EXPECT_EQ(StatusName(e1.Result(14).status()), "SEND_BAD_REQUEST");
  EXPECT_NE(e1.Result(14).error(), "") << "a refused send says why";

  ASSERT_EQ(e1.deliveries.size(), 1u) << "one payload per edge, not one per connection";
  const v1::Delivery& d = e1.deliveries[0];
  EXPECT_THAT(d.connection_ids(), UnorderedElementsAre("e1-1", "e1-2"));
  EXPECT_EQ(d.message(), "note to self");
  EXPECT_EQ(d.sent_by(), "alice");
  EXPECT_EQ(d.send_to(), "alice");
  EXPECT_EQ(d.id(), ok.id()) << "the delivery and the sender's result carry the same id";
  EXPECT_EQ(d.ts_ms(), kNow);
  EXPECT_TRUE(e1.Finish().ok()) << Show(e1.Finish());
}

TEST_F(MessageServiceTest, DeliveriesGoDownTheRecipientsEdgeLink) {
  LoadRoutes();
  Link e1(stub_.get());
  Link e2(stub_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  ASSERT_TRUE(e1.Send({{1, Req("alice", "carol", "hello carol")}}));
  ASSERT_TRUE(e1.ReadUntil(1, 0));
  EXPECT_EQ(StatusName(e1.Result(1).status()), "SEND_OK");
  EXPECT_EQ(e1.Result(1).delivered(), 1);
  ASSERT_TRUE(e2.ReadUntil(0, 1));
  EXPECT_THAT(e2.deliveries[0].connection_ids(), ElementsAre("e2-1"));
  EXPECT_EQ(e2.deliveries[0].message(), "hello carol");
  EXPECT_THAT(e2.results, IsEmpty()) << "results go only to the sender's edge";
  EXPECT_THAT(e1.deliveries, IsEmpty()) << "alice's edge must not get carol's message";
  EXPECT_TRUE(e1.Finish().ok());
  EXPECT_TRUE(e2.Finish().ok());
}

TEST_F(MessageServiceTest, MessagesFromOneSenderArriveInOrder) {
  LoadRoutes();
  Link e1(stub_.get());
  Link e2(stub_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; i += 3) {  // batches of 3
    ASSERT_TRUE(
        e1.Send({{static_cast<uint64_t>(i), Req("alice", "carol", absl::StrCat("m", i))},
                 {static_cast<uint64_t>(i + 1), Req("alice", "carol", absl::StrCat("m", i + 1))},
                 {static_cast<uint64_t>(i + 2), Req("alice", "carol", absl::StrCat("m", i + 2))}}));
  }
  ASSERT_TRUE(e2.ReadUntil(0, kMessages));
  ASSERT_TRUE(e1.ReadUntil(kMessages, 0));
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(e2.deliveries[i].message(), absl::StrCat("m", i)) << "delivery " << i;
    ASSERT_EQ(e1.results[i].seq(), static_cast<uint64_t>(i)) << "result " << i;
    if (i > 0) {
      ASSERT_LT(e2.deliveries[i - 1].id(), e2.deliveries[i].id()) << "ids sort in send order";
    }
  }
}

TEST_F(MessageServiceTest, UnarySendReturnsPerConnectionResults) {
  LoadRoutes();
  Link e1(stub_.get());
  ASSERT_TRUE(e1.Hello("e1"));  // e2 has no link: carol's connection cannot be reached

  v1::SendResponse response;
  grpc::Status status = stub_->Send(Ctx().get(), Req("system", "alice", "maintenance"), &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(StatusName(response.status()), "SEND_OK");
  EXPECT_EQ(response.delivered(), 2);
  EXPECT_EQ(response.id().size(), 26u);
  EXPECT_EQ(response.ts_ms(), kNow);
  std::vector<std::string> connections;
  for (const auto& c : response.connections()) {
    connections.push_back(
        absl::StrCat(c.connection_id(), "@", c.edge_id(), c.delivered() ? " ok" : " no"));
  }
  EXPECT_THAT(connections, UnorderedElementsAre("e1-1@e1 ok", "e1-2@e1 ok"));
  ASSERT_TRUE(e1.ReadUntil(0, 1)) << "the unary send must be pushed down e1's link";
  EXPECT_EQ(e1.deliveries[0].message(), "maintenance");

  status = stub_->Send(Ctx().get(), Req("system", "carol", "hi"), &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(StatusName(response.status()), "SEND_OK");
  EXPECT_EQ(response.delivered(), 0) << "carol's edge has no link";
  ASSERT_EQ(response.connections_size(), 1);
  EXPECT_FALSE(response.connections(0).delivered())
      << "the caller must learn that carol's connection was not reached";
  EXPECT_TRUE(e1.Finish().ok());
}

TEST_F(MessageServiceTest, UnarySendAnswersUnknownAndOfflineAsResults) {
  LoadRoutes();
  v1::SendResponse response;
  grpc::Status status = stub_->Send(Ctx().get(), Req("system", "nobody", "hi"), &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(StatusName(response.status()), "SEND_UNKNOWN_USER");
  status = stub_->Send(Ctx().get(), Req("system", "bob", "hi"), &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(StatusName(response.status()), "SEND_RECIPIENT_OFFLINE");
  EXPECT_EQ(response.delivered(), 0);
}

TEST_F(MessageServiceTest, UnarySendFailuresUseCanonicalCodes) {
  v1::SendResponse response;
  grpc::Status status = stub_->Send(Ctx().get(), Req("system", "alice", "hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << "table not loaded; got " << Show(status);
  LoadRoutes();
  status = stub_->Send(Ctx().get(), Req("system", "", "hi"), &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  // (Invalid UTF-8 cannot get this far: protobuf refuses it in string fields.)
  status =
      stub_->Send(Ctx().get(), Req("system", "alice", std::string(128 * 1024 + 1, 'x')), &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT)
      << "a message over the limit; got " << Show(status);
}

TEST_F(MessageServiceTest, RouteChangesApplyWithoutReconnecting) {
  LoadRoutes();
  Link e1(stub_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  v1::RouteUpdate change;
  auto* c = change.add_changes();
  c->set_kind(v1::RouteChange::ADDED);
  c->mutable_connection()->set_connection_id("e1-9");
  c->mutable_connection()->set_user("dave");
  c->mutable_connection()->set_edge_id("e1");
  ApplyRouteUpdate(change, &table_);

  ASSERT_TRUE(e1.Send({{1, Req("alice", "dave", "welcome")}}));
  ASSERT_TRUE(e1.ReadUntil(1, 1));
  EXPECT_EQ(StatusName(e1.Result(1).status()), "SEND_OK") << e1.Result(1).error();
  EXPECT_THAT(e1.deliveries[0].connection_ids(), ElementsAre("e1-9"));
  EXPECT_TRUE(e1.Finish().ok());
}

TEST_F(MessageServiceTest, HealthServiceAnswersServing) {
  std::string error;
  EXPECT_EQ(chat::testing::HealthCheck(channel_, "", &error), 1) << "1 = SERVING; " << error;
}

}  // namespace
}  // namespace chat::message

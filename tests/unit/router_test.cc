#include "message-service/router.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace chat::message {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

const char* OutcomeName(SendOutcome o) {
  switch (o) {
    case SendOutcome::kOk:
      return "ok";
    case SendOutcome::kUnknownUser:
      return "unknown_user";
    case SendOutcome::kRecipientOffline:
      return "recipient_offline";
    case SendOutcome::kBadRequest:
      return "bad_request";
    case SendOutcome::kUnavailable:
      return "unavailable";
  }
  return "?";
}

// Each group as "edge: conn conn".
std::vector<std::string> Groups(const RoutedMessage& m) {
  std::vector<std::string> out;
  for (const auto& g : m.edges) {
    std::string s = g.edge_id + ":";
    for (const auto& c : g.connection_ids) s += " " + c;
    out.push_back(s);
  }
  return out;
}

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : ids_(7), router_(&table_, &ids_, &clock_, /*max_message_bytes=*/100) {
    table_.AddUsers({"bob"});  // known, offline
    table_.Add("alice", {"e1-1", "e1"});
    table_.Add("carol", {"e1-2", "e1"});
    table_.Add("carol", {"e2-1", "e2"});
    table_.Add("carol", {"e1-3", "e1"});
    table_.MarkReady();
  }

  RoutingTable table_;
  IdGenerator ids_;
  chat::testing::FakeClock clock_{1764050000123};
  Router router_;
};

TEST_F(RouterTest, OnlineRecipientGetsIdTimeAndDeliveriesGroupedPerEdge) {
  RoutedMessage m = router_.Route({"alice", "carol", "hi"});
  ASSERT_STREQ(OutcomeName(m.outcome), "ok") << m.error;
  EXPECT_EQ(m.id.size(), 26u) << m.id;
  EXPECT_EQ(m.ts_ms, 1764050000123) << "ts is the server's receive time";
  EXPECT_THAT(Groups(m), UnorderedElementsAre("e1: e1-2 e1-3", "e2: e2-1"))
      << "one group per edge, all of that edge's connections in it";
}

TEST_F(RouterTest, EachSendGetsANewLargerId) {
  std::string first = router_.Route({"alice", "alice", "one"}).id;
  std::string second = router_.Route({"alice", "alice", "two"}).id;
  EXPECT_LT(first, second);
}

TEST_F(RouterTest, SendingToYourselfIsAllowed) {
  RoutedMessage m = router_.Route({"alice", "alice", "note to self"});
  EXPECT_STREQ(OutcomeName(m.outcome), "ok") << m.error;
  EXPECT_THAT(Groups(m), ElementsAre("e1: e1-1"));
}

TEST_F(RouterTest, UnknownAndOfflineRecipientsAreDifferentOutcomes) {
  RoutedMessage unknown = router_.Route({"alice", "nobody", "hi"});
  EXPECT_STREQ(OutcomeName(unknown.outcome), "unknown_user");
  EXPECT_THAT(unknown.error, HasSubstr("nobody"));
  EXPECT_THAT(unknown.edges, IsEmpty());

  RoutedMessage offline = router_.Route({"alice", "bob", "hi"});
  EXPECT_STREQ(OutcomeName(offline.outcome), "recipient_offline");
  EXPECT_THAT(offline.error, HasSubstr("bob"));
  EXPECT_EQ(offline.id, "") << "nothing was sent, so no id is used up";
}

TEST_F(RouterTest, NotReadyTableIsUnavailable) {
  table_.MarkNotReady();
  RoutedMessage m = router_.Route({"alice", "carol", "hi"});
  EXPECT_STREQ(OutcomeName(m.outcome), "unavailable");
  EXPECT_FALSE(router_.Ready());
}

TEST_F(RouterTest, InvalidSendsAreBadRequests) {
  struct Case {
    SendInput input;
    const char* mentions;
  } cases[] = {
      {{"alice", "", "hi"}, "send_to"},
      {{"alice", " carol", "hi"}, "send_to"},
      {{"", "carol", "hi"}, "sent_by"},
      {{"al\x01ice", "carol", "hi"}, "sent_by"},
      {{"alice", "carol", std::string(101, 'x')}, "longer than 100"},
      {{"alice", "carol", "bad \xff utf-8"}, "UTF-8"},
  };
  for (const auto& c : cases) {
    RoutedMessage m = router_.Route(c.input);
    EXPECT_STREQ(OutcomeName(m.outcome), "bad_request") << c.mentions;
    EXPECT_THAT(m.error, HasSubstr(c.mentions));
    EXPECT_THAT(m.edges, IsEmpty()) << c.mentions;
  }
  EXPECT_STREQ(OutcomeName(router_.Route({"alice", "carol", std::string(100, 'x')}).outcome), "ok")
      << "exactly the limit is allowed";
}

}  // namespace
}  // namespace chat::message

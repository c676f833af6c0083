#include "edge/local_hub.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/edge_fakes.h"

namespace chat::edge {
namespace {

using ::testing::ElementsAre;
using testing::FakeLocalConnection;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

class LocalHubTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeLocalConnection> Connect(const std::string& id) {
    auto c = std::make_shared<FakeLocalConnection>();
    hub_.Add(id, c);
    return c;
  }
  static std::shared_ptr<const std::string> Text(std::string s) {
    return std::make_shared<const std::string>(std::move(s));
  }

  LocalHub hub_;
};

TEST_F(LocalHubTest, DeliverHandsOneSharedFrameToEachLiveTarget) {
  auto a = Connect("e1-1");
  auto b = Connect("e1-2");
  auto other = Connect("e1-3");
  auto frame = Text(R"({"action":"send","message":"hi"})");

  EXPECT_EQ(hub_.Deliver({"e1-1", "e1-2", "e1-404"}, frame), 2)
      << "two known connections, one unknown id";
  ASSERT_EQ(a->frames.size(), 1u);
  ASSERT_EQ(b->frames.size(), 1u);
  EXPECT_EQ(a->frames[0].get(), frame.get()) << "the payload is shared, not copied per target";
  EXPECT_EQ(b->frames[0].get(), frame.get());
  EXPECT_THAT(other->frames, IsEmpty()) << "a connection that was not addressed got a frame";
}

TEST_F(LocalHubTest, RemovedAndDestroyedConnectionsReceiveNothing) {
  auto kept = Connect("e1-1");
  auto removed = Connect("e1-2");
  Connect("e1-3");  // destroyed right away: only a weak_ptr remains in the hub
  hub_.Remove("e1-2");

  EXPECT_EQ(hub_.Deliver({"e1-1", "e1-2", "e1-3"}, Text("{}")), 1);
  EXPECT_EQ(kept->frames.size(), 1u);
  EXPECT_THAT(removed->frames, IsEmpty());
  EXPECT_EQ(hub_.size(), 2u) << "e1-3 is still listed until its session removes it";
}

TEST_F(LocalHubTest, PresenceGoesOnlyToWatchersOfThatUser) {
  auto watches_bob = Connect("e1-1");
  auto watches_carol = Connect("e1-2");
  auto watches_both = Connect("e1-3");
  hub_.SetWatch("e1-1", {"bob"});
  hub_.SetWatch("e1-2", {"carol"});
  hub_.SetWatch("e1-3", {"bob", "carol"});

  hub_.OnPresence("bob", true, 1764050000456);

  EXPECT_THAT(
      watches_bob->texts(),
      ElementsAre(R"({"action":"presence","name":"bob","status":true,"ts":1764050000456})"));
  EXPECT_THAT(watches_carol->texts(), IsEmpty());
  EXPECT_EQ(watches_both->texts(), watches_bob->texts());
  hub_.OnPresence("dave", true, 1);
  EXPECT_EQ(watches_bob->frames.size() + watches_carol->frames.size() + watches_both->frames.size(),
            2u)
      << "nobody watches dave";
}

TEST_F(LocalHubTest, SetWatchReplacesTheSetAndEmptyClearsIt) {
  auto c = Connect("e1-1");
  hub_.SetWatch("e1-1", {"bob", "carol"});
  hub_.SetWatch("e1-1", {"carol"});
  hub_.OnPresence("bob", true, 1);
  EXPECT_THAT(c->texts(), IsEmpty()) << "bob was dropped from the watch set";
  hub_.OnPresence("carol", true, 2);
  EXPECT_EQ(c->frames.size(), 1u);

  hub_.SetWatch("e1-1", {});
  hub_.OnPresence("carol", false, 3);
  EXPECT_EQ(c->frames.size(), 1u) << "[] clears the watch set";
}

TEST_F(LocalHubTest, RemoveDropsTheConnectionsWatches) {
  auto c = Connect("e1-1");
  hub_.SetWatch("e1-1", {"bob"});
  hub_.Remove("e1-1");
  auto reused = Connect("e1-1");  // a later connection must not inherit the watch
  hub_.OnPresence("bob", true, 1);
  EXPECT_THAT(c->frames, IsEmpty());
  EXPECT_THAT(reused->frames, IsEmpty());
}

TEST_F(LocalHubTest, KickReachesOneConnectionKickAllReachesEvery) {
  auto a = Connect("e1-1");
  auto b = Connect("e1-2");
  EXPECT_TRUE(hub_.Kick("e1-1", 1008, "kicked by an operator"));
  EXPECT_FALSE(hub_.Kick("e1-404", 1008, "nobody")) << "unknown id";
  EXPECT_THAT(a->kicks, ElementsAre(Pair(1008, HasSubstr("operator"))));
  EXPECT_THAT(b->kicks, IsEmpty());

  hub_.KickAll(1001, "shutting down");
  EXPECT_THAT(a->kicks, ElementsAre(Pair(1008, ::testing::_), Pair(1001, "shutting down")));
  EXPECT_THAT(b->kicks, ElementsAre(Pair(1001, "shutting down")));
}

}  // namespace
}  // namespace chat::edge

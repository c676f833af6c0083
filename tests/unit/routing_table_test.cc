#include "message-service/routing_table.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat/v1/chat.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "message-service/routes_feed.h"

namespace chat::message {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// "not-ready", "unknown", "offline", or the routes as "conn@edge".
std::vector<std::string> Look(const RoutingTable& table, const std::string& user) {
  LookupResult r = table.Lookup(user);
  switch (r.status) {
    case LookupStatus::kNotReady:
      return {"not-ready"};
    case LookupStatus::kUnknownUser:
      return {"unknown"};
    case LookupStatus::kOffline:
      return {"offline"};
    case LookupStatus::kOnline:
      break;
  }
  std::vector<std::string> out;
  for (const auto& route : r.routes) out.push_back(route.connection_id + "@" + route.edge_id);
  return out;
}

TEST(RoutingTableTest, NotReadyUntilMarkedEvenWithRoutes) {
  RoutingTable table;
  table.Add("alice", {"e1-1", "e1"});
  EXPECT_THAT(Look(table, "alice"), ElementsAre("not-ready"));
  EXPECT_THAT(Look(table, "nobody"), ElementsAre("not-ready"))
      << "an incomplete table cannot tell unknown from offline";
  table.MarkReady();
  EXPECT_THAT(Look(table, "alice"), ElementsAre("e1-1@e1"));
  table.MarkNotReady();
  EXPECT_THAT(Look(table, "alice"), ElementsAre("not-ready"));
}

TEST(RoutingTableTest, UnknownOfflineAndOnlineAreDifferentAnswers) {
  RoutingTable table;
  table.AddUsers({"bob"});
  table.Add("alice", {"e1-1", "e1"});
  table.Add("alice", {"e2-1", "e2"});
  table.MarkReady();
  EXPECT_THAT(Look(table, "alice"), UnorderedElementsAre("e1-1@e1", "e2-1@e2"));
  EXPECT_THAT(Look(table, "bob"), ElementsAre("offline"));
  EXPECT_THAT(Look(table, "carol"), ElementsAre("unknown"));
  EXPECT_THAT(Look(table, "Alice"), ElementsAre("unknown")) << "names are case-sensitive";
}

TEST(RoutingTableTest, RemovingTheLastRouteLeavesTheUserOffline) {
  RoutingTable table;
  table.MarkReady();
  table.Add("alice", {"e1-1", "e1"});
  table.Add("alice", {"e1-2", "e1"});
  table.Remove("alice", "e1-1");
  EXPECT_THAT(Look(table, "alice"), ElementsAre("e1-2@e1"));
  table.Remove("alice", "e1-2");
  EXPECT_THAT(Look(table, "alice"), ElementsAre("offline"));
  EXPECT_EQ(table.connection_count(), 0u);
}

TEST(RoutingTableTest, DuplicateAddsAndUnknownRemovesAreHarmless) {
  RoutingTable table;
  table.MarkReady();
  table.Add("alice", {"e1-1", "e1"});
  table.Add("alice", {"e1-1", "e1"});
  EXPECT_EQ(table.connection_count(), 1u);
  EXPECT_THAT(Look(table, "alice"), ElementsAre("e1-1@e1"));
  table.Remove("alice", "e1-404");
  table.Remove("nobody", "e1-1");
  table.Remove("bob", "e1-1");  // right id, wrong user
  EXPECT_EQ(table.connection_count(), 1u);
  EXPECT_THAT(Look(table, "alice"), ElementsAre("e1-1@e1"));
}

TEST(RoutingTableTest, ResetForgetsEverythingAndIsNotReady) {
  RoutingTable table;
  table.Add("alice", {"e1-1", "e1"});
  table.MarkReady();
  table.Reset();
  EXPECT_FALSE(table.ready());
  EXPECT_EQ(table.connection_count(), 0u);
  table.MarkReady();
  EXPECT_THAT(Look(table, "alice"), ElementsAre("unknown"));
}

// ----- ApplyRouteUpdate -----

chat::v1::RouteChange* AddChange(chat::v1::RouteUpdate* update, chat::v1::RouteChange::Kind kind,
                                 const std::string& id, const std::string& user,
                                 const std::string& edge) {
  auto* change = update->add_changes();
  change->set_kind(kind);
  change->mutable_connection()->set_connection_id(id);
  change->mutable_connection()->set_user(user);
  change->mutable_connection()->set_edge_id(edge);
  return change;
}

TEST(ApplyRouteUpdateTest, ASnapshotInChunksIsReadyOnlyAtItsEnd) {
  RoutingTable table;
  chat::v1::RouteUpdate first;
  first.set_reset(true);
  first.add_users("alice");
  first.add_users("bob");
  AddChange(&first, chat::v1::RouteChange::ADDED, "e1-1", "alice", "e1");
  ApplyRouteUpdate(first, &table);
  EXPECT_FALSE(table.ready()) << "half a snapshot must not be used for routing";

  chat::v1::RouteUpdate last;
  AddChange(&last, chat::v1::RouteChange::ADDED, "e2-1", "alice", "e2");
  last.set_snapshot_done(true);
  ApplyRouteUpdate(last, &table);
  ASSERT_TRUE(table.ready());
  EXPECT_THAT(Look(table, "alice"), UnorderedElementsAre("e1-1@e1", "e2-1@e2"));
  EXPECT_THAT(Look(table, "bob"), ElementsAre("offline"));
}

TEST(ApplyRouteUpdateTest, ChangesAfterTheSnapshot) {
  RoutingTable table;
  chat::v1::RouteUpdate snapshot;
  snapshot.set_reset(true);
  snapshot.add_users("alice");
  AddChange(&snapshot, chat::v1::RouteChange::ADDED, "e1-1", "alice", "e1");
  snapshot.set_snapshot_done(true);
  ApplyRouteUpdate(snapshot, &table);

  chat::v1::RouteUpdate changes;
  AddChange(&changes, chat::v1::RouteChange::USER_CREATED, "", "carol", "");
  AddChange(&changes, chat::v1::RouteChange::REMOVED, "e1-1", "alice", "e1")
      ->set_reason(chat::v1::RouteChange::LEASE_EXPIRED);
  AddChange(&changes, chat::v1::RouteChange::ADDED, "e3-1", "dave", "e3");
  ApplyRouteUpdate(changes, &table);
  EXPECT_THAT(Look(table, "alice"), ElementsAre("offline"));
  EXPECT_THAT(Look(table, "carol"), ElementsAre("offline")) << "a created user is known";
  EXPECT_THAT(Look(table, "dave"), ElementsAre("e3-1@e3")) << "an added route makes its user known";
  EXPECT_TRUE(table.ready());
}

TEST(ApplyRouteUpdateTest, ANewSnapshotReplacesTheOldTable) {
  RoutingTable table;
  chat::v1::RouteUpdate old_snapshot;
  old_snapshot.set_reset(true);
  old_snapshot.add_users("ghost");
  AddChange(&old_snapshot, chat::v1::RouteChange::ADDED, "e1-1", "ghost", "e1");
  old_snapshot.set_snapshot_done(true);
  ApplyRouteUpdate(old_snapshot, &table);

  chat::v1::RouteUpdate fresh;
  fresh.set_reset(true);
  fresh.add_users("alice");
  fresh.set_snapshot_done(true);
  ApplyRouteUpdate(fresh, &table);
  EXPECT_THAT(Look(table, "ghost"), ElementsAre("unknown"))
      << "a restarted connection-service forgot ghost";
  EXPECT_THAT(Look(table, "alice"), ElementsAre("offline"));
  EXPECT_EQ(table.connection_count(), 0u);
}

}  // namespace
}  // namespace chat::message

// The Dispatcher's reached marks: what the edges report (in any order, with
// holes), what the sender's own messages count for, what FlushMarks (or
// TakeMovedMarks and MarksSaved around a commit) writes to the store and the
// receipts it sends. Runs on a real SQLite store in a temporary directory,
// driven from the test thread as the store worker would.
#include "message-service/dispatcher.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/v1/chat.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "message-service/edge_links.h"
#include "store/open_store.h"
#include "tests/support/fake_clock.h"
#include "tests/support/flaky_message_store.h"

namespace chat::message {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
namespace v1 = chat::v1;

constexpr int64_t kNow = 1764050000123;

// One edge's link: records what the Outbox writes and acknowledges each
// write so the next one can go.
class FakeEdge : public DownWriter {
 public:
  explicit FakeEdge(std::string edge_id)
      : edge_id(std::move(edge_id)), outbox(std::make_shared<Outbox>(this, 1 << 20)) {}

  void StartDownWrite(const v1::EdgeDown* message) override {
    written.push_back(*message);
    in_flight_ = true;
  }
  // Completes the writes in flight (each completion may start the next).
  void Drain() {
    while (in_flight_) {
      in_flight_ = false;
      outbox->OnWriteDone();
    }
  }

  std::vector<v1::Receipt> Receipts() {
    Drain();
    std::vector<v1::Receipt> out;
    for (const auto& down : written)
      out.insert(out.end(), down.receipts().begin(), down.receipts().end());
    return out;
  }
  std::vector<v1::Delivery> Deliveries() {
    Drain();
    std::vector<v1::Delivery> out;
    for (const auto& down : written) {
      out.insert(out.end(), down.deliveries().begin(), down.deliveries().end());
    }
    return out;
  }
  std::vector<v1::Attached> AttachedAnswers() {
    Drain();
    std::vector<v1::Attached> out;
    for (const auto& down : written)
      out.insert(out.end(), down.attached().begin(), down.attached().end());
    return out;
  }

  const std::string edge_id;
  const std::shared_ptr<Outbox> outbox;
  std::vector<v1::EdgeDown> written;

 private:
  bool in_flight_ = false;
};

// "user:delivered_seq@connections" or "user:read_seq@connections".
std::string Describe(const v1::Receipt& r) {
  std::string s = r.user() + (r.read_seq() > 0 ? ":read=" + std::to_string(r.read_seq()) : "") +
                  (r.delivered_seq() > 0 ? ":delivered=" + std::to_string(r.delivered_seq()) : "") +
                  "@";
  for (const auto& id : r.connection_ids()) s += id + ",";
  return s;
}

std::vector<std::string> Describe(const std::vector<v1::Receipt>& receipts) {
  std::vector<std::string> out;
  for (const auto& r : receipts) out.push_back(Describe(r));
  return out;
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/chat-dispatcher-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    url_ = "sqlite:" + dir_ + "/messages.db";
    OpenStore();
  }
  void TearDown() override {
    dispatcher_.reset();
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void OpenStore() {
    dispatcher_.reset();
    store_.reset();
    auto real = store::OpenMessageStore(url_, {});
    ASSERT_TRUE(real.ok()) << real.status();
    store_ = std::make_unique<chat::testing::FlakyMessageStore>(std::move(*real));
    dispatcher_ = std::make_unique<Dispatcher>(&clock_, store_->Epoch());
  }

  v1::Attached Attach(FakeEdge* edge, const std::string& connection_id, const std::string& user) {
    google::protobuf::RepeatedPtrField<v1::Attach> attaches;
    v1::Attach* attach = attaches.Add();
    attach->set_connection_id(connection_id);
    attach->set_user(user);
    attach->set_after_useq(-1);
    const size_t before = edge->AttachedAnswers().size();
    dispatcher_->Attach(edge->outbox, edge->edge_id, attaches, store_.get());
    std::vector<v1::Attached> answers = edge->AttachedAnswers();
    EXPECT_EQ(answers.size(), before + 1) << "one Attached per Attach";
    return answers.empty() ? v1::Attached() : answers.back();
  }

  // Commits one message and hands it to the dispatcher, as the store worker
  // does after a commit.
  store::Committed Send(const std::string& from, const std::string& to,
                        const std::string& from_connection = "") {
    store::NewMessage m;
    m.id = "m" + std::to_string(++next_id_);
    m.sent_by = from;
    m.send_to = to;
    m.text = "text " + m.id;
    m.ts_ms = kNow;
    auto committed = store_->Commit({m});
    EXPECT_TRUE(committed.ok()) << committed.status();
    if (!committed.ok()) return {};
    dispatcher_->Deliver((*committed)[0], from_connection, 0, nullptr);
    return (*committed)[0];
  }

  int64_t PersistedMark(const std::string& user) {
    auto marks = store_->Marks(user);
    EXPECT_TRUE(marks.ok()) << marks.status();
    return marks.ok() ? marks->reached_useq : -1;
  }

  // The peer's delivered mark as `user` sees it in the conversation list.
  int64_t DeliveredSeqSeenBy(const std::string& user, const std::string& peer) {
    auto page = store_->Conversations(user, "", 100, 1 << 20);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return -1;
    for (const auto& item : page->items) {
      if (item.with == peer) return item.delivered_seq;
    }
    ADD_FAILURE() << user << " has no conversation with " << peer;
    return -1;
  }

  chat::testing::FakeClock clock_{kNow};
  std::string dir_;
  std::string url_;
  std::unique_ptr<chat::testing::FlakyMessageStore> store_;
  std::unique_ptr<Dispatcher> dispatcher_;
  int next_id_ = 0;
};

TEST_F(DispatcherTest, ReachedRangesArrivingOutOfOrderMergeIntoThePrefixMark) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 5; ++i) Send("alice", "bob", "a1");  // bob's useq 1..5

  dispatcher_->Reached("bob", 4, 5);
  dispatcher_->Reached("bob", 2, 3);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 0) << "useq 1 has not reached bob: nothing is a prefix yet";
  EXPECT_EQ(DeliveredSeqSeenBy("alice", "bob"), 0);
  EXPECT_THAT(e1.Receipts(), IsEmpty());
  EXPECT_THAT(e2.Receipts(), IsEmpty());

  dispatcher_->Reached("bob", 1, 1);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 5) << "the ranges seen before the hole closed count now";
  EXPECT_EQ(DeliveredSeqSeenBy("alice", "bob"), 5);
  // One receipt covers the five messages, to both users' connections.
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=5@a1,"));
  EXPECT_THAT(Describe(e2.Receipts()), ElementsAre("bob:delivered=5@b1,"));
  EXPECT_EQ(e1.Receipts()[0].conversation(), store::ConversationId("alice", "bob"));
  EXPECT_EQ(e1.Receipts()[0].ts_ms(), kNow);

  // Nothing moved: a flush sends nothing more.
  dispatcher_->Reached("bob", 1, 5);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(e1.Receipts().size(), 1u);
}

TEST_F(DispatcherTest, AHoleHoldsThePrefixMarkUntilItIsFilled) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 5; ++i) Send("alice", "bob", "a1");

  dispatcher_->Reached("bob", 1, 2);
  dispatcher_->Reached("bob", 4, 5);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 2) << "useq 3 is missing: the mark stops before it";
  EXPECT_EQ(DeliveredSeqSeenBy("alice", "bob"), 2);
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=2@a1,"));

  // A later attach learns the mark as it stands (the edge pushes from there).
  FakeEdge e3("e3");
  EXPECT_EQ(Attach(&e3, "b2", "bob").reached_useq(), 2);

  dispatcher_->Reached("bob", 3, 3);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 5);
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=2@a1,", "bob:delivered=5@a1,"));
  EXPECT_THAT(Describe(e3.Receipts()), ElementsAre("bob:delivered=5@b2,"))
      << "every connection of bob gets the receipt, the later one included";
  EXPECT_EQ(Attach(&e3, "b3", "bob").reached_useq(), 5);
}

TEST_F(DispatcherTest, OverlappingAndRepeatedRangesMerge) {
  FakeEdge e2("e2");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 8; ++i) Send("alice", "bob");

  dispatcher_->Reached("bob", 6, 8);
  dispatcher_->Reached("bob", 3, 6);
  dispatcher_->Reached("bob", 5, 5);
  dispatcher_->Reached("bob", 3, 4);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 0);
  dispatcher_->Reached("bob", 1, 3);  // overlaps the range above the hole
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 8);
  EXPECT_THAT(Describe(e2.Receipts()), ElementsAre("bob:delivered=8@b1,"));
}

TEST_F(DispatcherTest, MalformedRangesAreIgnored) {
  for (int i = 0; i < 3; ++i) Send("alice", "bob");
  dispatcher_->Reached("bob", 0, 3);
  dispatcher_->Reached("bob", 3, 2);
  dispatcher_->Reached("bob", -1, 1);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 0);
}

// A WebSocket user's own copy is reported reached by their edge, with their
// other reached ranges, to the user's replica (with several message-service
// replicas the one committing may only be the conversation's); until then it
// holds the user's mark like any unreached message.
TEST_F(DispatcherTest, OwnSentMessagesOfAnEdgeSendAreReportedByTheEdge) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  // bob's stream: 1 from alice, 2 his own, 3 from alice.
  // alice's stream: 1 her own, 2 from bob, 3 her own.
  EXPECT_EQ(Send("alice", "bob", "a1").recipient_useq, 1);
  EXPECT_EQ(Send("bob", "alice", "b1").for_sender.useq, 2);
  EXPECT_EQ(Send("alice", "bob", "a1").recipient_useq, 3);

  // What bob's edge wrote to his socket: 1 and 3; his own 2 not yet reported.
  dispatcher_->Reached("bob", 1, 1);
  dispatcher_->Reached("bob", 3, 3);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 1) << "bob's own message (useq 2) waits for his edge's report";
  // His edge reports it when `sent` comes back.
  dispatcher_->Reached("bob", 2, 2);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 3);
  EXPECT_EQ(DeliveredSeqSeenBy("alice", "bob"), 3);
  // alice: her own 1 and 3 reported, bob's message (2) has not reached her.
  dispatcher_->Reached("alice", 1, 1);
  dispatcher_->Reached("alice", 3, 3);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("alice"), 1);
  EXPECT_EQ(DeliveredSeqSeenBy("bob", "alice"), 0) << "alice's own messages move no mark";
  // alice hears of each flush's progress: her 1 first, then 3.
  EXPECT_THAT(Describe(e2.Receipts()), ElementsAre("bob:delivered=1@b1,", "bob:delivered=3@b1,"));

  dispatcher_->Reached("alice", 2, 2);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("alice"), 3);
  EXPECT_EQ(DeliveredSeqSeenBy("bob", "alice"), 2);
}

// A send through the public API has no edge to report the sender's copy: it
// reached the sender when committed.
TEST_F(DispatcherTest, OwnCopiesOfPublicApiSendsAreReachedAtCommit) {
  FakeEdge e2("e2");
  Attach(&e2, "b1", "bob");
  EXPECT_EQ(Send("alice", "bob").for_sender.useq, 1);
  EXPECT_EQ(Send("alice", "bob").for_sender.useq, 2);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("alice"), 2);
  EXPECT_EQ(PersistedMark("bob"), 0) << "bob's copies reach him only when his edge says so";
}

TEST_F(DispatcherTest, AMessageToYourselfGoesToEveryConnectionAndSendsNoReceipt) {
  FakeEdge e1("e1");
  Attach(&e1, "a1", "alice");
  Attach(&e1, "a2", "alice");
  store::Committed c = Send("alice", "alice", "a1");
  ASSERT_EQ(c.for_sender.useq, 1);
  std::vector<v1::Delivery> deliveries = e1.Deliveries();
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_THAT(deliveries[0].connection_ids(), UnorderedElementsAre("a1", "a2"))
      << "to yourself: every connection, the sending one included";
  dispatcher_->Reached("alice", 1, 1);  // the edge wrote it
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("alice"), 1);
  EXPECT_THAT(e1.Receipts(), IsEmpty());
  // Through the public API it is reached at commit, and still no receipt.
  EXPECT_EQ(Send("alice", "alice").for_sender.useq, 2);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("alice"), 2);
  EXPECT_THAT(e1.Receipts(), IsEmpty());
}

TEST_F(DispatcherTest, FlushMarksPersistsThroughTheStore) {
  FakeEdge e2("e2");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 4; ++i) Send("alice", "bob");
  dispatcher_->Reached("bob", 1, 3);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 3);

  // A new process on the same database starts from the persisted mark.
  OpenStore();
  FakeEdge e3("e3");
  v1::Attached attached = Attach(&e3, "b9", "bob");
  EXPECT_EQ(attached.error(), "");
  EXPECT_EQ(attached.reached_useq(), 3);
  EXPECT_EQ(attached.last_useq(), 4);
  EXPECT_EQ(attached.epoch(), store_->Epoch());
}

TEST_F(DispatcherTest, MarksWaitingWhileTheStoreIsDownAreFlushedLater) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 3; ++i) Send("alice", "bob");

  store_->Break();
  dispatcher_->Reached("bob", 1, 3);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_THAT(e1.Receipts(), IsEmpty()) << "nothing persisted, nothing announced";
  EXPECT_GT(store_->failed_calls(), 0) << "the flush must have tried the store";
  dispatcher_->FlushMarks(store_.get());  // still down
  store_->Repair();
  EXPECT_EQ(PersistedMark("bob"), 0);

  dispatcher_->FlushMarks(store_.get());  // no new report: the move was kept
  EXPECT_EQ(PersistedMark("bob"), 3);
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=3@a1,"));
}

// The store worker's way: the marks that moved ride on the next batch's
// commit (one transaction), and the receipts go out once it succeeded.
TEST_F(DispatcherTest, MovedMarksAreSavedWithTheNextBatch) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 3; ++i) Send("alice", "bob", "a1");
  dispatcher_->Reached("bob", 1, 2);

  std::vector<std::pair<std::string, int64_t>> marks = dispatcher_->TakeMovedMarks(store_.get());
  EXPECT_THAT(marks, ElementsAre(std::pair<std::string, int64_t>("bob", 2)));
  store::NewMessage next;
  next.id = "next";
  next.sent_by = "alice";
  next.send_to = "bob";
  next.text = "next";
  next.ts_ms = kNow;
  auto both = store_->CommitAndAdvance({next}, marks);
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_EQ(both->committed.size(), 1u);
  EXPECT_EQ(both->committed[0].recipient_useq, 4);
  EXPECT_THAT(e1.Receipts(), IsEmpty()) << "no receipt before the dispatcher hears of the commit";
  dispatcher_->MarksSaved(both->changes);
  EXPECT_EQ(PersistedMark("bob"), 2);
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=2@a1,"));
  EXPECT_THAT(Describe(e2.Receipts()), ElementsAre("bob:delivered=2@b1,"));

  // Saved: nothing to take until the mark moves again.
  EXPECT_THAT(dispatcher_->TakeMovedMarks(store_.get()), IsEmpty());
  dispatcher_->MarksSaved(std::vector<store::MarkChange>());
  dispatcher_->Reached("bob", 3, 4);
  EXPECT_THAT(dispatcher_->TakeMovedMarks(store_.get()),
              ElementsAre(std::pair<std::string, int64_t>("bob", 4)));
  dispatcher_->MarksSaved(store_->AdvanceReachedMany({{"bob", 4}}));
  EXPECT_EQ(PersistedMark("bob"), 4);
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=2@a1,", "bob:delivered=4@a1,"));
}

// The batch that carried the marks failed (its sends got the error): the
// marks are taken again for the next one, and only then announced.
TEST_F(DispatcherTest, MarksOfAFailedBatchAreSavedWithALaterOne) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 3; ++i) Send("alice", "bob", "a1");
  dispatcher_->Reached("bob", 1, 3);

  std::vector<std::pair<std::string, int64_t>> marks = dispatcher_->TakeMovedMarks(store_.get());
  ASSERT_THAT(marks, ElementsAre(std::pair<std::string, int64_t>("bob", 3)));
  store::NewMessage m;
  m.id = "lost";
  m.sent_by = "alice";
  m.send_to = "bob";
  m.text = "lost";
  m.ts_ms = kNow;
  store_->Break();
  auto failed = store_->CommitAndAdvance({m}, marks);
  ASSERT_FALSE(failed.ok());
  dispatcher_->MarksSaved(failed.status());
  store_->Repair();
  EXPECT_EQ(PersistedMark("bob"), 0);
  EXPECT_THAT(e1.Receipts(), IsEmpty()) << "nothing persisted, nothing announced";

  // No new report: the move was kept for the next batch.
  marks = dispatcher_->TakeMovedMarks(store_.get());
  EXPECT_THAT(marks, ElementsAre(std::pair<std::string, int64_t>("bob", 3)));
  m.id = "again";
  auto both = store_->CommitAndAdvance({m}, marks);
  ASSERT_TRUE(both.ok()) << both.status();
  dispatcher_->MarksSaved(both->changes);
  EXPECT_EQ(PersistedMark("bob"), 3);
  EXPECT_THAT(Describe(e1.Receipts()), ElementsAre("bob:delivered=3@a1,"));
  EXPECT_THAT(Describe(e2.Receipts()), ElementsAre("bob:delivered=3@b1,"));
}

TEST_F(DispatcherTest, MarksOfAUserNotAttachedAreLoadedBeforeTheyMove) {
  for (int i = 0; i < 4; ++i) Send("alice", "bob");
  dispatcher_->Reached("bob", 1, 2);
  dispatcher_->FlushMarks(store_.get());
  ASSERT_EQ(PersistedMark("bob"), 2);

  // A fresh dispatcher (restart) gets a report above the persisted mark.
  OpenStore();
  dispatcher_->Reached("bob", 3, 4);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 4) << "the store's mark (2) closes the gap below 3";
}

TEST_F(DispatcherTest, AttachAnswersTheUsersMarksOrAnErrorWhenTheStoreIsDown) {
  FakeEdge e1("e1");
  v1::Attached fresh = Attach(&e1, "c1", "carol");
  EXPECT_EQ(fresh.connection_id(), "c1");
  EXPECT_EQ(fresh.error(), "");
  EXPECT_EQ(fresh.last_useq(), 0);
  EXPECT_EQ(fresh.reached_useq(), 0);
  EXPECT_EQ(fresh.epoch(), store_->Epoch());
  auto known = store_->HasUser("carol");
  ASSERT_TRUE(known.ok());
  EXPECT_TRUE(*known) << "an attached user is known to the store (sends to them are not refused)";

  store_->Break();
  v1::Attached refused = Attach(&e1, "d1", "dave");
  EXPECT_EQ(refused.connection_id(), "d1");
  EXPECT_NE(refused.error(), "") << "the edge retries an attach that failed";
}

TEST_F(DispatcherTest, ReattachOnANewLinkMovesTheConnectionThere) {
  // The edge's link broke and it re-attached on a new one before the old
  // stream's end was processed: deliveries must follow the new link, and the
  // old link's clean-up must not take the connection away.
  FakeEdge old_link("e2"), new_link("e2");
  Attach(&old_link, "b1", "bob");
  Attach(&new_link, "b1", "bob");
  Send("alice", "bob");
  EXPECT_EQ(new_link.Deliveries().size(), 1u) << "the message went down the old, dead link";
  dispatcher_->DetachLink(old_link.outbox.get());
  Send("alice", "bob");
  EXPECT_EQ(new_link.Deliveries().size(), 2u) << "the old link's end detached the connection";
  EXPECT_EQ(dispatcher_->connection_count(), 1u);
}

TEST_F(DispatcherTest, DetachStopsDeliveries) {
  FakeEdge e2("e2");
  Attach(&e2, "b1", "bob");
  Attach(&e2, "b2", "bob");
  dispatcher_->Detach(e2.outbox.get(), "b1");
  Send("alice", "bob");
  std::vector<v1::Delivery> deliveries = e2.Deliveries();
  ASSERT_EQ(deliveries.size(), 1u);
  EXPECT_THAT(deliveries[0].connection_ids(), ElementsAre("b2"));
  dispatcher_->DetachLink(e2.outbox.get());
  EXPECT_EQ(dispatcher_->connection_count(), 0u);
  Send("alice", "bob");
  EXPECT_EQ(e2.Deliveries().size(), 1u) << "bob has no connection left";
}

TEST_F(DispatcherTest, DeliveriesCarryTheServerFlagTypeAndMetadata) {
  FakeEdge e2("e2");
  Attach(&e2, "b1", "bob");
  store::NewMessage m;
  m.id = "m-server";
  m.sent_by = "system";
  m.send_to = "bob";
  m.text = "notice";
  m.ts_ms = kNow;
  m.server = true;
  m.type = "notice.maintenance";
  m.metadata = R"({"window_min":30})";
  auto committed = store_->Commit({m});
  ASSERT_TRUE(committed.ok()) << committed.status();
  dispatcher_->Deliver((*committed)[0], "", 0, nullptr);
  Send("alice", "bob");
  std::vector<v1::Delivery> deliveries = e2.Deliveries();
  ASSERT_EQ(deliveries.size(), 2u);
  EXPECT_TRUE(deliveries[0].server());
  EXPECT_EQ(deliveries[0].type(), "notice.maintenance");
  EXPECT_EQ(deliveries[0].metadata(), R"({"window_min":30})");
  EXPECT_FALSE(deliveries[1].server()) << "a user's message";
  EXPECT_EQ(deliveries[1].type(), "");
  EXPECT_EQ(deliveries[1].metadata(), "");
}

// DeleteUser: the store erased bob; his marks go, and reports still coming
// from his old sockets do not mark the stream the name starts afresh with.
TEST_F(DispatcherTest, AnErasedUsersMarksAreDroppedAndLateReportsIgnored) {
  FakeEdge e1("e1"), e2("e2");
  Attach(&e1, "a1", "alice");
  Attach(&e2, "b1", "bob");
  for (int i = 0; i < 3; ++i) Send("alice", "bob", "a1");
  dispatcher_->Reached("bob", 1, 2);  // flushed below only if not erased
  ASSERT_TRUE(store_->EraseUser("bob").ok());
  dispatcher_->EraseUser("bob");
  dispatcher_->Reached("bob", 1, 3);  // late, from the old socket
  dispatcher_->FlushMarks(store_.get());
  EXPECT_THAT(e1.Receipts(), IsEmpty()) << "nothing of the erased stream is reported";
  auto known = store_->HasUser("bob");
  ASSERT_TRUE(known.ok());
  EXPECT_FALSE(*known) << "flushing marks must not bring the erased user back";

  // bob comes back (a new connection): a new stream, nothing reached yet.
  dispatcher_->Detach(e2.outbox.get(), "b1");
  v1::Attached back = Attach(&e2, "b2", "bob");
  EXPECT_EQ(back.error(), "");
  EXPECT_EQ(back.last_useq(), 0);
  EXPECT_EQ(back.reached_useq(), 0);
  Send("alice", "bob", "a1");  // bob's useq 1 of the new stream
  dispatcher_->Reached("bob", 1, 1);
  dispatcher_->FlushMarks(store_.get());
  EXPECT_EQ(PersistedMark("bob"), 1) << "reports count again once the name is in use";
}

}  // namespace
}  // namespace chat::message

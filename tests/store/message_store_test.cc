// Every MessageStore case runs against both engines (SQLite and a real
// PostgreSQL server started by the test).
#include "store/message_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "store/open_store.h"
#include "store/postgres_store.h"
#include "store/sql_db.h"
#include "store/sqlite_store.h"
#include "tests/store/store_engines.h"

namespace chat::store {
namespace {

using ::testing::ElementsAre;
using testing::EngineNames;
using ::testing::IsEmpty;
using testing::PostgresEngine;
using testing::SqliteEngine;
using testing::TestOptions;

constexpr int64_t kT0 = 1'764'000'000'000;
constexpr int64_t kDay = 24LL * 3600 * 1000;
constexpr size_t kMiB = 1 << 20;

std::vector<int64_t> Useqs(const std::vector<Message>& messages) {
  std::vector<int64_t> out;
  for (const Message& m : messages) out.push_back(m.useq);
  return out;
}

std::vector<int64_t> Seqs(const std::vector<Message>& messages) {
  std::vector<int64_t> out;
  for (const Message& m : messages) out.push_back(m.seq);
  return out;
}

std::vector<std::string> Texts(const std::vector<Message>& messages) {
  std::vector<std::string> out;
  for (const Message& m : messages) out.push_back(m.text);
  return out;
}

template <typename Engine>
class MessageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(engine_.SetUp());
    Reopen();
  }

  void Reopen() {
    store_.reset();
    ASSIGN_OK(store_, OpenMessageStore(engine_.Url(), TestOptions()));
  }

  NewMessage Msg(const std::string& from, const std::string& to, const std::string& text = "hi",
                 int64_t ts = kT0, const std::string& key = "") {
    return testing::MakeMessage("id" + std::to_string(++next_id_), from, to, text, ts, key);
  }

  // Commits one message; a failure fails the test and returns {}.
  Committed Send(const std::string& from, const std::string& to, const std::string& text = "hi",
                 int64_t ts = kT0, const std::string& key = "") {
    absl::StatusOr<std::vector<Committed>> r = store_->Commit({Msg(from, to, text, ts, key)});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || r->size() != 1) return {};
    return (*r)[0];
  }

  std::vector<Message> SyncAll(const std::string& user) {
    absl::StatusOr<SyncPage> page = store_->Sync(user, 0, 10000, 64 * kMiB);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->messages : std::vector<Message>{};
  }

  Engine engine_;
  std::unique_ptr<MessageStore> store_;
  int next_id_ = 0;
};

using Engines = ::testing::Types<SqliteEngine, PostgresEngine>;
TYPED_TEST_SUITE(MessageStoreTest, Engines, EngineNames);

TYPED_TEST(MessageStoreTest, NumbersConversationsAndStreamsWithoutGaps) {
  ASSIGN_OK(std::vector<Committed> batch,
            this->store_->Commit({this->Msg("alice", "bob"), this->Msg("bob", "alice"),
                                  this->Msg("alice", "carol")}));
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].for_sender.seq, 1);
  EXPECT_EQ(batch[0].for_sender.useq, 1);  // alice
  EXPECT_EQ(batch[0].recipient_useq, 1);   // bob
  EXPECT_EQ(batch[1].for_sender.seq, 2);
  EXPECT_EQ(batch[1].for_sender.useq, 2);  // bob
  EXPECT_EQ(batch[1].recipient_useq, 2);   // alice
  EXPECT_EQ(batch[2].for_sender.seq, 1);   // a new conversation
  EXPECT_EQ(batch[2].for_sender.useq, 3);
  EXPECT_EQ(batch[2].recipient_useq, 1);  // carol
  EXPECT_FALSE(batch[0].duplicate);
  EXPECT_EQ(batch[0].for_sender.conversation, ConversationId("alice", "bob"));
  EXPECT_EQ(batch[1].for_sender.conversation, batch[0].for_sender.conversation);

  Committed next = this->Send("carol", "alice");
  EXPECT_EQ(next.for_sender.seq, 2);
  EXPECT_EQ(next.for_sender.useq, 2);
  EXPECT_EQ(next.recipient_useq, 4);

  std::vector<Message> alice = this->SyncAll("alice");
  EXPECT_THAT(Useqs(alice), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(alice[1].sent_by, "bob");
  EXPECT_EQ(alice[1].send_to, "alice");
  EXPECT_EQ(alice[1].id, batch[1].for_sender.id);
  EXPECT_EQ(alice[1].ts_ms, kT0);
  EXPECT_THAT(Useqs(this->SyncAll("bob")), ElementsAre(1, 2));
  EXPECT_THAT(Useqs(this->SyncAll("carol")), ElementsAre(1, 2));
  ASSIGN_OK(UserMarks marks, this->store_->Marks("alice"));
  EXPECT_EQ(marks.last_useq, 4);
  EXPECT_EQ(marks.reached_useq, 0);
}

TYPED_TEST(MessageStoreTest, KeepsAnyBytesOfText) {
  const std::string text("a\0b\xff\n\"{}", 8);
  this->Send("alice", "bob", text);
  this->Send("alice", "bob", "");
  EXPECT_THAT(Texts(this->SyncAll("bob")), ElementsAre(text, ""));
}

TYPED_TEST(MessageStoreTest, UsersBecomeKnownByCommitOrKnowUser) {
  ASSIGN_OK(bool has, this->store_->HasUser("dave"));
  EXPECT_FALSE(has);
  ASSERT_OK(this->store_->KnowUser("dave"));
  ASSERT_OK(this->store_->KnowUser("dave"));
  ASSIGN_OK(has, this->store_->HasUser("dave"));
  EXPECT_TRUE(has);
  ASSIGN_OK(UserMarks marks, this->store_->Marks("dave"));
  EXPECT_EQ(marks.last_useq, 0);
  this->Send("erin", "frank");
  ASSIGN_OK(has, this->store_->HasUser("frank"));
  EXPECT_TRUE(has);
  EXPECT_FALSE(this->store_->KnowUser("").ok());
}

TYPED_TEST(MessageStoreTest, KnowAndReadMarksAnswersEachUserInOrderInOneCall) {
  this->Send("alice", "bob");
  this->Send("alice", "bob");
  ASSERT_OK(this->store_->AdvanceReached("bob", 1).status());
  ASSIGN_OK(std::vector<UserMarks> marks,
            this->store_->KnowAndReadMarks({"zoe", "bob", "alice", "bob", "carol"}));
  ASSERT_EQ(marks.size(), 5u);
  EXPECT_EQ(marks[0].last_useq, 0);  // new: now known, nothing stored
  EXPECT_EQ(marks[1].last_useq, 2);
  EXPECT_EQ(marks[1].reached_useq, 1);
  EXPECT_EQ(marks[2].last_useq, 2);
  EXPECT_EQ(marks[2].reached_useq, 0);
  EXPECT_EQ(marks[3].last_useq, 2);  // the same name twice: the same answer
  EXPECT_EQ(marks[3].reached_useq, 1);
  EXPECT_EQ(marks[4].last_useq, 0);
  for (const char* user : {"zoe", "carol"}) {
    ASSIGN_OK(bool has, this->store_->HasUser(user));
    EXPECT_TRUE(has) << user;
  }
  ASSIGN_OK(std::vector<UserMarks> none, this->store_->KnowAndReadMarks({}));
  EXPECT_TRUE(none.empty());

  // An invalid name fails the call, and the valid names with it are not kept.
  EXPECT_FALSE(this->store_->KnowAndReadMarks({"dave", ""}).ok());
  ASSIGN_OK(bool has, this->store_->HasUser("dave"));
  EXPECT_FALSE(has);
}

TYPED_TEST(MessageStoreTest, MessageToYourselfHasOneUseqAndIsAlwaysRead) {
  this->Send("bob", "alice");
  Committed self = this->Send("alice", "alice", "note");
  EXPECT_EQ(self.for_sender.seq, 1);
  EXPECT_EQ(self.for_sender.useq, 2);
  EXPECT_EQ(self.recipient_useq, 2);
  this->Send("alice", "alice", "note 2");
  EXPECT_THAT(Useqs(this->SyncAll("alice")), ElementsAre(1, 2, 3));

  ASSIGN_OK(ConversationsPage list, this->store_->Conversations("alice", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 2u);
  const ConversationSummary& mine = list.items[0];
  EXPECT_EQ(mine.with, "alice");
  EXPECT_EQ(mine.unread, 0);
  EXPECT_EQ(mine.read_seq, 2);
  EXPECT_EQ(mine.peer_read_seq, 2);
  EXPECT_EQ(mine.delivered_seq, 2);

  ASSIGN_OK(MessageStore::ReadResult read, this->store_->MarkRead("alice", "alice", 1));
  EXPECT_EQ(read.read_seq, 2);
  EXPECT_THAT(read.changes, IsEmpty());
  ASSIGN_OK(std::vector<MarkChange> changes, this->store_->AdvanceReached("alice", 3));
  ASSERT_EQ(changes.size(), 1u);  // bob's message only
  EXPECT_EQ(changes[0].peer, "bob");
  ASSIGN_OK(SyncPage unread, this->store_->Unread("alice", 0, 10, kMiB));
  EXPECT_THAT(Useqs(unread.messages), ElementsAre(1));
}

TYPED_TEST(MessageStoreTest, SameKeyTwiceInOneBatchStoresOnce) {
  ASSIGN_OK(std::vector<Committed> batch,
            this->store_->Commit({this->Msg("alice", "bob", "first", kT0, "k1"),
                                  this->Msg("alice", "carol", "second", kT0 + 5, "k1")}));
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_FALSE(batch[0].duplicate);
  EXPECT_TRUE(batch[1].duplicate);
  EXPECT_EQ(batch[1].for_sender.id, batch[0].for_sender.id);
  EXPECT_EQ(batch[1].for_sender.send_to, "bob");
  EXPECT_EQ(batch[1].for_sender.text, "first");
  EXPECT_EQ(batch[1].recipient_useq, batch[0].recipient_useq);
  EXPECT_THAT(Useqs(this->SyncAll("alice")), ElementsAre(1));
  EXPECT_THAT(this->SyncAll("carol"), IsEmpty());
}

TYPED_TEST(MessageStoreTest, SameKeyInALaterBatchIsTheFirstMessage) {
  Committed first = this->Send("alice", "bob", "hello", kT0, "k1");
  this->Send("bob", "alice");
  Committed again = this->Send("alice", "carol", "other text", kT0 + 1000, "k1");
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.for_sender.id, first.for_sender.id);
  EXPECT_EQ(again.for_sender.conversation, first.for_sender.conversation);
  EXPECT_EQ(again.for_sender.seq, first.for_sender.seq);
  EXPECT_EQ(again.for_sender.useq, first.for_sender.useq);
  EXPECT_EQ(again.for_sender.ts_ms, kT0);
  EXPECT_EQ(again.recipient_useq, first.recipient_useq);
  // Keys belong to their sender.
  Committed bobs = this->Send("bob", "alice", "mine", kT0, "k1");
  EXPECT_FALSE(bobs.duplicate);
  // Reopened stores remember keys.
  this->Reopen();
  EXPECT_TRUE(this->Send("alice", "bob", "x", kT0 + 2000, "k1").duplicate);
  EXPECT_THAT(Useqs(this->SyncAll("alice")), ElementsAre(1, 2, 3));
}

TYPED_TEST(MessageStoreTest, KeyDedupesFor24HoursFromTheStoredMessage) {
  Committed first = this->Send("alice", "bob", "a", kT0, "k");
  EXPECT_TRUE(this->Send("alice", "bob", "b", kT0 + kDay - 1, "k").duplicate);
  Committed renewed = this->Send("alice", "bob", "c", kT0 + kDay, "k");
  EXPECT_FALSE(renewed.duplicate);
  EXPECT_EQ(renewed.for_sender.seq, 2);
  Committed dup = this->Send("alice", "bob", "d", kT0 + kDay + 1, "k");
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.for_sender.id, renewed.for_sender.id);
  EXPECT_THAT(Texts(this->SyncAll("bob")), ElementsAre("a", "c"));
  (void)first;
}

TYPED_TEST(MessageStoreTest, SyncPagesByLimitAndBytes) {
  for (int i = 0; i < 10; ++i) this->Send(i % 2 ? "alice" : "bob", i % 2 ? "bob" : "alice");
  ASSIGN_OK(SyncPage page, this->store_->Sync("alice", 0, 4, kMiB));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(page.useq, 4);
  EXPECT_TRUE(page.more);
  ASSIGN_OK(page, this->store_->Sync("alice", 8, 4, kMiB));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(9, 10));
  EXPECT_FALSE(page.more);
  ASSIGN_OK(page, this->store_->Sync("alice", 6, 4, kMiB));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(7, 8, 9, 10));
  EXPECT_FALSE(page.more);  // exactly the limit, nothing beyond
  ASSIGN_OK(page, this->store_->Sync("alice", 10, 4, kMiB));
  EXPECT_THAT(page.messages, IsEmpty());
  EXPECT_EQ(page.useq, 10);
  EXPECT_FALSE(page.more);
  ASSIGN_OK(page, this->store_->Sync("nobody", 0, 4, kMiB));
  EXPECT_THAT(page.messages, IsEmpty());
  EXPECT_EQ(page.useq, 0);

  // A byte bound always lets one message through.
  ASSIGN_OK(page, this->store_->Sync("alice", 2, 4, 1));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(3));
  EXPECT_TRUE(page.more);
  const std::string big(3000, 'x');
  this->Send("carol", "alice", big);
  this->Send("carol", "alice", big);
  ASSIGN_OK(page, this->store_->Sync("alice", 10, 10, 5000));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(11));
  EXPECT_TRUE(page.more);
  EXPECT_FALSE(this->store_->Sync("alice", -1, 4, kMiB).ok());
  EXPECT_FALSE(this->store_->Sync("alice", 0, 0, kMiB).ok());
}

TYPED_TEST(MessageStoreTest, UnreadSkipsOwnMessagesAndWhatWasRead) {
  this->Send("bob", "alice", "b1");    // alice useq 1, seq 1
  this->Send("bob", "alice", "b2");    // 2, seq 2
  this->Send("alice", "bob", "a1");    // 3, seq 3
  this->Send("carol", "alice", "c1");  // 4
  this->Send("bob", "alice", "b3");    // 5, seq 4
  this->Send("carol", "alice", "c2");  // 6
  ASSIGN_OK(MessageStore::ReadResult read, this->store_->MarkRead("alice", "bob", 2));
  EXPECT_EQ(read.read_seq, 2);
  ASSIGN_OK(SyncPage page, this->store_->Unread("alice", 0, 10, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("c1", "b3", "c2"));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(4, 5, 6));
  EXPECT_EQ(page.useq, 6);
  EXPECT_FALSE(page.more);
  ASSIGN_OK(page, this->store_->Unread("alice", 4, 1, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("b3"));
  EXPECT_TRUE(page.more);
  ASSIGN_OK(page, this->store_->Unread("alice", 5, 1, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("c2"));
  EXPECT_FALSE(page.more);
  ASSIGN_OK(page, this->store_->Unread("bob", 0, 10, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("a1"));
}

TYPED_TEST(MessageStoreTest, HistoryPagesBackwardsWithTheRequestersUseq) {
  this->Send("carol", "bob");  // bob's useq 1: bob's and alice's numbers differ
  for (int i = 1; i <= 7; ++i) this->Send(i % 2 ? "alice" : "bob", i % 2 ? "bob" : "alice");
  ASSIGN_OK(HistoryPage page, this->store_->History("alice", "bob", 0, 3, kMiB));
  EXPECT_EQ(page.conversation, ConversationId("alice", "bob"));
  EXPECT_THAT(Seqs(page.messages), ElementsAre(5, 6, 7));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(5, 6, 7));
  EXPECT_TRUE(page.more);
  ASSIGN_OK(page, this->store_->History("bob", "alice", 5, 3, kMiB));
  EXPECT_THAT(Seqs(page.messages), ElementsAre(2, 3, 4));
  EXPECT_THAT(Useqs(page.messages), ElementsAre(3, 4, 5));
  EXPECT_TRUE(page.more);
  ASSIGN_OK(page, this->store_->History("bob", "alice", 2, 3, kMiB));
  EXPECT_THAT(Seqs(page.messages), ElementsAre(1));
  EXPECT_FALSE(page.more);
  ASSIGN_OK(page, this->store_->History("alice", "bob", 0, 7, kMiB));
  EXPECT_EQ(page.messages.size(), 7u);
  EXPECT_FALSE(page.more);
  ASSIGN_OK(page, this->store_->History("alice", "bob", 0, 7, 1));
  EXPECT_THAT(Seqs(page.messages), ElementsAre(7));  // the newest that fit
  EXPECT_TRUE(page.more);
  ASSIGN_OK(page, this->store_->History("alice", "dave", 0, 5, kMiB));
  EXPECT_THAT(page.messages, IsEmpty());
  EXPECT_FALSE(page.more);
  EXPECT_EQ(page.conversation, ConversationId("alice", "dave"));
}

TYPED_TEST(MessageStoreTest, ConversationsNewestFirstWithUnreadAndMarks) {
  this->Send("alice", "bob", "to bob");    // alice 1
  this->Send("carol", "alice", "c1");      // alice 2
  this->Send("carol", "alice", "c2");      // alice 3
  this->Send("alice", "dave", "to dave");  // alice 4
  this->Send("bob", "alice", "b1");        // alice 5
  ASSERT_OK(this->store_->MarkRead("bob", "alice", 1).status());
  ASSERT_OK(this->store_->AdvanceReached("bob", 1).status());
  ASSERT_OK(this->store_->MarkRead("alice", "carol", 1).status());

  ASSIGN_OK(ConversationsPage page, this->store_->Conversations("alice", "", 2, kMiB));
  ASSERT_EQ(page.items.size(), 2u);
  EXPECT_EQ(page.items[0].with, "bob");
  EXPECT_EQ(page.items[0].conversation, ConversationId("alice", "bob"));
  EXPECT_EQ(page.items[0].last.text, "b1");
  EXPECT_EQ(page.items[0].last.useq, 5);
  EXPECT_EQ(page.items[0].last.seq, 2);
  EXPECT_EQ(page.items[0].unread, 1);
  EXPECT_EQ(page.items[0].read_seq, 0);
  EXPECT_EQ(page.items[0].peer_read_seq, 1);
  EXPECT_EQ(page.items[0].delivered_seq, 1);  // bob has alice's message
  EXPECT_EQ(page.items[1].with, "dave");
  EXPECT_EQ(page.items[1].unread, 0);
  EXPECT_EQ(page.items[1].delivered_seq, 0);
  ASSERT_FALSE(page.next.empty());

  ASSIGN_OK(page, this->store_->Conversations("alice", page.next, 2, kMiB));
  ASSERT_EQ(page.items.size(), 1u);
  EXPECT_EQ(page.items[0].with, "carol");
  EXPECT_EQ(page.items[0].last.text, "c2");
  EXPECT_EQ(page.items[0].unread, 1);
  EXPECT_EQ(page.items[0].read_seq, 1);
  EXPECT_TRUE(page.next.empty());

  ASSIGN_OK(page, this->store_->Conversations("alice", "", 3, kMiB));
  EXPECT_EQ(page.items.size(), 3u);
  EXPECT_TRUE(page.next.empty());
  ASSIGN_OK(page, this->store_->Conversations("alice", "", 3, 1));
  EXPECT_EQ(page.items.size(), 1u);
  EXPECT_FALSE(page.next.empty());
  ASSIGN_OK(page, this->store_->Conversations("nobody", "", 3, kMiB));
  EXPECT_THAT(page.items, IsEmpty());
  EXPECT_EQ(this->store_->Conversations("alice", "garbage", 3, kMiB).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(MessageStoreTest, MarkReadClampsAndNeverMovesBack) {
  ASSIGN_OK(MessageStore::ReadResult read, this->store_->MarkRead("alice", "bob", 5));
  EXPECT_EQ(read.read_seq, 0);  // nothing written yet
  EXPECT_THAT(read.changes, IsEmpty());
  this->Send("bob", "alice");  // seq 1
  this->Send("alice", "bob");  // seq 2
  this->Send("bob", "alice");  // seq 3
  this->Send("alice", "bob");  // seq 4
  ASSIGN_OK(read, this->store_->MarkRead("alice", "bob", 2));
  EXPECT_EQ(read.conversation, ConversationId("alice", "bob"));
  EXPECT_EQ(read.read_seq, 2);
  ASSERT_EQ(read.changes.size(), 2u);
  EXPECT_EQ(read.changes[0].user, "alice");
  EXPECT_EQ(read.changes[0].peer, "bob");
  EXPECT_EQ(read.changes[0].read_seq, 2);
  EXPECT_EQ(read.changes[1].delivered_seq, 1);  // reading bob's seq 1 reached it

  ASSIGN_OK(read, this->store_->MarkRead("alice", "bob", 1));
  EXPECT_EQ(read.read_seq, 2);
  EXPECT_THAT(read.changes, IsEmpty());
  ASSIGN_OK(read, this->store_->MarkRead("alice", "bob", 99));
  EXPECT_EQ(read.read_seq, 4);
  ASSERT_EQ(read.changes.size(), 2u);
  EXPECT_EQ(read.changes[0].read_seq, 4);
  EXPECT_EQ(read.changes[1].delivered_seq, 3);
  ASSIGN_OK(read, this->store_->MarkRead("alice", "bob", 99));
  EXPECT_THAT(read.changes, IsEmpty());

  ASSIGN_OK(ConversationsPage bob, this->store_->Conversations("bob", "", 5, kMiB));
  ASSERT_EQ(bob.items.size(), 1u);
  EXPECT_EQ(bob.items[0].peer_read_seq, 4);
  EXPECT_EQ(bob.items[0].delivered_seq, 3);
  EXPECT_EQ(bob.items[0].read_seq, 0);
  EXPECT_EQ(bob.items[0].unread, 2);
  EXPECT_FALSE(this->store_->MarkRead("alice", "bob", -1).ok());
}

TYPED_TEST(MessageStoreTest, AdvanceReachedMovesDeliveredMarks) {
  this->Send("bob", "alice");    // alice 1, ab seq 1
  this->Send("bob", "alice");    // alice 2, ab seq 2
  this->Send("alice", "bob");    // alice 3, ab seq 3
  this->Send("carol", "alice");  // alice 4, ac seq 1
  this->Send("bob", "alice");    // alice 5, ab seq 4
  ASSIGN_OK(std::vector<MarkChange> changes, this->store_->AdvanceReached("alice", 1));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].conversation, ConversationId("alice", "bob"));
  EXPECT_EQ(changes[0].user, "alice");
  EXPECT_EQ(changes[0].peer, "bob");
  EXPECT_EQ(changes[0].delivered_seq, 1);
  ASSIGN_OK(changes, this->store_->AdvanceReached("alice", 3));  // alice's own: no effect
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].delivered_seq, 2);
  ASSIGN_OK(changes, this->store_->AdvanceReached("alice", 2));  // backwards
  EXPECT_THAT(changes, IsEmpty());
  ASSIGN_OK(changes, this->store_->AdvanceReached("alice", 100));  // clamped to the last
  ASSERT_EQ(changes.size(), 2u);
  std::set<std::pair<std::string, int64_t>> moved;
  for (const MarkChange& c : changes) moved.insert({c.peer, c.delivered_seq});
  EXPECT_EQ(moved, (std::set<std::pair<std::string, int64_t>>{{"bob", 4}, {"carol", 1}}));
  ASSIGN_OK(UserMarks marks, this->store_->Marks("alice"));
  EXPECT_EQ(marks.reached_useq, 5);
  EXPECT_EQ(marks.last_useq, 5);
  // A read mark already covering a message: reaching it again moves nothing.
  this->Send("bob", "alice");  // alice 6, ab seq 5
  ASSERT_OK(this->store_->MarkRead("alice", "bob", 5).status());
  ASSIGN_OK(changes, this->store_->AdvanceReached("alice", 6));
  EXPECT_THAT(changes, IsEmpty());
  ASSIGN_OK(changes, this->store_->AdvanceReached("nobody", 6));
  EXPECT_THAT(changes, IsEmpty());
}

TYPED_TEST(MessageStoreTest, AdvanceReachedManyMovesEveryUsersMarksAtOnce) {
  this->Send("bob", "alice");    // alice 1, bob 1
  this->Send("carol", "alice");  // alice 2, carol 1
  this->Send("alice", "bob");    // alice 3, bob 2
  this->Send("carol", "bob");    // bob 3, carol 2
  ASSIGN_OK(std::vector<MarkChange> changes,
            this->store_->AdvanceReachedMany(
                {{"bob", 3}, {"alice", 1}, {"nobody", 4}, {"alice", 2}, {"carol", 9}}));
  std::set<std::tuple<std::string, std::string, int64_t>> moved;
  for (const MarkChange& c : changes) {
    EXPECT_EQ(c.conversation, ConversationId(c.user, c.peer));
    EXPECT_EQ(c.read_seq, 0);
    moved.insert({c.user, c.peer, c.delivered_seq});
  }
  EXPECT_EQ(changes.size(), moved.size());
  EXPECT_EQ(
      moved,
      (std::set<std::tuple<std::string, std::string, int64_t>>{
          {"alice", "bob", 1}, {"alice", "carol", 1}, {"bob", "alice", 2}, {"bob", "carol", 1}}));
  ASSIGN_OK(UserMarks marks, this->store_->Marks("alice"));
  EXPECT_EQ(marks.reached_useq, 2);  // the higher of her two
  ASSIGN_OK(marks, this->store_->Marks("carol"));
  EXPECT_EQ(marks.reached_useq, 2);  // clamped to her last
  ASSIGN_OK(changes, this->store_->AdvanceReachedMany({{"alice", 2}, {"bob", 3}}));
  EXPECT_THAT(changes, IsEmpty());
}

// What the message service does with each batch: the messages and the
// reached marks that moved before them, in one transaction.
TYPED_TEST(MessageStoreTest, CommitAndAdvanceStoresTheBatchAndMovesTheMarksTogether) {
  this->Send("bob", "alice", "b1", kT0, "k");  // alice 1, bob 1, ab seq 1
  this->Send("carol", "alice", "c1");          // alice 2, carol 1, ac seq 1
  this->Send("alice", "bob", "a-b");           // alice 3, bob 2, ab seq 2
  ASSIGN_OK(MessageStore::CommitResult r,
            this->store_->CommitAndAdvance(
                {this->Msg("bob", "alice", "b1 again", kT0, "k"),  // a duplicate: bob gets no useq
                 this->Msg("alice", "carol", "a-c"),               // alice 4, carol 2, ac seq 2
                 this->Msg("dave", "erin", "d-e")},
                {{"alice", 2}, {"carol", 9}, {"bob", 2}, {"nobody", 1}}));
  ASSERT_EQ(r.committed.size(), 3u);
  EXPECT_TRUE(r.committed[0].duplicate);
  EXPECT_EQ(r.committed[0].for_sender.text, "b1");
  EXPECT_EQ(r.committed[0].for_sender.useq, 1);
  EXPECT_FALSE(r.committed[1].duplicate);
  EXPECT_EQ(r.committed[1].for_sender.seq, 2);
  EXPECT_EQ(r.committed[1].for_sender.useq, 4);
  EXPECT_EQ(r.committed[1].recipient_useq, 2);
  EXPECT_EQ(r.committed[2].for_sender.seq, 1);
  EXPECT_EQ(r.committed[2].recipient_useq, 1);
  std::set<std::tuple<std::string, std::string, int64_t>> moved;
  for (const MarkChange& c : r.changes) {
    EXPECT_EQ(c.conversation, ConversationId(c.user, c.peer));
    moved.insert({c.user, c.peer, c.delivered_seq});
  }
  EXPECT_EQ(r.changes.size(), moved.size());
  // carol's mark covers the batch's message to her: marks move after the
  // batch is numbered, clamped to the last useq it leaves.
  EXPECT_EQ(
      moved,
      (std::set<std::tuple<std::string, std::string, int64_t>>{
          {"alice", "bob", 1}, {"alice", "carol", 1}, {"carol", "alice", 2}, {"bob", "alice", 2}}));
  for (const auto& [user, reached] :
       std::vector<std::pair<std::string, int64_t>>{{"alice", 2}, {"carol", 2}, {"bob", 2}}) {
    ASSIGN_OK(UserMarks marks, this->store_->Marks(user));
    EXPECT_EQ(marks.reached_useq, reached) << user;
  }
  EXPECT_THAT(Texts(this->SyncAll("carol")), ElementsAre("c1", "a-c"));
  EXPECT_THAT(Texts(this->SyncAll("erin")), ElementsAre("d-e"));
  ASSIGN_OK(ConversationsPage page, this->store_->Conversations("bob", "", 5, kMiB));
  ASSERT_EQ(page.items.size(), 1u);
  EXPECT_EQ(page.items[0].delivered_seq, 1) << "alice's delivered mark as bob sees it";

  // Either side may be empty.
  ASSIGN_OK(r, this->store_->CommitAndAdvance({}, {{"erin", 1}}));
  EXPECT_THAT(r.committed, IsEmpty());
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].user, "erin");
  EXPECT_EQ(r.changes[0].delivered_seq, 1);
  ASSIGN_OK(r, this->store_->CommitAndAdvance({this->Msg("erin", "dave", "e-d")}, {}));
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].for_sender.seq, 2);
  EXPECT_THAT(r.changes, IsEmpty());
  ASSIGN_OK(r, this->store_->CommitAndAdvance({}, {}));
  EXPECT_THAT(r.committed, IsEmpty());
  EXPECT_THAT(r.changes, IsEmpty());
  EXPECT_EQ(this->store_->CommitAndAdvance({}, {{"", 1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(MessageStoreTest, AFailedCommitAndAdvanceMovesNoMark) {
  this->Send("alice", "bob", "first");  // bob 1
  NewMessage twin = this->Msg("carol", "bob", "twin");
  absl::StatusOr<MessageStore::CommitResult> failed =
      this->store_->CommitAndAdvance({twin, twin}, {{"bob", 1}});
  EXPECT_FALSE(failed.ok());
  ASSIGN_OK(UserMarks marks, this->store_->Marks("bob"));
  EXPECT_EQ(marks.reached_useq, 0) << "the batch failed: its marks were not kept either";
  EXPECT_EQ(marks.last_useq, 1);
  ASSERT_OK(this->engine_.Break());
  failed = this->store_->CommitAndAdvance({this->Msg("alice", "bob", "lost")}, {{"bob", 1}});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  ASSERT_OK(this->engine_.Repair());
  // The next batch carries the same marks again.
  ASSIGN_OK(MessageStore::CommitResult r,
            this->store_->CommitAndAdvance({this->Msg("alice", "bob", "second")}, {{"bob", 1}}));
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].recipient_useq, 2);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].user, "bob");
  EXPECT_EQ(r.changes[0].delivered_seq, 1);
  EXPECT_THAT(Texts(this->SyncAll("bob")), ElementsAre("first", "second"));
}

TYPED_TEST(MessageStoreTest, PruneDeletesOldMessagesInChunksAndKeepsCounters) {
  for (int i = 0; i < 5; ++i) this->Send("alice", "bob", "old", kT0 + i);
  this->Send("alice", "bob", "new", kT0 + kDay);
  ASSIGN_OK(int64_t deleted, this->store_->PruneOlderThan(kT0 + 100, 3));
  EXPECT_EQ(deleted, 3);
  ASSIGN_OK(deleted, this->store_->PruneOlderThan(kT0 + 100, 3));
  EXPECT_EQ(deleted, 2);
  ASSIGN_OK(deleted, this->store_->PruneOlderThan(kT0 + 100, 3));
  EXPECT_EQ(deleted, 0);
  EXPECT_THAT(Useqs(this->SyncAll("bob")), ElementsAre(6));
  ASSIGN_OK(HistoryPage history, this->store_->History("alice", "bob", 0, 10, kMiB));
  EXPECT_THAT(Seqs(history.messages), ElementsAre(6));
  Committed next = this->Send("alice", "bob", "newer", kT0 + kDay);
  EXPECT_EQ(next.for_sender.seq, 7);
  EXPECT_EQ(next.for_sender.useq, 7);
}

TYPED_TEST(MessageStoreTest, ReopenKeepsMessagesMarksAndEpoch) {
  const std::string epoch = this->store_->Epoch();
  EXPECT_FALSE(epoch.empty());
  this->Send("alice", "bob");
  ASSERT_OK(this->store_->MarkRead("bob", "alice", 1).status());
  this->Reopen();
  EXPECT_EQ(this->store_->Epoch(), epoch);
  EXPECT_THAT(Useqs(this->SyncAll("bob")), ElementsAre(1));
  Committed next = this->Send("alice", "bob");
  EXPECT_EQ(next.for_sender.seq, 2);
  ASSIGN_OK(ConversationsPage page, this->store_->Conversations("alice", "", 5, kMiB));
  ASSERT_EQ(page.items.size(), 1u);
  EXPECT_EQ(page.items[0].peer_read_seq, 1);
}

TYPED_TEST(MessageStoreTest, EngineFailureIsUnavailableThenRecovers) {
  this->Send("alice", "bob", "before");
  ASSERT_OK(this->engine_.Break());
  absl::StatusOr<std::vector<Committed>> failed =
      this->store_->Commit({this->Msg("alice", "bob", "lost"), this->Msg("bob", "carol")});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_EQ(this->store_->AdvanceReached("bob", 1).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_OK(this->engine_.Repair());
  // Nothing of the failed batch was kept: the numbers go on without a gap.
  Committed after = this->Send("alice", "bob", "after");
  EXPECT_EQ(after.for_sender.seq, 2);
  EXPECT_THAT(Texts(this->SyncAll("bob")), ElementsAre("before", "after"));
  EXPECT_THAT(this->SyncAll("carol"), IsEmpty());
}

TYPED_TEST(MessageStoreTest, EngineRestartBetweenCallsGoesUnnoticed) {
  this->Send("alice", "bob", "before");
  ASSERT_OK(this->engine_.Break());
  ASSERT_OK(this->engine_.Repair());
  // PostgreSQL: the old connection is dead; the call reconnects before
  // sending anything, so it need not fail.
  Committed after = this->Send("alice", "bob", "after");
  EXPECT_EQ(after.for_sender.seq, 2);
  ASSIGN_OK(bool known, this->store_->HasUser("bob"));
  EXPECT_TRUE(known);
}

TYPED_TEST(MessageStoreTest, FailedBatchStoresNothing) {
  this->Send("alice", "bob", "first");
  NewMessage twin = this->Msg("carol", "alice", "twin");
  // The second message reuses the first's id: the engine refuses the batch.
  absl::StatusOr<std::vector<Committed>> r =
      this->store_->Commit({twin, this->Msg("alice", "bob", "in between", kT0, "k"), twin});
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(this->Send("alice", "bob", "next", kT0, "k").duplicate);
  EXPECT_THAT(Texts(this->SyncAll("alice")), ElementsAre("first", "next"));
  EXPECT_THAT(this->SyncAll("carol"), IsEmpty());
  EXPECT_EQ(this->store_->Commit({testing::MakeMessage("", "a", "b", "x", kT0)}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(MessageStoreTest, ServerTypeAndMetadataComeBackFromEveryRead) {
  NewMessage notice = this->Msg("bot", "alice", "notice");
  notice.server = true;
  notice.type = "invite";
  notice.metadata = R"({"room":"r1","n":[1,2]})";
  notice.idempotency_key = "k";
  ASSIGN_OK(std::vector<Committed> committed, this->store_->Commit({notice}));
  ASSERT_EQ(committed.size(), 1u);
  auto expect_fields = [&](const Message& m, const char* where) {
    EXPECT_TRUE(m.server) << where;
    EXPECT_EQ(m.type, "invite") << where;
    EXPECT_EQ(m.metadata, notice.metadata) << where;
  };
  expect_fields(committed[0].for_sender, "commit");
  this->Send("alice", "bot", "plain");  // none of them: false, "", ""

  std::vector<Message> synced = this->SyncAll("alice");
  ASSERT_EQ(synced.size(), 2u);
  expect_fields(synced[0], "sync");
  EXPECT_FALSE(synced[1].server);
  EXPECT_EQ(synced[1].type, "");
  EXPECT_EQ(synced[1].metadata, "");
  ASSIGN_OK(SyncPage unread, this->store_->Unread("alice", 0, 10, kMiB));
  ASSERT_EQ(unread.messages.size(), 1u);
  expect_fields(unread.messages[0], "unread");
  ASSIGN_OK(HistoryPage history, this->store_->History("alice", "bot", 0, 10, kMiB));
  ASSERT_EQ(history.messages.size(), 2u);
  expect_fields(history.messages[0], "history");
  EXPECT_FALSE(history.messages[1].server);

  // The last message of a conversation, then a duplicate by key.
  ASSIGN_OK(ConversationsPage list, this->store_->Conversations("bot", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 1u);
  EXPECT_EQ(list.items[0].last.text, "plain");
  EXPECT_FALSE(list.items[0].last.server);
  this->Send("bot", "alice", "another");
  ASSIGN_OK(list, this->store_->Conversations("carol", "", 10, kMiB));
  EXPECT_THAT(list.items, IsEmpty());
  NewMessage last = this->Msg("bot", "carol", "last");
  last.type = "t";
  last.metadata = "{}";
  ASSERT_OK(this->store_->Commit({last}).status());
  ASSIGN_OK(list, this->store_->Conversations("carol", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 1u);
  EXPECT_FALSE(list.items[0].last.server);
  EXPECT_EQ(list.items[0].last.type, "t");
  EXPECT_EQ(list.items[0].last.metadata, "{}");
  NewMessage again = this->Msg("bot", "alice", "retry", kT0 + 1, "k");
  ASSIGN_OK(committed, this->store_->Commit({again}));
  ASSERT_TRUE(committed[0].duplicate);
  expect_fields(committed[0].for_sender, "duplicate");
}

// The engine under the store, for looking at (or making) its tables.
absl::StatusOr<std::unique_ptr<SqlDb>> OpenDb(const std::string& url) {
  return absl::StartsWith(url, "sqlite:") ? OpenSqliteDb(url.substr(7), TestOptions())
                                          : OpenPostgresDb(url, TestOptions());
}

TYPED_TEST(MessageStoreTest, EraseUserDeletesTheUsersMessagesConversationsAndMarks) {
  this->Send("alice", "bob", "a1", kT0, "key");  // bob 1, alice 1
  this->Send("bob", "carol", "b1");              // bob 2
  this->Send("bob", "alice", "b2");              // bob 3, alice 2
  this->Send("alice", "alice", "note");          // alice 3
  this->Send("carol", "alice", "c1");            // alice 4
  this->Send("carol", "bob", "c2");              // bob 4
  this->Send("alice", "bob", "a2");              // bob 5, alice 5
  ASSERT_OK(this->store_->MarkRead("bob", "alice", 1).status());
  ASSERT_OK(this->store_->MarkRead("alice", "bob", 2).status());
  ASSERT_OK(this->store_->AdvanceReached("bob", 5).status());

  ASSIGN_OK(int64_t erased, this->store_->EraseUser("alice"));
  EXPECT_EQ(erased, 5);
  // Not a row anywhere names her (conversation ids are made of names).
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenDb(this->engine_.Url());
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_OK((*db)->Transaction(SqlDb::Mode::kRead, [&]() -> absl::Status {
    const std::string alice = "alice";
    const std::vector<SqlStatement> counts = {
        {"SELECT COUNT(*) FROM streams WHERE owner = $1", {alice}},
        {"SELECT COUNT(*) FROM members WHERE owner = $1 OR peer = $1", {alice}},
        {"SELECT COUNT(*) FROM stream_entries WHERE owner = $1", {alice}},
        {"SELECT COUNT(*) FROM messages WHERE sent_by = $1 OR send_to = $1", {alice}},
        {"SELECT COUNT(*) FROM conversations WHERE id IN ($1, $2, $3)",
         {ConversationId(alice, "bob"), ConversationId(alice, "carol"),
          ConversationId(alice, alice)}}};
    for (const SqlStatement& count : counts) {
      absl::StatusOr<SqlRows> rows = (*db)->Run(count.sql, count.params);
      if (!rows.ok()) return rows.status();
      EXPECT_EQ(rows->Int(0, 0), 0) << count.sql;
    }
    return absl::OkStatus();
  }));
  db->reset();
  ASSIGN_OK(bool known, this->store_->HasUser("alice"));
  EXPECT_FALSE(known);
  ASSIGN_OK(UserMarks marks, this->store_->Marks("alice"));
  EXPECT_EQ(marks.last_useq, 0);
  EXPECT_THAT(this->SyncAll("alice"), IsEmpty());
  ASSIGN_OK(HistoryPage history, this->store_->History("carol", "alice", 0, 10, kMiB));
  EXPECT_THAT(history.messages, IsEmpty());

  // bob keeps his numbers; his stream has holes where alice's were.
  EXPECT_THAT(Useqs(this->SyncAll("bob")), ElementsAre(2, 4));
  ASSIGN_OK(SyncPage page, this->store_->Sync("bob", 0, 1, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("b1"));
  EXPECT_TRUE(page.more);
  ASSIGN_OK(page, this->store_->Sync("bob", page.useq, 1, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("c2"));
  EXPECT_FALSE(page.more);
  ASSIGN_OK(marks, this->store_->Marks("bob"));
  EXPECT_EQ(marks.last_useq, 5);
  EXPECT_EQ(marks.reached_useq, 5);
  ASSIGN_OK(page, this->store_->Unread("bob", 0, 10, kMiB));
  EXPECT_THAT(Texts(page.messages), ElementsAre("c2"));
  ASSIGN_OK(history, this->store_->History("bob", "alice", 0, 10, kMiB));
  EXPECT_THAT(history.messages, IsEmpty());
  ASSIGN_OK(ConversationsPage list, this->store_->Conversations("bob", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 1u);
  EXPECT_EQ(list.items[0].with, "carol");
  ASSIGN_OK(list, this->store_->Conversations("carol", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 1u);
  EXPECT_EQ(list.items[0].with, "bob");
  EXPECT_THAT(Useqs(this->SyncAll("carol")), ElementsAre(1, 3));

  // The name starts afresh: useq and seq from 1, its old key unknown.
  Committed again = this->Send("alice", "bob", "new", kT0 + 1, "key");
  EXPECT_FALSE(again.duplicate);
  EXPECT_EQ(again.for_sender.useq, 1);
  EXPECT_EQ(again.for_sender.seq, 1);
  EXPECT_EQ(again.recipient_useq, 6);
  EXPECT_THAT(Texts(this->SyncAll("alice")), ElementsAre("new"));
  ASSIGN_OK(list, this->store_->Conversations("bob", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 2u);
  EXPECT_EQ(list.items[0].with, "alice");
  EXPECT_EQ(list.items[0].unread, 1);
  EXPECT_EQ(list.items[0].read_seq, 0);
  EXPECT_EQ(list.items[0].peer_read_seq, 0);
  ASSIGN_OK(MessageStore::ReadResult read, this->store_->MarkRead("bob", "alice", 1));
  EXPECT_EQ(read.read_seq, 1);
  ASSIGN_OK(std::vector<MarkChange> changes, this->store_->AdvanceReached("alice", 1));
  EXPECT_THAT(changes, IsEmpty());  // her own message
}

TYPED_TEST(MessageStoreTest, EraseUserOfAnUnknownUserIsNotFound) {
  EXPECT_EQ(this->store_->EraseUser("nobody").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(this->store_->EraseUser("").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_OK(this->store_->KnowUser("dave"));
  ASSIGN_OK(int64_t erased, this->store_->EraseUser("dave"));
  EXPECT_EQ(erased, 0);
  EXPECT_EQ(this->store_->EraseUser("dave").status().code(), absl::StatusCode::kNotFound);
  // Pruned messages are gone already; the rest of the user still is erased.
  this->Send("erin", "frank", "old", kT0);
  this->Send("erin", "frank", "new", kT0 + kDay);
  ASSIGN_OK(int64_t pruned, this->store_->PruneOlderThan(kT0 + 1, 10));
  EXPECT_EQ(pruned, 1);
  ASSIGN_OK(erased, this->store_->EraseUser("frank"));
  EXPECT_EQ(erased, 1);
  EXPECT_THAT(this->SyncAll("erin"), IsEmpty());
  ASSIGN_OK(ConversationsPage list, this->store_->Conversations("erin", "", 10, kMiB));
  EXPECT_THAT(list.items, IsEmpty());
  ASSIGN_OK(UserMarks marks, this->store_->Marks("erin"));
  EXPECT_EQ(marks.last_useq, 2);
}

// The tables as the first version of the store created them (before
// server, type and metadata), with one message in them.
std::string FirstVersionSchema(const SqlDb& db) {
  const std::string blob = db.BlobType();
  const std::string keyed = db.KeyedTable();
  return absl::StrCat(
      "CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", keyed,
      ";"
      "CREATE TABLE streams (owner TEXT PRIMARY KEY,"
      " last_useq BIGINT NOT NULL DEFAULT 0, reached_useq BIGINT NOT NULL DEFAULT 0)",
      keyed,
      ";"
      "CREATE TABLE conversations (id TEXT PRIMARY KEY, last_seq BIGINT NOT NULL DEFAULT 0)",
      keyed,
      ";"
      "CREATE TABLE members (owner TEXT NOT NULL, conversation TEXT NOT NULL,"
      " peer TEXT NOT NULL, last_useq BIGINT NOT NULL DEFAULT 0,"
      " read_seq BIGINT NOT NULL DEFAULT 0, delivered_seq BIGINT NOT NULL DEFAULT 0,"
      " PRIMARY KEY (owner, conversation))",
      keyed,
      ";"
      "CREATE INDEX members_by_last ON members (owner, last_useq);"
      "CREATE TABLE messages (id TEXT PRIMARY KEY, conversation TEXT NOT NULL,"
      " seq BIGINT NOT NULL, sent_by TEXT NOT NULL, send_to TEXT NOT NULL,"
      " sender_useq BIGINT NOT NULL, recipient_useq BIGINT NOT NULL, body ",
      blob, " NOT NULL, ts_ms BIGINT NOT NULL, idem_key ", blob,
      ", UNIQUE (conversation, seq));"
      "CREATE UNIQUE INDEX messages_idem ON messages (sent_by, idem_key)"
      " WHERE idem_key IS NOT NULL;"
      "CREATE INDEX messages_by_ts ON messages (ts_ms);"
      "CREATE TABLE stream_entries (owner TEXT NOT NULL, useq BIGINT NOT NULL,"
      " message_id TEXT NOT NULL, PRIMARY KEY (owner, useq))",
      keyed,
      ";"
      "INSERT INTO store_meta VALUES ('epoch', 'old-epoch');"
      "INSERT INTO streams VALUES ('alice', 1, 0), ('bob', 1, 0);"
      "INSERT INTO conversations VALUES ('",
      ConversationId("alice", "bob"),
      "', 1);"
      "INSERT INTO members VALUES ('alice', '",
      ConversationId("alice", "bob"), "', 'bob', 1, 0, 0), ('bob', '",
      ConversationId("alice", "bob"),
      "', 'alice', 1, 0, 0);"
      "INSERT INTO messages VALUES ('old1', '",
      ConversationId("alice", "bob"), "', 1, 'alice', 'bob', 1, 1, ",
      db.dialect() == SqlDb::Dialect::kSqlite ? "CAST('old' AS BLOB)" : "'old'::bytea", ", ", kT0,
      ", NULL);"
      "INSERT INTO stream_entries VALUES ('alice', 1, 'old1'), ('bob', 1, 'old1');");
}

TYPED_TEST(MessageStoreTest, OpensADatabaseOfTheFirstVersion) {
  this->store_.reset();
  ASSERT_OK(this->engine_.SetUp());  // a fresh, empty location
  const std::string url = this->engine_.Url();
  absl::StatusOr<std::unique_ptr<SqlDb>> db = OpenDb(url);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_OK((*db)->Transaction(SqlDb::Mode::kWrite,
                               [&] { return (*db)->Execute(FirstVersionSchema(**db)); }));
  db->reset();

  this->Reopen();
  EXPECT_EQ(this->store_->Epoch(), "old-epoch");
  NewMessage notice = this->Msg("bob", "alice", "new");
  notice.server = true;
  notice.type = "kind";
  notice.metadata = "{\"a\":1}";
  ASSIGN_OK(std::vector<Committed> committed, this->store_->Commit({notice}));
  EXPECT_EQ(committed[0].for_sender.seq, 2);
  EXPECT_EQ(committed[0].for_sender.useq, 2);
  std::vector<Message> alice = this->SyncAll("alice");
  ASSERT_EQ(alice.size(), 2u);
  EXPECT_EQ(alice[0].text, "old");
  EXPECT_FALSE(alice[0].server);
  EXPECT_EQ(alice[0].type, "");
  EXPECT_EQ(alice[0].metadata, "");
  EXPECT_EQ(alice[1].text, "new");
  EXPECT_TRUE(alice[1].server);
  EXPECT_EQ(alice[1].type, "kind");
  EXPECT_EQ(alice[1].metadata, "{\"a\":1}");
  ASSIGN_OK(HistoryPage history, this->store_->History("bob", "alice", 0, 10, kMiB));
  EXPECT_THAT(Texts(history.messages), ElementsAre("old", "new"));
  ASSIGN_OK(ConversationsPage list, this->store_->Conversations("alice", "", 10, kMiB));
  ASSERT_EQ(list.items.size(), 1u);
  EXPECT_EQ(list.items[0].last.type, "kind");
  EXPECT_EQ(list.items[0].unread, 1);
  // Opening it again finds the columns there.
  this->Reopen();
  EXPECT_THAT(Texts(this->SyncAll("bob")), ElementsAre("old", "new"));
}

TEST(ConversationIdTest, SymmetricDistinctAndJsonClean) {
  EXPECT_EQ(ConversationId("alice", "bob"), ConversationId("bob", "alice"));
  EXPECT_NE(ConversationId("alice", "bob"), ConversationId("alice", "bobb"));
  EXPECT_NE(ConversationId("ab", "c"), ConversationId("a", "bc"));
  EXPECT_NE(ConversationId("alice", "alice"), ConversationId("alice", "bob"));
  const std::string id = ConversationId("\"quote\" \\ ü", "Zoë 名前");
  for (char c : id) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')
        << id;
  }
}

TEST(OpenStoreTest, RejectsUnknownUrlsAndReportsUnreachableEngines) {
  EXPECT_EQ(OpenMessageStore("mysql://x", TestOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenUserStore("sqlite:", TestOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenMessageStore("sqlite:/dev/null/dir/x.db", TestOptions()).status().code(),
            absl::StatusCode::kUnavailable);
  // Port 1 on loopback: nothing listens there.
  absl::StatusOr<std::unique_ptr<MessageStore>> pg =
      OpenMessageStore("postgresql://chat@127.0.0.1:1/postgres", TestOptions());
  EXPECT_EQ(pg.status().code(), absl::StatusCode::kUnavailable) << pg.status();
}

}  // namespace
}  // namespace chat::store

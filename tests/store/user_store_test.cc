// Every UserStore case runs against both engines.
#include "store/user_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "store/open_store.h"
#include "tests/store/store_engines.h"

namespace chat::store {
namespace {

using ::testing::ElementsAre;
using testing::EngineNames;
using ::testing::IsEmpty;
using testing::PostgresEngine;
using testing::SqliteEngine;
using testing::TestOptions;

constexpr int64_t kNow = 1'764'000'000'000;

template <typename Engine>
class UserStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(engine_.SetUp());
    Reopen();
  }
  void Reopen() {
    store_.reset();
    ASSIGN_OK(store_, OpenUserStore(engine_.Url(), TestOptions()));
  }

  Engine engine_;
  std::unique_ptr<UserStore> store_;
};

using Engines = ::testing::Types<SqliteEngine, PostgresEngine>;
TYPED_TEST_SUITE(UserStoreTest, Engines, EngineNames);

TYPED_TEST(UserStoreTest, AddsUsersOnceAndListsThemSorted) {
  ASSIGN_OK(std::vector<std::string> users, this->store_->AllUsers());
  EXPECT_THAT(users, IsEmpty());
  ASSIGN_OK(bool added, this->store_->AddUser("bob", kNow));
  EXPECT_TRUE(added);
  ASSIGN_OK(added, this->store_->AddUser("bob", kNow + 1));
  EXPECT_FALSE(added);
  ASSIGN_OK(added, this->store_->AddUser("Zoë", kNow));
  ASSIGN_OK(added, this->store_->AddUser("alice", kNow));
  this->Reopen();
  ASSIGN_OK(users, this->store_->AllUsers());
  EXPECT_THAT(users, ElementsAre("Zoë", "alice", "bob"));  // byte order
  EXPECT_FALSE(this->store_->AddUser("", kNow).ok());
}

TYPED_TEST(UserStoreTest, AddUsersAddsTheMissingOnesInOneGo) {
  ASSIGN_OK(bool added, this->store_->AddUser("bob", kNow));
  // 150 names: statements of 64, 64, 16, 4 and 2 rows; one is known, one
  // given twice.
  std::vector<std::string> names = {"bob", "carol", "carol"};
  for (int i = 0; i < 147; ++i) names.push_back("user-" + std::to_string(1000 + i));
  ASSIGN_OK(int count, this->store_->AddUsers(names, kNow));
  EXPECT_EQ(count, 148);
  ASSIGN_OK(count, this->store_->AddUsers(names, kNow));
  EXPECT_EQ(count, 0);
  ASSIGN_OK(count, this->store_->AddUsers({}, kNow));
  EXPECT_EQ(count, 0);
  this->Reopen();
  ASSIGN_OK(std::vector<std::string> users, this->store_->AllUsers());
  EXPECT_EQ(users.size(), 149u);
  EXPECT_EQ(users.front(), "bob");
  EXPECT_EQ(users.back(), "user-1146");
  // An empty name fails the whole call: nothing of it is added.
  EXPECT_FALSE(this->store_->AddUsers({"dave", ""}, kNow).ok());
  ASSIGN_OK(added, this->store_->AddUser("dave", kNow));
  EXPECT_TRUE(added);
}

TYPED_TEST(UserStoreTest, ClaimNameBindsTheFirstSubjectOnly) {
  ASSIGN_OK(std::string owner, this->store_->ClaimName("alice", "sub-1", kNow));
  EXPECT_EQ(owner, "sub-1");
  ASSIGN_OK(owner, this->store_->ClaimName("alice", "sub-2", kNow));
  EXPECT_EQ(owner, "sub-1");
  ASSIGN_OK(owner, this->store_->ClaimName("alice", "sub-1", kNow));
  EXPECT_EQ(owner, "sub-1");
  // A user added without a subject is claimed by the first one to ask.
  ASSERT_OK(this->store_->AddUser("bob", kNow).status());
  ASSIGN_OK(owner, this->store_->ClaimName("bob", "sub-3", kNow));
  EXPECT_EQ(owner, "sub-3");
  ASSIGN_OK(bool added, this->store_->AddUser("bob", kNow));
  EXPECT_FALSE(added);
  this->Reopen();
  ASSIGN_OK(owner, this->store_->ClaimName("bob", "sub-4", kNow));
  EXPECT_EQ(owner, "sub-3");
  ASSIGN_OK(std::vector<std::string> users, this->store_->AllUsers());
  EXPECT_THAT(users, ElementsAre("alice", "bob"));
}

TYPED_TEST(UserStoreTest, DeleteUserErasesTheUserAndTheClaim) {
  ASSERT_OK(this->store_->ClaimName("alice", "sub-1", kNow).status());
  ASSIGN_OK(bool deleted, this->store_->DeleteUser("alice"));
  EXPECT_TRUE(deleted);
  ASSIGN_OK(deleted, this->store_->DeleteUser("alice"));
  EXPECT_FALSE(deleted);
  ASSIGN_OK(std::string owner, this->store_->ClaimName("alice", "sub-2", kNow));
  EXPECT_EQ(owner, "sub-2");
}

TYPED_TEST(UserStoreTest, EngineFailureIsUnavailableThenRecovers) {
  ASSERT_OK(this->store_->AddUser("alice", kNow).status());
  ASSERT_OK(this->engine_.Break());
  EXPECT_EQ(this->store_->AddUser("bob", kNow).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_OK(this->engine_.Repair());
  ASSIGN_OK(bool added, this->store_->AddUser("bob", kNow));
  EXPECT_TRUE(added);
  ASSIGN_OK(std::vector<std::string> users, this->store_->AllUsers());
  EXPECT_THAT(users, ElementsAre("alice", "bob"));
}

}  // namespace
}  // namespace chat::store

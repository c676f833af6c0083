// message-service in process, on a SQLite store in a temporary directory:
// edges are EdgeLink streams driven by the test, other services call the
// unary RPCs through a real stub. Which users exist beyond the store is
// answered by a fake connection-service lookup.
#include "message-service/message_service.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "message-service/dispatcher.h"
#include "message-service/id_generator.h"
#include "message-service/store_worker.h"
#include "message-service/user_lookup.h"
#include "store/open_store.h"
#include "tests/grpc/grpc_test_util.h"
#include "tests/support/fake_clock.h"
#include "tests/support/flaky_message_store.h"

namespace chat::message {
namespace {

using chat::testing::Ctx;
using chat::testing::Show;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
namespace v1 = chat::v1;

constexpr int64_t kNow = 1764050000123;
constexpr absl::Duration kWait = absl::Seconds(20);

std::string StatusName(v1::SendStatus s) { return v1::SendStatus_Name(s); }
// An EdgeLink send result's canonical code, by name ("OK", "NOT_FOUND", ...).
std::string CodeName(int code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(static_cast<absl::StatusCode>(code)));
}

// The ErrorInfo reason in a google.rpc.Status (a failed call's details, or a
// per-item status of a successful one).
std::string ReasonIn(const google::rpc::Status& status) {
  for (const auto& detail : status.details()) {
    google::rpc::ErrorInfo info;
    if (detail.UnpackTo(&info)) {
      EXPECT_EQ(info.domain(), "chat.v1");
      return info.reason();
    }
  }
  return "<no ErrorInfo>";
}
std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return "<no details>";
  EXPECT_EQ(details.code(), static_cast<int>(status.error_code()));
  return ReasonIn(details);
}

// The real store, failing on demand, counting the messages of each commit.
class CountingStore : public chat::testing::FlakyMessageStore {
 public:
  using FlakyMessageStore::FlakyMessageStore;
  absl::StatusOr<std::vector<store::Committed>> Commit(
      const std::vector<store::NewMessage>& batch) override {
    {
      absl::MutexLock lock(&mu_);
      commits_.push_back(batch.size());
    }
    return FlakyMessageStore::Commit(batch);
  }
  absl::StatusOr<CommitResult> CommitAndAdvance(
      const std::vector<store::NewMessage>& batch,
      const std::vector<std::pair<std::string, int64_t>>& marks) override {
    if (!batch.empty()) {
      absl::MutexLock lock(&mu_);
      commits_.push_back(batch.size());
    }
    return FlakyMessageStore::CommitAndAdvance(batch, marks);
  }
  std::vector<size_t> commits() {
    absl::MutexLock lock(&mu_);
    return commits_;
  }

 private:
  absl::Mutex mu_;
  std::vector<size_t> commits_ ABSL_GUARDED_BY(mu_);
};

std::vector<std::string> Ids(const google::protobuf::RepeatedPtrField<std::string>& ids) {
  return {ids.begin(), ids.end()};
}

// "bob:delivered=2@a1,a2" / "bob:read=2@b1".
std::string Describe(const v1::Receipt& r) {
  std::string s = r.user();
  if (r.read_seq() > 0) absl::StrAppend(&s, ":read=", r.read_seq());
  if (r.delivered_seq() > 0) absl::StrAppend(&s, ":delivered=", r.delivered_seq());
  absl::StrAppend(&s, "@", absl::StrJoin(r.connection_ids(), ","));
  return s;
}

// Everything that came down one EdgeLink so far.
struct Seen {
  std::vector<v1::EdgeDown> downs;
  std::vector<v1::Delivery> deliveries;
  std::vector<v1::EdgeSendResult> results;
  std::vector<v1::Attached> attached;
  std::vector<v1::EdgeQueryResult> query_results;
  std::vector<v1::Receipt> receipts;

  const v1::EdgeSendResult* Result(uint64_t seq) const {
    for (const auto& r : results) {
      if (r.seq() == seq) return &r;
    }
    return nullptr;
  }
  const v1::EdgeQueryResult* QueryResult(uint64_t seq) const {
    for (const auto& r : query_results) {
      if (r.seq() == seq) return &r;
    }
    return nullptr;
  }
  size_t AttachedCount(const std::string& connection_id) const {
    size_t n = 0;
    for (const auto& a : attached) n += a.connection_id() == connection_id;
    return n;
  }
  std::vector<std::string> Messages() const {
    std::vector<std::string> out;
    for (const auto& d : deliveries) out.push_back(d.message());
    return out;
  }
  std::vector<std::string> ReceiptList() const {
    std::vector<std::string> out;
    for (const auto& r : receipts) out.push_back(Describe(r));
    return out;
  }
};

// One edge's EdgeLink, as the edge drives it: writes go out one at a time in
// order, everything read is gathered in a Seen the test waits on.
class Link final : public grpc::ClientBidiReactor<v1::EdgeUp, v1::EdgeDown> {
 public:
  explicit Link(v1::EdgeGateway::Stub* stub) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stub->async()->EdgeLink(&context_, this);
    StartRead(&in_);
    StartCall();
  }
  ~Link() override {
    context_.TryCancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  void Write(v1::EdgeUp up) {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(up));
    }
    WriteNext();
  }
  // Ends our side of the stream (the edge closing its link cleanly).
  void Close() {
    {
      absl::MutexLock lock(&mu_);
      close_ = true;
    }
    WriteNext();
  }
  // The link breaks (the edge went away).
  void Cancel() { context_.TryCancel(); }

  // Sends the first EdgeUp with `edge_id` and waits for the greeting.
  ::testing::AssertionResult Hello(const std::string& edge_id) {
    v1::EdgeUp up;
    up.set_edge_id(edge_id);
    Write(std::move(up));
    return WaitUntil([](const Seen& s) { return !s.downs.empty(); }, "the greeting");
  }
  v1::EdgeDown Greeting() {
    absl::MutexLock lock(&mu_);
    return seen_.downs.empty() ? v1::EdgeDown() : seen_.downs[0];
  }

  // Attaches a connection and waits for its Attached.
  v1::Attached Attach(const std::string& connection_id, const std::string& user) {
    const size_t before = Get().AttachedCount(connection_id);
    v1::EdgeUp up;
    auto* a = up.add_attaches();
    a->set_connection_id(connection_id);
    a->set_user(user);
    a->set_after_useq(-1);
    Write(std::move(up));
    v1::Attached answer;
    EXPECT_TRUE(WaitUntil(
        [&](const Seen& s) {
          if (s.AttachedCount(connection_id) <= before) return false;
          for (const auto& a : s.attached) {
            if (a.connection_id() == connection_id) answer = a;
          }
          return true;
        },
        "Attached " + connection_id));
    return answer;
  }
  void Detach(const std::string& connection_id) {
    v1::EdgeUp up;
    up.add_detaches(connection_id);
    Write(std::move(up));
  }
  void Reached(const std::string& user, int64_t from, int64_t to) {
    v1::EdgeUp up;
    auto* r = up.add_reached();
    r->set_user(user);
    r->set_from_useq(from);
    r->set_to_useq(to);
    Write(std::move(up));
  }
  void Send(const std::vector<std::pair<uint64_t, v1::SendRequest>>& sends) {
    v1::EdgeUp up;
    for (const auto& [seq, request] : sends) {
      auto* s = up.add_sends();
      s->set_seq(seq);
      *s->mutable_request() = request;
    }
    Write(std::move(up));
  }
  // Sends one request and waits for its result.
  v1::EdgeSendResult SendOne(uint64_t seq, const v1::SendRequest& request) {
    Send({{seq, request}});
    return Result(seq);
  }
  v1::EdgeSendResult Result(uint64_t seq) {
    v1::EdgeSendResult result;
    EXPECT_TRUE(WaitUntil(
        [&](const Seen& s) {
          const v1::EdgeSendResult* r = s.Result(seq);
          if (r != nullptr) result = *r;
          return r != nullptr;
        },
        absl::StrCat("the result of send ", seq)));
    return result;
  }
  v1::EdgeQueryResult Query(v1::EdgeQuery query) {
    const uint64_t seq = query.seq();
    v1::EdgeUp up;
    *up.add_queries() = std::move(query);
    Write(std::move(up));
    v1::EdgeQueryResult result;
    EXPECT_TRUE(WaitUntil(
        [&](const Seen& s) {
          const v1::EdgeQueryResult* r = s.QueryResult(seq);
          if (r != nullptr) result = *r;
          return r != nullptr;
        },
        absl::StrCat("the result of query ", seq)));
    return result;
  }

  ::testing::AssertionResult WaitUntil(const std::function<bool(const Seen&)>& pred,
                                       const std::string& what, absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto holds = [&] { return pred(seen_) || done_; };
    mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
    if (pred(seen_)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "waited for " << what << "; "
           << (done_ ? "the stream ended: " + Show(status_) : "nothing within the deadline")
           << "; seen " << seen_.deliveries.size() << " deliveries, " << seen_.results.size()
           << " results, " << seen_.receipts.size() << " receipts";
  }
  Seen Get() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  // The stream's end status, once it ended within the deadline.
  std::optional<grpc::Status> WaitDone(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&done_), timeout)) return std::nullopt;
    return status_;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    {
      absl::MutexLock lock(&mu_);
      seen_.downs.push_back(in_);
      for (auto& d : *in_.mutable_deliveries()) seen_.deliveries.push_back(std::move(d));
      for (auto& r : *in_.mutable_results()) seen_.results.push_back(std::move(r));
      for (auto& a : *in_.mutable_attached()) seen_.attached.push_back(std::move(a));
      for (auto& q : *in_.mutable_query_results()) seen_.query_results.push_back(std::move(q));
      for (auto& r : *in_.mutable_receipts()) seen_.receipts.push_back(std::move(r));
    }
    StartRead(&in_);
  }
  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        queue_.clear();
        return;
      }
    }
    WriteNext();
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  void WriteNext() {
    bool writes_done = false;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || done_) return;
      if (queue_.empty()) {
        if (!close_ || closed_) return;
        closed_ = writes_done = true;
      } else {
        out_ = std::move(queue_.front());
        queue_.erase(queue_.begin());
        writing_ = true;
      }
    }
    if (writes_done) {
      StartWritesDone();
    } else {
      StartWrite(&out_);
    }
  }

  grpc::ClientContext context_;
  v1::EdgeDown in_;
  v1::EdgeUp out_;
  absl::Mutex mu_;
  std::vector<v1::EdgeUp> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool close_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  Seen seen_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// connection-service's durable user table, as far as message-service asks it.
class FakeUserLookup : public UserLookup {
 public:
  void Exists(const std::string& user, std::function<void(absl::Status)> done) override {
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      asked_.push_back(user);
      if (defer_) {
        deferred_.emplace_back(user, std::move(done));
        return;
      }
      if (unavailable_) {
        status = absl::UnavailableError("test: connection service down");
      } else if (!users_.contains(user)) {
        status = absl::NotFoundError(absl::StrCat("no user named '", user, "'"));
      }
    }
    done(status);
  }
  void Forget(const std::string& user, int code, const std::string& reason,
              std::function<void(absl::StatusOr<ForgetResult>)> done) override {
    absl::StatusOr<ForgetResult> result;
    {
      absl::MutexLock lock(&mu_);
      forgotten_.push_back(absl::StrCat(user, " ", code, " ", reason));
      if (unavailable_) {
        result = absl::UnavailableError("test: connection service down");
      } else {
        result = ForgetResult{users_.erase(user) > 0, disconnect_};
      }
    }
    done(std::move(result));
  }
  void Add(const std::string& user) {
    absl::MutexLock lock(&mu_);
    users_.insert(user);
  }
  // What the next Forget says it closed.
  void SetDisconnects(int n) {
    absl::MutexLock lock(&mu_);
    disconnect_ = n;
  }
  std::vector<std::string> forgotten() {
    absl::MutexLock lock(&mu_);
    return forgotten_;
  }
  // Deferred: answers wait until ReleaseInReverse (as gRPC answers may come
  // back in any order).
  void Defer() {
    absl::MutexLock lock(&mu_);
    defer_ = true;
  }
  ::testing::AssertionResult WaitForDeferred(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&] { return deferred_.size() >= n; };
    if (mu_.AwaitWithTimeout(absl::Condition(&enough), kWait)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << deferred_.size() << " lookups waiting, wanted " << n;
  }
  void ReleaseInReverse() {
    std::vector<std::pair<std::string, std::function<void(absl::Status)>>> deferred;
    {
      absl::MutexLock lock(&mu_);
      defer_ = false;
      deferred.swap(deferred_);
    }
    for (auto it = deferred.rbegin(); it != deferred.rend(); ++it) {
      absl::Status status;
      {
        absl::MutexLock lock(&mu_);
        if (!users_.contains(it->first)) status = absl::NotFoundError("no such user");
      }
      it->second(status);
    }
  }
  void SetUnavailable(bool unavailable) {
    absl::MutexLock lock(&mu_);
    unavailable_ = unavailable;
  }
  std::vector<std::string> asked() {
    absl::MutexLock lock(&mu_);
    return asked_;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> users_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> asked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> forgotten_ ABSL_GUARDED_BY(mu_);
  int disconnect_ ABSL_GUARDED_BY(mu_) = 0;
  bool unavailable_ ABSL_GUARDED_BY(mu_) = false;
  bool defer_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::string, std::function<void(absl::Status)>>> deferred_
      ABSL_GUARDED_BY(mu_);
};

v1::SendRequest Req(const std::string& from, const std::string& to, const std::string& message,
                    const std::string& from_connection = "", const std::string& key = "") {
  v1::SendRequest r;
  r.set_sent_by(from);
  r.set_send_to(to);
  r.set_message(message);
  r.set_from_connection_id(from_connection);
  r.set_idempotency_key(key);
  return r;
}

class MessageServiceTest : public ::testing::Test {
 protected:
  virtual MessageServiceOptions Options() { return MessageServiceOptions(); }

  void SetUp() override {
    char dir[] = "/tmp/chat-message-service-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    // Users connection-service knows; the store learns them as they are used.
    for (const char* user : {"alice", "bob", "carol", "dave", "system"}) lookup_.Add(user);

    auto real = store::OpenMessageStore("sqlite:" + dir_ + "/data/messages.db", {});
    ASSERT_TRUE(real.ok()) << real.status();
    auto flaky = std::make_unique<CountingStore>(std::move(*real));
    store_ = flaky.get();
    epoch_ = store_->Epoch();
    dispatcher_ = std::make_unique<Dispatcher>(&clock_, epoch_);
    worker_ = std::make_unique<StoreWorker>(std::move(flaky), StoreWorker::Options(), &lookup_);
    worker_->SetMarkHooks(
        {[this](store::MessageStore* s) { return dispatcher_->TakeMovedMarks(s); },
         [this](const absl::StatusOr<std::vector<store::MarkChange>>& changes) {
           dispatcher_->MarksSaved(changes);
         }});
    service_ = std::make_unique<MessageServiceImpl>(worker_.get(), dispatcher_.get(), &ids_,
                                                    &clock_, Options(), &lookup_);
    server_ = std::make_unique<chat::testing::InProcessServer>();
    api_ = std::make_unique<MessageServiceApi>(service_.get());
    gateway_service_ = std::make_unique<EdgeGatewayImpl>(service_.get());
    absl::Status started =
        server_->Start({api_.get(), gateway_service_.get()}, /*completion_queue=*/true);
    ASSERT_TRUE(started.ok()) << started;
    std::unique_ptr<grpc::ServerCompletionQueue> queue = server_->TakeCompletionQueue();
    grpc::ServerCompletionQueue* link_queue = queue.get();
    worker_->Start(std::move(queue));
    api_->Serve(link_queue);
    gateway_service_->Serve(link_queue);
    stub_ = v1::MessageService::NewStub(server_->channel());
    gateway_ = v1::EdgeGateway::NewStub(server_->channel());
  }

  void TearDown() override {
    stub_.reset();
    gateway_.reset();
    // Links end; the worker handles their events meanwhile and queues their
    // clean-up.
    if (server_) server_->Shutdown();
    // Runs what was queued (it uses the dispatcher), then drains the
    // server's completion queue, which must happen before the server goes.
    worker_.reset();
    server_.reset();
    service_.reset();
    dispatcher_.reset();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  // Runs `fn` on the store worker's thread (where the dispatcher lives) and
  // waits for it.
  void OnWorker(const std::function<void()>& fn) {
    absl::Notification ran;
    ASSERT_TRUE(worker_->Submit([&](store::MessageStore*) {
      fn();
      ran.Notify();
    }));
    ASSERT_TRUE(ran.WaitForNotificationWithTimeout(kWait));
  }
  size_t ConnectionCount() {
    size_t n = 0;
    OnWorker([&] { n = dispatcher_->connection_count(); });
    return n;
  }
  // Link ends are processed asynchronously: waits until the routing state
  // has `n` connections.
  ::testing::AssertionResult WaitForConnections(size_t n) {
    const absl::Time deadline = absl::Now() + kWait;
    size_t now = ConnectionCount();
    while (now != n && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
      now = ConnectionCount();
    }
    if (now == n) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << now << " connections attached, wanted " << n;
  }

  v1::SendResponse UnarySend(const v1::SendRequest& request, grpc::Status* status = nullptr) {
    v1::SendResponse response;
    grpc::Status s = stub_->Send(Ctx().get(), request, &response);
    if (status != nullptr) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << Show(s);
    }
    return response;
  }
  v1::SyncResponse Sync(const std::string& user, int64_t since = 0,
                        grpc::Status* status = nullptr) {
    v1::SyncRequest request;
    request.set_user(user);
    request.set_since(since);
    v1::SyncResponse response;
    grpc::Status s = stub_->Sync(Ctx().get(), request, &response);
    if (status != nullptr) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << Show(s);
    }
    return response;
  }
  // The conversation of `user` with `with` from the list, or a failure.
  v1::ConversationItem Conversation(const std::string& user, const std::string& with) {
    v1::ConversationsRequest request;
    request.set_user(user);
    v1::ConversationsResponse response;
    grpc::Status s = stub_->Conversations(Ctx().get(), request, &response);
    EXPECT_TRUE(s.ok()) << Show(s);
    for (const auto& item : response.items()) {
      if (item.with() == with) return item;
    }
    ADD_FAILURE() << user << " has no conversation with " << with;
    return {};
  }

  std::string dir_;
  std::string epoch_;
  chat::testing::FakeClock clock_{kNow};
  IdGenerator ids_{7};
  FakeUserLookup lookup_;
  CountingStore* store_ = nullptr;  // owned by the worker
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<StoreWorker> worker_;
  std::unique_ptr<MessageServiceImpl> service_;
  std::unique_ptr<MessageServiceApi> api_;
  std::unique_ptr<EdgeGatewayImpl> gateway_service_;
  std::unique_ptr<chat::testing::InProcessServer> server_;
  std::unique_ptr<v1::MessageService::Stub> stub_;
  std::unique_ptr<v1::EdgeGateway::Stub> gateway_;
};

TEST_F(MessageServiceTest, FirstEdgeUpWithoutEdgeIdIsInvalid) {
  Link link(gateway_.get());
  link.Send({{1, Req("alice", "alice", "hi")}});
  std::optional<grpc::Status> status = link.WaitDone();
  ASSERT_TRUE(status.has_value()) << "the service must end the stream";
  EXPECT_EQ(status->error_code(), grpc::INVALID_ARGUMENT) << Show(*status);
}

TEST_F(MessageServiceTest, TheGreetingCarriesTheStoreEpoch) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  v1::EdgeDown greeting = e1.Greeting();
  EXPECT_FALSE(epoch_.empty());
  EXPECT_EQ(greeting.epoch(), epoch_);
  EXPECT_EQ(greeting.deliveries_size() + greeting.results_size() + greeting.attached_size(), 0)
      << greeting.DebugString();
  e1.Attach("a1", "alice");
  EXPECT_EQ(Sync("alice").epoch(), epoch_) << "sync answers with the same epoch";
}

TEST_F(MessageServiceTest, AttachAnswersWithTheUsersMarks) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  v1::Attached fresh = e1.Attach("e1-1", "alice");
  EXPECT_EQ(fresh.error(), "");
  EXPECT_EQ(fresh.epoch(), epoch_);
  EXPECT_EQ(fresh.last_useq(), 0);
  EXPECT_EQ(fresh.reached_useq(), 0);

  // bob is away: two messages wait for him.
  EXPECT_EQ(e1.SendOne(1, Req("alice", "bob", "one", "e1-1")).delivered(), 0);
  EXPECT_EQ(e1.SendOne(2, Req("alice", "bob", "two", "e1-1")).delivered(), 0);

  v1::Attached back = e2.Attach("e2-1", "bob");
  EXPECT_EQ(back.error(), "");
  EXPECT_EQ(back.connection_id(), "e2-1");
  EXPECT_EQ(back.last_useq(), 2);
  EXPECT_EQ(back.reached_useq(), 0) << "nothing reached bob yet: the edge pushes from 0";

  // The edge wrote both to bob's socket.
  e2.Reached("bob", 1, 2);
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return !s.receipts.empty(); }, "a receipt"));
  v1::Attached later = e2.Attach("e2-2", "bob");
  EXPECT_EQ(later.last_useq(), 2);
  EXPECT_EQ(later.reached_useq(), 2) << "a later connection is not pushed them again";
}

TEST_F(MessageServiceTest, AttachesInOneEdgeUpAreAnsweredInOrderEachWithItsOwnMarks) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  EXPECT_EQ(e1.SendOne(1, Req("alice", "bob", "one", "a1")).delivered(), 0);
  EXPECT_EQ(e1.SendOne(2, Req("alice", "bob", "two", "a1")).delivered(), 0);

  // A storm of connections comes up in one EdgeUp: bob twice, a new user,
  // an id already attached for alice and a user without a name (each of
  // these two refused, the others not).
  v1::EdgeUp up;
  for (const auto& [id, user] : std::vector<std::pair<std::string, std::string>>{
           {"b1", "bob"}, {"n1", "nina"}, {"a1", "mallory"}, {"x1", ""}, {"b2", "bob"}}) {
    auto* a = up.add_attaches();
    a->set_connection_id(id);
    a->set_user(user);
    a->set_after_useq(-1);
  }
  const size_t before = e1.Get().attached.size();
  e1.Write(std::move(up));
  ASSERT_TRUE(e1.WaitUntil([&](const Seen& s) { return s.attached.size() == before + 5; },
                           "five Attached"));
  const Seen seen = e1.Get();
  const std::vector<v1::Attached> got(seen.attached.begin() + static_cast<long>(before),
                                      seen.attached.end());
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].connection_id(), "b1");
  EXPECT_EQ(got[0].error(), "");
  EXPECT_EQ(got[0].last_useq(), 2);
  EXPECT_EQ(got[1].connection_id(), "n1");
  EXPECT_EQ(got[1].error(), "");
  EXPECT_EQ(got[1].last_useq(), 0);
  EXPECT_EQ(got[2].connection_id(), "a1");
  EXPECT_EQ(got[2].error(), "connection id already attached for another user");
  EXPECT_EQ(got[3].connection_id(), "x1");
  EXPECT_NE(got[3].error(), "");
  EXPECT_EQ(got[4].connection_id(), "b2");
  EXPECT_EQ(got[4].error(), "");
  EXPECT_EQ(got[4].last_useq(), 2);

  // Both of bob's connections get what comes next; alice's stays hers.
  EXPECT_EQ(e1.SendOne(3, Req("alice", "bob", "three", "a1")).delivered(), 2);
  EXPECT_EQ(e1.SendOne(4, Req("nina", "alice", "hi", "n1")).delivered(), 1);
}

TEST_F(MessageServiceTest, AnAttachTheStoreCannotAnswerSaysSoAndTheNextOneWorks) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  store_->Break();
  v1::Attached failed = e1.Attach("a1", "alice");
  EXPECT_EQ(failed.error().rfind("message store unavailable: ", 0), 0u) << failed.error();
  store_->Repair();
  v1::Attached ok = e1.Attach("a2", "alice");
  EXPECT_EQ(ok.error(), "");
  EXPECT_EQ(ok.last_useq(), 0);
}

TEST_F(MessageServiceTest, ASendToAnAttachedUserIsDeliveredWithItsNumbers) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("a1", "alice");
  e2.Attach("b1", "bob");
  const std::string conversation = store::ConversationId("alice", "bob");

  v1::EdgeSendResult first = e1.SendOne(1, Req("alice", "bob", "hello bob", "a1"));
  EXPECT_EQ(CodeName(first.code()), "OK") << first.error();
  EXPECT_EQ(first.delivered(), 1);
  EXPECT_EQ(first.id().size(), 26u) << first.id();
  EXPECT_EQ(first.ts_ms(), kNow);
  EXPECT_EQ(first.conversation(), conversation);
  EXPECT_EQ(first.conversation_seq(), 1);
  EXPECT_EQ(first.useq(), 1) << "the sender's useq";
  EXPECT_FALSE(first.duplicate());

  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return s.deliveries.size() == 1; }, "delivery"));
  v1::Delivery d = e2.Get().deliveries[0];
  EXPECT_EQ(d.id(), first.id()) << "the delivery and the sender's result carry the same id";
  EXPECT_EQ(d.user(), "bob");
  EXPECT_THAT(Ids(d.connection_ids()), ElementsAre("b1"));
  EXPECT_EQ(d.sent_by(), "alice");
  EXPECT_EQ(d.send_to(), "bob");
  EXPECT_EQ(d.message(), "hello bob");
  EXPECT_EQ(d.conversation(), conversation);
  EXPECT_EQ(d.seq(), 1);
  EXPECT_EQ(d.useq(), 1);
  EXPECT_EQ(d.ts_ms(), kNow);

  // bob answers, alice writes again: seq runs per conversation, useq per user.
  v1::EdgeSendResult answer = e2.SendOne(1, Req("bob", "alice", "hi alice", "b1"));
  EXPECT_EQ(answer.conversation_seq(), 2);
  EXPECT_EQ(answer.useq(), 2) << "bob's stream: alice's message, then his own";
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.deliveries.size() == 1; }, "delivery"));
  EXPECT_EQ(e1.Get().deliveries[0].useq(), 2) << "alice's stream: her message, then bob's";
  EXPECT_EQ(e1.Get().deliveries[0].seq(), 2);
  EXPECT_EQ(e1.Get().deliveries[0].user(), "alice");

  v1::EdgeSendResult third = e1.SendOne(2, Req("alice", "bob", "again", "a1"));
  EXPECT_EQ(third.conversation_seq(), 3);
  EXPECT_EQ(third.useq(), 3);
  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return s.deliveries.size() == 2; }, "delivery"));
  EXPECT_EQ(e2.Get().deliveries[1].useq(), 3);
  EXPECT_EQ(e2.Get().deliveries[1].seq(), 3);
}

TEST_F(MessageServiceTest, ABatchOfSendsGetsResultsAndOneDeliveryPerEdge) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("e1-1", "alice");
  e1.Attach("e1-2", "alice");
  e2.Attach("e2-1", "bob");
  e2.Attach("e2-2", "bob");
  e1.Send({{11, Req("alice", "alice", "note to self", "e1-1")},
           {12, Req("alice", "nobody", "hi", "e1-1")},
           {13, Req("alice", "carol", "hi carol", "e1-1")},
           {14, Req("alice", " bad", "hi", "e1-1")},
           {15, Req("alice", "bob", "hi bob", "e1-1")}});

  v1::EdgeSendResult self = e1.Result(11);
  EXPECT_EQ(CodeName(self.code()), "OK") << self.error();
  EXPECT_EQ(self.delivered(), 2) << "to yourself: both connections, the sending one included";
  EXPECT_EQ(CodeName(e1.Result(12).code()), "NOT_FOUND");
  v1::EdgeSendResult offline = e1.Result(13);
  EXPECT_EQ(CodeName(offline.code()), "OK") << "carol exists: stored for later";
  EXPECT_EQ(offline.delivered(), 0);
  EXPECT_EQ(CodeName(e1.Result(14).code()), "INVALID_ARGUMENT");
  EXPECT_NE(e1.Result(14).error(), "") << "a refused send says why";
  v1::EdgeSendResult to_bob = e1.Result(15);
  EXPECT_EQ(CodeName(to_bob.code()), "OK");
  EXPECT_EQ(to_bob.delivered(), 2);

  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "bob's"));
  Seen bob = e2.Get();
  ASSERT_EQ(bob.deliveries.size(), 1u) << "one payload per edge, not one per connection";
  EXPECT_THAT(Ids(bob.deliveries[0].connection_ids()), UnorderedElementsAre("e2-1", "e2-2"));
  EXPECT_EQ(bob.deliveries[0].id(), to_bob.id());
  EXPECT_THAT(bob.results, IsEmpty()) << "results go only to the sender's edge";

  // alice's edge: the note to both connections, and copies of what she sent
  // to others (stored ones too) to the connection that did not send them. A
  // delivery goes down before its result: all are here with the results.
  Seen alice = e1.Get();
  std::vector<std::string> got;
  for (const auto& d : alice.deliveries) {
    std::vector<std::string> ids = Ids(d.connection_ids());
    std::sort(ids.begin(), ids.end());
    got.push_back(absl::StrCat(d.message(), "@", absl::StrJoin(ids, ",")));
  }
  EXPECT_THAT(got, UnorderedElementsAre("note to self@e1-1,e1-2", "hi bob@e1-2", "hi carol@e1-2"))
      << "one payload per message and edge";
}

TEST_F(MessageServiceTest, DeliveriesGoDownTheRecipientsLinkOnly) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("e1-1", "alice");
  e2.Attach("e2-1", "carol");
  EXPECT_EQ(e1.SendOne(1, Req("alice", "carol", "hello carol", "e1-1")).delivered(), 1);
  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "carol's"));
  EXPECT_THAT(Ids(e2.Get().deliveries[0].connection_ids()), ElementsAre("e2-1"));
  EXPECT_THAT(e2.Get().Messages(), ElementsAre("hello carol"));
  EXPECT_THAT(e2.Get().results, IsEmpty());

  // Whatever went down e1 before carol's answer is there when it arrives.
  EXPECT_EQ(e2.SendOne(1, Req("carol", "alice", "hello alice", "e2-1")).delivered(), 1);
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "alice's"));
  EXPECT_THAT(e1.Get().Messages(), ElementsAre("hello alice"))
      << "alice's edge must not get carol's message (nor a copy: the sender has no other "
         "connection)";
}

TEST_F(MessageServiceTest, MessagesFromOneSenderArriveInOrder) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("e1-1", "alice");
  e2.Attach("e2-1", "carol");
  constexpr int kMessages = 300;
  for (int i = 0; i < kMessages; i += 3) {  // batches of 3
    std::vector<std::pair<uint64_t, v1::SendRequest>> batch;
    for (int j = i; j < i + 3; ++j) {
      batch.emplace_back(j, Req("alice", "carol", absl::StrCat("m", j), "e1-1"));
    }
    e1.Send(batch);
  }
  ASSERT_TRUE(e2.WaitUntil([&](const Seen& s) { return s.deliveries.size() >= kMessages; },
                           "every delivery"));
  ASSERT_TRUE(
      e1.WaitUntil([&](const Seen& s) { return s.results.size() >= kMessages; }, "every result"));
  Seen carol = e2.Get();
  Seen alice = e1.Get();
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(carol.deliveries[i].message(), absl::StrCat("m", i)) << "delivery " << i;
    ASSERT_EQ(carol.deliveries[i].seq(), i + 1) << "delivery " << i;
    ASSERT_EQ(carol.deliveries[i].useq(), i + 1) << "delivery " << i;
    ASSERT_EQ(alice.results[i].seq(), static_cast<uint64_t>(i)) << "result " << i;
    ASSERT_EQ(alice.results[i].useq(), i + 1) << "result " << i;
    if (i > 0) {
      ASSERT_LT(carol.deliveries[i - 1].id(), carol.deliveries[i].id()) << "ids sort in order";
    }
  }
}

TEST_F(MessageServiceTest, UnarySendReturnsPerConnectionResults) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("e1-1", "alice");
  e1.Attach("e1-2", "alice");

  v1::SendResponse response = UnarySend(Req("system", "alice", "maintenance"));
  EXPECT_EQ(StatusName(response.status()), "SEND_OK");
  EXPECT_EQ(response.delivered(), 2);
  EXPECT_EQ(response.id().size(), 26u);
  EXPECT_EQ(response.ts_ms(), kNow);
  EXPECT_EQ(response.conversation(), store::ConversationId("system", "alice"));
  EXPECT_EQ(response.seq(), 1);
  EXPECT_EQ(response.useq(), 1);
  std::vector<std::string> connections;
  for (const auto& c : response.connections()) {
    connections.push_back(
        absl::StrCat(c.connection_id(), "@", c.edge_id(), c.delivered() ? " ok" : " no"));
  }
  EXPECT_THAT(connections, UnorderedElementsAre("e1-1@e1 ok", "e1-2@e1 ok"));
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "the delivery"))
      << "the unary send must be pushed down e1's link";
  EXPECT_THAT(e1.Get().Messages(), ElementsAre("maintenance"));
  EXPECT_THAT(Ids(e1.Get().deliveries[0].connection_ids()), UnorderedElementsAre("e1-1", "e1-2"));
}

// A link whose edge is not keeping up refuses deliveries.
class FullLinkTest : public MessageServiceTest {
 protected:
  MessageServiceOptions Options() override {
    MessageServiceOptions options;
    options.max_link_pending_bytes = 1;
    return options;
  }
};

TEST_F(FullLinkTest, UnarySendTellsWhichConnectionsWereNotReached) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("e1-1", "alice");
  v1::SendResponse response = UnarySend(Req("system", "alice", "maintenance"));
  EXPECT_EQ(StatusName(response.status()), "SEND_OK") << "stored all the same";
  EXPECT_EQ(response.delivered(), 0);
  ASSERT_EQ(response.connections_size(), 1);
  EXPECT_EQ(response.connections(0).connection_id(), "e1-1");
  EXPECT_FALSE(response.connections(0).delivered())
      << "the caller must learn that alice's connection was not reached";
  EXPECT_EQ(Sync("alice").messages_size(), 1) << "alice finds it when she syncs";
}

TEST_F(MessageServiceTest, UnarySendAnswersUnknownUserNotFound) {
  grpc::Status status;
  v1::SendResponse response = UnarySend(Req("system", "nobody", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(response.id(), "");
  EXPECT_THAT(lookup_.asked(), ElementsAre("nobody"));

  response = UnarySend(Req("system", "dave", "hi dave"));
  EXPECT_EQ(StatusName(response.status()), "SEND_OK") << "dave exists, offline: stored";
  EXPECT_EQ(response.delivered(), 0);
  EXPECT_EQ(response.useq(), 1) << "the refused send took no number";
  v1::SyncResponse dave = Sync("dave");
  ASSERT_EQ(dave.messages_size(), 1);
  EXPECT_EQ(dave.messages(0).message(), "hi dave");
  EXPECT_EQ(dave.messages(0).id(), response.id());
}

TEST_F(MessageServiceTest, UnarySendFailuresUseCanonicalCodes) {
  grpc::Status status;
  UnarySend(Req("system", "", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  UnarySend(Req("", "alice", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  // (Invalid UTF-8 cannot get this far: protobuf refuses it in string fields.)
  UnarySend(Req("system", "alice", std::string(128 * 1024 + 1, 'x')), &status);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << "over the limit: " << Show(status);
  UnarySend(Req("system", "alice", "hi", "", std::string(65, 'k')), &status);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << "key over 64 bytes: " << Show(status);

  lookup_.SetUnavailable(true);
  UnarySend(Req("system", "alice", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE)
      << "whether alice exists cannot be told: " << Show(status);
  lookup_.SetUnavailable(false);

  store_->Break();
  UnarySend(Req("system", "alice", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << Show(status);
  store_->Repair();
  v1::SendResponse ok = UnarySend(Req("system", "alice", "hi"), &status);
  EXPECT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(StatusName(ok.status()), "SEND_OK");
  EXPECT_EQ(ok.useq(), 1) << "nothing of the failed sends was stored";
}

TEST_F(MessageServiceTest, HealthServiceAnswersServing) {
  std::string error;
  EXPECT_EQ(chat::testing::HealthCheck(server_->channel(), "", &error), 1)
      << "1 = SERVING; " << error;
  // A name the server does not serve: NOT_FOUND, as gRPC's own health service.
  EXPECT_EQ(chat::testing::HealthCheck(server_->channel(), "no.such.Service", &error), -1);
  EXPECT_NE(error.find("code 5"), std::string::npos) << error;
}

// Watch, served on the worker's queue: the status first, then the stream
// stays open until the caller leaves (and the server shuts down cleanly with
// a watcher still open: TearDown).
TEST_F(MessageServiceTest, HealthWatchSendsTheStatusAndStaysOpen) {
  auto health = grpc::health::v1::Health::NewStub(server_->channel());
  for (const auto& [name, want] :
       std::vector<std::pair<std::string, grpc::health::v1::HealthCheckResponse::ServingStatus>>{
           {"", grpc::health::v1::HealthCheckResponse::SERVING},
           {"no.such.Service", grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN}}) {
    auto ctx = chat::testing::Ctx();
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(name);
    auto reader = health->Watch(ctx.get(), request);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(reader->Read(&response)) << "watch of '" << name << "' sent nothing";
    EXPECT_EQ(response.status(), want) << name;
    ctx->TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED) << name;
  }
  // One more left open for the shutdown.
  auto open_ctx = chat::testing::Ctx();
  grpc::health::v1::HealthCheckRequest request;
  auto open_reader = health->Watch(open_ctx.get(), request);
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(open_reader->Read(&response));
  server_->Shutdown();
  while (open_reader->Read(&response)) {
  }
  EXPECT_FALSE(open_reader->Finish().ok());
}

TEST_F(MessageServiceTest, ASendToAnOfflineUserIsStoredAndUnreadAndSyncReturnIt) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  v1::EdgeSendResult sent = e1.SendOne(1, Req("alice", "bob", "while you were away", "a1"));
  EXPECT_EQ(CodeName(sent.code()), "OK") << sent.error();
  EXPECT_EQ(sent.delivered(), 0);
  EXPECT_NE(sent.id(), "");

  // What bob's edge asks after his hello (reached mark 0).
  v1::EdgeQuery unread;
  unread.set_seq(7);
  unread.mutable_unread()->set_user("bob");
  v1::EdgeQueryResult pushed = e1.Query(unread);
  EXPECT_EQ(pushed.code(), 0) << pushed.error();
  ASSERT_EQ(pushed.sync().messages_size(), 1);
  EXPECT_EQ(pushed.sync().messages(0).id(), sent.id());
  EXPECT_EQ(pushed.sync().messages(0).useq(), 1) << "bob's useq";
  EXPECT_EQ(pushed.sync().messages(0).message(), "while you were away");
  EXPECT_FALSE(pushed.sync().more());
  unread.set_seq(8);
  unread.mutable_unread()->set_after(1);
  EXPECT_EQ(e1.Query(unread).sync().messages_size(), 0) << "nothing after useq 1";

  v1::EdgeQuery sync;
  sync.set_seq(9);
  sync.mutable_sync()->set_user("bob");
  v1::EdgeQueryResult synced = e1.Query(sync);
  EXPECT_EQ(synced.code(), 0) << synced.error();
  ASSERT_EQ(synced.sync().messages_size(), 1);
  EXPECT_EQ(synced.sync().epoch(), epoch_);
  EXPECT_EQ(synced.sync().useq(), 1);

  v1::SyncResponse unary = Sync("bob");
  ASSERT_EQ(unary.messages_size(), 1);
  EXPECT_EQ(unary.messages(0).id(), sent.id());
  EXPECT_EQ(unary.messages(0).sent_by(), "alice");
  EXPECT_EQ(unary.messages(0).conversation(), sent.conversation());
}

TEST_F(MessageServiceTest, AnIdempotencyKeyUsedTwiceIsADuplicateWithTheSameNumbers) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("a1", "alice");
  e2.Attach("b1", "bob");
  v1::EdgeSendResult first = e1.SendOne(1, Req("alice", "bob", "first", "a1", "k1"));
  EXPECT_EQ(CodeName(first.code()), "OK");
  EXPECT_EQ(first.delivered(), 1);
  EXPECT_FALSE(first.duplicate());

  v1::EdgeSendResult again = e1.SendOne(2, Req("alice", "bob", "another text", "a1", "k1"));
  EXPECT_EQ(CodeName(again.code()), "OK");
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.delivered(), 0);
  EXPECT_EQ(again.id(), first.id());
  EXPECT_EQ(again.conversation(), first.conversation());
  EXPECT_EQ(again.conversation_seq(), first.conversation_seq());
  EXPECT_EQ(again.useq(), first.useq());
  EXPECT_EQ(again.ts_ms(), first.ts_ms());

  // The same key through another path (unary) is the same message too.
  v1::SendResponse unary = UnarySend(Req("alice", "bob", "third try", "", "k1"));
  EXPECT_TRUE(unary.duplicate());
  EXPECT_EQ(unary.id(), first.id());

  e1.SendOne(3, Req("alice", "bob", "marker", "a1"));
  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return s.deliveries.size() >= 2; }, "marker"));
  EXPECT_THAT(e2.Get().Messages(), ElementsAre("first", "marker"))
      << "a duplicate is not delivered again";
  std::vector<std::string> stored;
  const v1::SyncResponse synced_bob = Sync("bob");
  for (const auto& m : synced_bob.messages()) stored.push_back(m.message());
  EXPECT_THAT(stored, ElementsAre("first", "marker"));
}

TEST_F(MessageServiceTest, OwnCopiesGoToTheSendersOtherConnectionsOnly) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  Link e3(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  ASSERT_TRUE(e3.Hello("e3"));
  e1.Attach("a1", "alice");
  e1.Attach("a2", "alice");
  e3.Attach("a3", "alice");
  e2.Attach("b1", "bob");

  v1::EdgeSendResult sent = e1.SendOne(1, Req("alice", "bob", "from a1", "a1"));
  EXPECT_EQ(sent.delivered(), 1) << "delivered counts the recipient's connections only";
  ASSERT_TRUE(e3.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "a3's copy"));
  v1::Delivery copy = e3.Get().deliveries[0];
  EXPECT_THAT(Ids(copy.connection_ids()), ElementsAre("a3"));
  EXPECT_EQ(copy.user(), "alice");
  EXPECT_EQ(copy.useq(), sent.useq()) << "a copy carries the sender's own useq";
  EXPECT_EQ(copy.id(), sent.id());

  // bob's answer reaches all of alice's connections; whatever e1 got before
  // it is there by then.
  e2.SendOne(1, Req("bob", "alice", "to all of alice", "b1"));
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.deliveries.size() >= 2; }, "e1's"));
  Seen alice = e1.Get();
  ASSERT_EQ(alice.deliveries.size(), 2u);
  EXPECT_EQ(alice.deliveries[0].message(), "from a1");
  EXPECT_THAT(Ids(alice.deliveries[0].connection_ids()), ElementsAre("a2"))
      << "the sending connection gets the result, not a copy";
  EXPECT_EQ(alice.deliveries[1].message(), "to all of alice");
  EXPECT_THAT(Ids(alice.deliveries[1].connection_ids()), UnorderedElementsAre("a1", "a2"));
}

TEST_F(MessageServiceTest, ReachedMovesTheMarkAndSendsDeliveredReceiptsToBothUsers) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("a1", "alice");
  e2.Attach("b1", "bob");
  e1.SendOne(1, Req("alice", "bob", "one", "a1"));
  e1.SendOne(2, Req("alice", "bob", "two", "a1"));
  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return s.deliveries.size() == 2; }, "both"));
  EXPECT_EQ(Conversation("alice", "bob").delivered_seq(), 0) << "sending moves no mark";

  e2.Reached("bob", 1, 2);
  auto one_receipt = [](const Seen& s) { return !s.receipts.empty(); };
  ASSERT_TRUE(e1.WaitUntil(one_receipt, "alice's receipt"));
  ASSERT_TRUE(e2.WaitUntil(one_receipt, "bob's receipt"));
  EXPECT_THAT(e1.Get().ReceiptList(), ElementsAre("bob:delivered=2@a1"));
  EXPECT_THAT(e2.Get().ReceiptList(), ElementsAre("bob:delivered=2@b1"));
  EXPECT_EQ(e1.Get().receipts[0].conversation(), store::ConversationId("alice", "bob"));
  EXPECT_EQ(e1.Get().receipts[0].ts_ms(), kNow);
  EXPECT_EQ(Conversation("alice", "bob").delivered_seq(), 2);
  EXPECT_EQ(e2.Attach("b2", "bob").reached_useq(), 2);

  // Reported out of order (the later range first): one receipt once the
  // hole is filled.
  e1.SendOne(3, Req("alice", "bob", "three", "a1"));
  e1.SendOne(4, Req("alice", "bob", "four", "a1"));
  e2.Reached("bob", 4, 4);
  e2.Reached("bob", 3, 3);
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.receipts.size() >= 2; }, "receipt 4"));
  EXPECT_THAT(e1.Get().ReceiptList(), ElementsAre("bob:delivered=2@a1", "bob:delivered=4@a1"));
  EXPECT_EQ(Conversation("alice", "bob").delivered_seq(), 4);
  EXPECT_EQ(e2.Attach("b3", "bob").reached_useq(), 4);
}

TEST_F(MessageServiceTest, MarkReadSendsReadReceiptsToBothUsers) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("a1", "alice");
  e2.Attach("b1", "bob");
  for (uint64_t i = 1; i <= 3; ++i) e1.SendOne(i, Req("alice", "bob", "m", "a1"));

  // bob's edge asks on his behalf; reading counts as reached.
  v1::EdgeQuery read;
  read.set_seq(5);
  read.mutable_read()->set_user("bob");
  read.mutable_read()->set_with("alice");
  read.mutable_read()->set_seq(2);
  v1::EdgeQueryResult answer = e2.Query(read);
  EXPECT_EQ(answer.code(), 0) << answer.error();
  EXPECT_EQ(answer.read().read_seq(), 2);
  EXPECT_EQ(answer.read().conversation(), store::ConversationId("alice", "bob"));
  auto two = [](const Seen& s) { return s.receipts.size() >= 2; };
  ASSERT_TRUE(e1.WaitUntil(two, "alice's receipts"));
  ASSERT_TRUE(e2.WaitUntil(two, "bob's receipts"));
  EXPECT_THAT(e1.Get().ReceiptList(), UnorderedElementsAre("bob:read=2@a1", "bob:delivered=2@a1"));
  EXPECT_THAT(e2.Get().ReceiptList(), UnorderedElementsAre("bob:read=2@b1", "bob:delivered=2@b1"))
      << "the reader's own connections get it too";

  // The public RPC: beyond the last seq is the last; lower changes nothing.
  v1::MarkReadRequest request;
  request.set_user("bob");
  request.set_with("alice");
  request.set_seq(100);
  v1::MarkReadResponse response;
  grpc::Status status = stub_->MarkRead(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.read_seq(), 3);
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.receipts.size() >= 4; }, "read 3"));
  EXPECT_THAT(e1.Get().ReceiptList(),
              ::testing::IsSupersetOf({"bob:read=3@a1", "bob:delivered=3@a1"}));
  request.set_seq(1);
  status = stub_->MarkRead(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.read_seq(), 3) << "marks only move forward";

  v1::ConversationItem mine = Conversation("bob", "alice");
  EXPECT_EQ(mine.read_seq(), 3);
  EXPECT_EQ(mine.unread(), 0);
  EXPECT_EQ(Conversation("alice", "bob").peer_read_seq(), 3);
  // A marker through the same path proves no receipt followed the lower mark.
  e1.SendOne(9, Req("alice", "bob", "four", "a1"));
  e2.Reached("bob", 1, 4);  // the edge wrote all four to bob's socket
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.receipts.size() >= 5; }, "delivered 4"));
  EXPECT_EQ(e1.Get().receipts.size(), 5u);
  EXPECT_EQ(Describe(e1.Get().receipts.back()), "bob:delivered=4@a1");
}

// A read mark counts as reached (protocol 6.1): messages read without ever
// being written to a socket (read after `history`, or through the unary
// MarkRead) leave no hole in the user's reached prefix, so later messages
// that reach the user move the delivered mark.
TEST_F(MessageServiceTest, ReadMessagesCountAsReachedForLaterDeliveredMarks) {
  for (int i = 1; i <= 3; ++i) UnarySend(Req("alice", "bob", absl::StrCat("m", i)));
  v1::MarkReadRequest read;
  read.set_user("bob");
  read.set_with("alice");
  read.set_seq(3);
  v1::MarkReadResponse response;
  ASSERT_TRUE(stub_->MarkRead(Ctx().get(), read, &response).ok());
  ASSERT_EQ(Conversation("alice", "bob").delivered_seq(), 3) << "reading counts as reached";

  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("a1", "alice");
  e2.Attach("b1", "bob");
  e1.SendOne(1, Req("alice", "bob", "m4", "a1"));
  e2.Reached("bob", 4, 4);  // written live to bob's socket
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return !s.receipts.empty(); }, "delivered 4"));
  EXPECT_THAT(e1.Get().ReceiptList(), ElementsAre("bob:delivered=4@a1"));
  EXPECT_EQ(Conversation("alice", "bob").delivered_seq(), 4);
}

TEST_F(MessageServiceTest, ALinkThatEndsDetachesItsConnections) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  {
    Link e2(gateway_.get());
    ASSERT_TRUE(e2.Hello("e2"));
    e2.Attach("b1", "bob");
    e2.Attach("b2", "bob");
    EXPECT_EQ(e1.SendOne(1, Req("alice", "bob", "while linked", "a1")).delivered(), 2);
    e2.Close();
    std::optional<grpc::Status> status = e2.WaitDone();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(status->ok()) << "a clean close ends the stream OK: " << Show(*status);
  }
  ASSERT_TRUE(WaitForConnections(1));
  v1::EdgeSendResult after = e1.SendOne(2, Req("alice", "bob", "after the link", "a1"));
  EXPECT_EQ(CodeName(after.code()), "OK");
  EXPECT_EQ(after.delivered(), 0) << "bob's connections went with their link";

  {  // A link that breaks.
    Link e3(gateway_.get());
    ASSERT_TRUE(e3.Hello("e3"));
    e3.Attach("c1", "carol");
    ASSERT_TRUE(WaitForConnections(2));
    e3.Cancel();
    ASSERT_TRUE(e3.WaitDone().has_value());
  }
  ASSERT_TRUE(WaitForConnections(1));
  EXPECT_EQ(e1.SendOne(3, Req("alice", "carol", "gone", "a1")).delivered(), 0);

  // A connection that closes is detached by name.
  Link e4(gateway_.get());
  ASSERT_TRUE(e4.Hello("e4"));
  e4.Attach("d1", "dave");
  e4.Attach("d2", "dave");
  e4.Detach("d1");
  ASSERT_TRUE(WaitForConnections(2));  // a1 and d2
  EXPECT_EQ(e1.SendOne(4, Req("alice", "dave", "hi", "a1")).delivered(), 1);
  ASSERT_TRUE(e4.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "dave's"));
  EXPECT_THAT(Ids(e4.Get().deliveries[0].connection_ids()), ElementsAre("d2"));
}

// The links' calls end while the store worker keeps handling their events;
// then the worker shuts its completion queue down and drains it. Nothing
// hangs, whatever is in flight.
TEST_F(MessageServiceTest, AServerShutdownEndsOpenLinksAndTheWorkerStops) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  Link e2(gateway_.get());
  ASSERT_TRUE(e2.Hello("e2"));
  e2.Attach("b1", "bob");
  for (uint64_t seq = 1; seq <= 200; ++seq) e1.Send({{seq, Req("alice", "bob", "m", "a1")}});
  const absl::Time start = absl::Now();
  server_->Shutdown();
  EXPECT_TRUE(e1.WaitDone().has_value());
  EXPECT_TRUE(e2.WaitDone().has_value());
  worker_.reset();
  server_.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(MessageServiceTest, AnUnknownRecipientIsAskedOfConnectionService) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");

  v1::EdgeSendResult refused = e1.SendOne(1, Req("alice", "ghost", "boo", "a1"));
  EXPECT_EQ(CodeName(refused.code()), "NOT_FOUND") << refused.error();
  EXPECT_NE(refused.error(), "");
  EXPECT_THAT(lookup_.asked(), ElementsAre("ghost"));
  EXPECT_EQ(Sync("alice").messages_size(), 0) << "nothing stored";

  // dave exists (he registered) but the store never saw him.
  v1::EdgeSendResult stored = e1.SendOne(2, Req("alice", "dave", "hi dave", "a1"));
  EXPECT_EQ(CodeName(stored.code()), "OK") << stored.error();
  EXPECT_EQ(stored.delivered(), 0);
  EXPECT_EQ(stored.useq(), 1);
  EXPECT_THAT(lookup_.asked(), ElementsAre("ghost", "dave"));
  EXPECT_EQ(CodeName(e1.SendOne(3, Req("alice", "dave", "again", "a1")).code()), "OK");
  EXPECT_THAT(lookup_.asked(), ElementsAre("ghost", "dave")) << "the store knows dave now";
  EXPECT_EQ(Sync("dave").messages_size(), 2);

  // The lookup cannot answer: temporary, nothing stored.
  lookup_.SetUnavailable(true);
  v1::EdgeSendResult unknown = e1.SendOne(4, Req("alice", "carol", "hi", "a1"));
  EXPECT_EQ(CodeName(unknown.code()), "UNAVAILABLE");
  lookup_.SetUnavailable(false);
  EXPECT_EQ(e1.SendOne(5, Req("alice", "carol", "hi", "a1")).useq(), 3)
      << "alice's stream: the two to dave, then this one";
}

// Sends to a recipient the store has never seen wait for one lookup of
// connection-service, and later sends to them wait behind it: one sender's
// messages to a new user are stored in the order they were sent, whatever
// order lookup answers come back in.
TEST_F(MessageServiceTest, SendsToANewRecipientKeepTheSendersOrder) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  lookup_.Defer();
  e1.Send({{1, Req("alice", "dave", "first", "a1")}});
  ASSERT_TRUE(lookup_.WaitForDeferred(1));
  e1.Send({{2, Req("alice", "dave", "second", "a1")}});
  // Answered in order on the same link: once it is, "second" reached the
  // worker and waits behind the lookup.
  EXPECT_EQ(CodeName(e1.SendOne(3, Req("alice", "alice", "marker", "a1")).code()), "OK");
  EXPECT_THAT(lookup_.asked(), ElementsAre("dave")) << "one lookup per new recipient";
  lookup_.ReleaseInReverse();
  EXPECT_EQ(e1.Result(1).conversation_seq(), 1);
  EXPECT_EQ(e1.Result(2).conversation_seq(), 2);
  std::vector<std::string> stored;
  const v1::SyncResponse synced_dave = Sync("dave");
  for (const auto& m : synced_dave.messages()) stored.push_back(m.message());
  EXPECT_THAT(stored, ElementsAre("first", "second"));
}

TEST_F(MessageServiceTest, AStoreFailureIsUnavailableAndTheServiceRecovers) {
  Link e1(gateway_.get());
  Link e2(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  ASSERT_TRUE(e2.Hello("e2"));
  e1.Attach("a1", "alice");
  e2.Attach("b1", "bob");
  EXPECT_EQ(e1.SendOne(1, Req("alice", "bob", "before", "a1")).useq(), 1);

  store_->Break();
  v1::EdgeSendResult failed = e1.SendOne(2, Req("alice", "bob", "lost", "a1"));
  EXPECT_EQ(CodeName(failed.code()), "UNAVAILABLE") << "the commit failed";
  EXPECT_NE(failed.error(), "");
  v1::EdgeSendResult unchecked = e1.SendOne(3, Req("alice", "dave", "lost", "a1"));
  EXPECT_EQ(CodeName(unchecked.code()), "UNAVAILABLE") << "whether dave is known could not be read";
  grpc::Status status;
  UnarySend(Req("system", "bob", "lost"), &status);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << Show(status);
  Sync("bob", 0, &status);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << Show(status);
  v1::EdgeQuery sync;
  sync.set_seq(1);
  sync.mutable_sync()->set_user("bob");
  EXPECT_EQ(e1.Query(sync).code(), static_cast<int>(grpc::UNAVAILABLE));
  v1::Attached attach = e2.Attach("c1", "carol");
  EXPECT_NE(attach.error(), "") << "the edge retries the attach";

  store_->Repair();
  v1::EdgeSendResult after = e1.SendOne(4, Req("alice", "bob", "after", "a1"));
  EXPECT_EQ(CodeName(after.code()), "OK") << after.error();
  EXPECT_EQ(after.useq(), 2) << "the failed sends kept nothing";
  EXPECT_EQ(after.conversation_seq(), 2);
  EXPECT_EQ(after.delivered(), 1);
  ASSERT_TRUE(e2.WaitUntil([](const Seen& s) { return s.deliveries.size() >= 2; }, "after"));
  EXPECT_THAT(e2.Get().Messages(), ElementsAre("before", "after"));
  std::vector<std::string> stored;
  const v1::SyncResponse synced_bob = Sync("bob");
  for (const auto& m : synced_bob.messages()) stored.push_back(m.message());
  EXPECT_THAT(stored, ElementsAre("before", "after"));
}

TEST_F(MessageServiceTest, PublicReadsAnswerFromTheStore) {
  for (int i = 1; i <= 3; ++i) UnarySend(Req("alice", "bob", absl::StrCat("m", i)));
  UnarySend(Req("system", "carol", "welcome"));  // carol exists, bob never wrote to her

  v1::SyncResponse all = Sync("bob");
  ASSERT_EQ(all.messages_size(), 3);
  EXPECT_EQ(all.messages(2).useq(), 3);
  EXPECT_EQ(all.useq(), 3);
  EXPECT_FALSE(all.more());
  EXPECT_FALSE(all.reset());
  v1::SyncRequest page;
  page.set_user("bob");
  page.set_since(1);
  page.set_limit(1);
  v1::SyncResponse one;
  ASSERT_TRUE(stub_->Sync(Ctx().get(), page, &one).ok());
  ASSERT_EQ(one.messages_size(), 1);
  EXPECT_EQ(one.messages(0).useq(), 2);
  EXPECT_TRUE(one.more());
  page.set_epoch("another epoch");
  ASSERT_TRUE(stub_->Sync(Ctx().get(), page, &one).ok());
  EXPECT_TRUE(one.reset()) << "a different epoch starts from 0";
  EXPECT_EQ(one.messages(0).useq(), 1);
  EXPECT_TRUE(Sync("bob", 99).reset()) << "since beyond the last useq";

  v1::HistoryRequest history;
  history.set_user("bob");
  history.set_with("alice");
  v1::HistoryResponse h;
  ASSERT_TRUE(stub_->History(Ctx().get(), history, &h).ok());
  EXPECT_EQ(h.with(), "alice");
  EXPECT_EQ(h.conversation(), store::ConversationId("alice", "bob"));
  ASSERT_EQ(h.messages_size(), 3);
  EXPECT_EQ(h.messages(0).seq(), 1);
  EXPECT_EQ(h.messages(2).message(), "m3");
  EXPECT_FALSE(h.more());
  history.set_before(3);
  history.set_limit(1);
  ASSERT_TRUE(stub_->History(Ctx().get(), history, &h).ok());
  ASSERT_EQ(h.messages_size(), 1);
  EXPECT_EQ(h.messages(0).seq(), 2);
  EXPECT_TRUE(h.more());
  history.set_with("carol");
  history.clear_before();
  ASSERT_TRUE(stub_->History(Ctx().get(), history, &h).ok());
  EXPECT_EQ(h.messages_size(), 0) << "a user bob never wrote to: an empty list";

  v1::ConversationItem item = Conversation("bob", "alice");
  EXPECT_EQ(item.unread(), 3);
  EXPECT_EQ(item.last().message(), "m3");
  EXPECT_EQ(item.last().useq(), 3);

  v1::MarkReadRequest read;
  read.set_user("bob");
  read.set_with("alice");
  read.set_seq(2);
  v1::MarkReadResponse r;
  ASSERT_TRUE(stub_->MarkRead(Ctx().get(), read, &r).ok());
  EXPECT_EQ(r.read_seq(), 2);
  EXPECT_EQ(Conversation("bob", "alice").unread(), 1);
}

TEST_F(MessageServiceTest, PublicReadsRefuseBadInputAndUnknownPeers) {
  UnarySend(Req("alice", "bob", "hi"));
  auto code = [](const grpc::Status& s) { return s.error_code(); };
  v1::SyncResponse sync_response;
  v1::HistoryResponse history_response;
  v1::ConversationsResponse conversations_response;
  v1::MarkReadResponse read_response;

  v1::SyncRequest sync;
  EXPECT_EQ(code(stub_->Sync(Ctx().get(), sync, &sync_response)), grpc::INVALID_ARGUMENT)
      << "no user";
  sync.set_user("bob");
  sync.set_since(-1);
  EXPECT_EQ(code(stub_->Sync(Ctx().get(), sync, &sync_response)), grpc::INVALID_ARGUMENT);
  sync.set_since(0);
  sync.set_limit(-1);
  EXPECT_EQ(code(stub_->Sync(Ctx().get(), sync, &sync_response)), grpc::INVALID_ARGUMENT);

  v1::HistoryRequest history;
  history.set_user("bob");
  EXPECT_EQ(code(stub_->History(Ctx().get(), history, &history_response)), grpc::INVALID_ARGUMENT)
      << "no with";
  history.set_with("alice");
  history.set_before(-1);
  EXPECT_EQ(code(stub_->History(Ctx().get(), history, &history_response)), grpc::INVALID_ARGUMENT);
  history.set_before(0);
  history.set_limit(-5);
  EXPECT_EQ(code(stub_->History(Ctx().get(), history, &history_response)), grpc::INVALID_ARGUMENT);
  history.set_limit(0);
  history.set_with("ghost");
  EXPECT_EQ(code(stub_->History(Ctx().get(), history, &history_response)), grpc::NOT_FOUND);

  v1::ConversationsRequest conversations;
  EXPECT_EQ(code(stub_->Conversations(Ctx().get(), conversations, &conversations_response)),
            grpc::INVALID_ARGUMENT);
  conversations.set_user("bob");
  conversations.set_limit(-1);
  EXPECT_EQ(code(stub_->Conversations(Ctx().get(), conversations, &conversations_response)),
            grpc::INVALID_ARGUMENT);

  v1::MarkReadRequest read;
  read.set_user("bob");
  read.set_with("alice");
  read.set_seq(-1);
  EXPECT_EQ(code(stub_->MarkRead(Ctx().get(), read, &read_response)), grpc::INVALID_ARGUMENT);
  read.set_seq(1);
  read.set_with(" alice");
  EXPECT_EQ(code(stub_->MarkRead(Ctx().get(), read, &read_response)), grpc::INVALID_ARGUMENT);
  read.set_with("ghost");
  EXPECT_EQ(code(stub_->MarkRead(Ctx().get(), read, &read_response)), grpc::NOT_FOUND);

  // The same answers through an edge's link, as codes.
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  v1::EdgeQuery query;
  query.set_seq(1);
  query.mutable_history()->set_user("bob");
  query.mutable_history()->set_with("ghost");
  EXPECT_EQ(e1.Query(query).code(), static_cast<int>(grpc::NOT_FOUND));
  query.set_seq(2);
  query.mutable_history()->set_with("alice");
  query.mutable_history()->set_before(-1);
  EXPECT_EQ(e1.Query(query).code(), static_cast<int>(grpc::INVALID_ARGUMENT));

  store_->Break();
  sync.set_limit(0);
  EXPECT_EQ(code(stub_->Sync(Ctx().get(), sync, &sync_response)), grpc::UNAVAILABLE);
  history.set_with("alice");
  EXPECT_EQ(code(stub_->History(Ctx().get(), history, &history_response)), grpc::UNAVAILABLE);
  conversations.set_limit(0);
  EXPECT_EQ(code(stub_->Conversations(Ctx().get(), conversations, &conversations_response)),
            grpc::UNAVAILABLE);
  read.set_with("alice");
  EXPECT_EQ(code(stub_->MarkRead(Ctx().get(), read, &read_response)), grpc::UNAVAILABLE);
  store_->Repair();
  EXPECT_EQ(code(stub_->Sync(Ctx().get(), sync, &sync_response)), grpc::OK);
}

// ---------------------------------------------------------------------------
// The public API of the new contract: server messages, typed payloads,
// several recipients, Batch, DeleteUser, and the error reasons.
// ---------------------------------------------------------------------------

v1::SendRequest Typed(const std::string& from, const std::string& to, const std::string& message,
                      const std::string& type, const std::string& metadata) {
  v1::SendRequest r = Req(from, to, message);
  r.set_type(type);
  r.set_metadata(metadata);
  return r;
}

v1::SendRequest ToMany(const std::string& from, const std::vector<std::string>& recipients,
                       const std::string& message, const std::string& key = "") {
  v1::SendRequest r;
  r.set_sent_by(from);
  for (const auto& to : recipients) r.add_recipients(to);
  r.set_message(message);
  r.set_idempotency_key(key);
  return r;
}

TEST_F(MessageServiceTest, PublicSendsAreTheServersAndCarryTypeAndMetadata) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("b1", "bob");
  e1.Attach("a1", "alice");
  const std::string metadata = R"({"invoice":1042,"lines":[{"sku":"x"}]})";
  v1::SendResponse sent =
      UnarySend(Typed("billing", "bob", "Invoice 1042 is ready", "invoice.ready", metadata));
  EXPECT_EQ(StatusName(sent.status()), "SEND_OK");
  EXPECT_EQ(sent.delivered(), 1);
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return !s.deliveries.empty(); }, "the delivery"));
  v1::Delivery d = e1.Get().deliveries[0];
  EXPECT_TRUE(d.server()) << "a backend's message is the server's";
  EXPECT_EQ(d.type(), "invoice.ready");
  EXPECT_EQ(d.metadata(), metadata);
  EXPECT_EQ(d.sent_by(), "billing") << "any well-formed sender, known or not";

  // An edge's send is never the server's, whatever its request says.
  v1::SendRequest from_alice = Req("alice", "bob", "hi bob", "a1");
  v1::EdgeSendResult mine = e1.SendOne(1, from_alice);
  EXPECT_EQ(CodeName(mine.code()), "OK") << mine.error();
  ASSERT_TRUE(e1.WaitUntil(
      [](const Seen& s) {
        for (const auto& d : s.deliveries) {
          if (d.message() == "hi bob") return true;
        }
        return false;
      },
      "alice's message"));
  for (const auto& d : e1.Get().deliveries) {
    if (d.message() == "hi bob") {
      EXPECT_FALSE(d.server());
      EXPECT_EQ(d.type(), "");
      EXPECT_EQ(d.metadata(), "");
    }
  }

  // Stored with it: Sync, History and Conversations return the same.
  v1::SyncResponse bob = Sync("bob");
  ASSERT_EQ(bob.messages_size(), 2);
  EXPECT_TRUE(bob.messages(0).server());
  EXPECT_EQ(bob.messages(0).type(), "invoice.ready");
  EXPECT_EQ(bob.messages(0).metadata(), metadata);
  EXPECT_FALSE(bob.messages(1).server());
  EXPECT_EQ(bob.messages(1).metadata(), "");
  v1::HistoryRequest history;
  history.set_user("bob");
  history.set_with("billing");
  v1::HistoryResponse h;
  ASSERT_TRUE(stub_->History(Ctx().get(), history, &h).ok());
  ASSERT_EQ(h.messages_size(), 1);
  EXPECT_TRUE(h.messages(0).server());
  EXPECT_EQ(h.messages(0).type(), "invoice.ready");
  EXPECT_TRUE(Conversation("bob", "billing").last().server());
  // And what an edge reads on its link.
  v1::EdgeQuery sync;
  sync.set_seq(3);
  sync.mutable_sync()->set_user("bob");
  v1::EdgeQueryResult on_link = e1.Query(sync);
  ASSERT_EQ(on_link.sync().messages_size(), 2);
  EXPECT_TRUE(on_link.sync().messages(0).server());
  EXPECT_EQ(on_link.sync().messages(0).metadata(), metadata);
}

TEST_F(MessageServiceTest, PublicSendRefusesBadFieldsWithReasons) {
  struct Case {
    std::string what;
    v1::SendRequest request;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"neither send_to nor recipients", Req("system", "", "hi"), "INVALID_RECIPIENTS"},
      {"bad send_to", Req("system", " bob", "hi"), "INVALID_NAME"},
      {"empty sent_by", Req("", "bob", "hi"), "INVALID_NAME"},
      {"long sent_by", Req(std::string(65, 's'), "bob", "hi"), "INVALID_NAME"},
      {"long message", Req("system", "bob", std::string(128 * 1024 + 1, 'x')), "MESSAGE_TOO_LONG"},
      {"long key", Req("system", "bob", "hi", "", std::string(65, 'k')), "INVALID_IDEMPOTENCY_KEY"},
      {"key with U+001F",
       Req("system", "bob", "hi", "",
           "a\x1f"
           "b"),
       "INVALID_IDEMPOTENCY_KEY"},
      {"type with a space", Typed("system", "bob", "hi", "a b", ""), "INVALID_TYPE"},
      {"type of 65 bytes", Typed("system", "bob", "hi", std::string(65, 't'), ""), "INVALID_TYPE"},
      {"metadata not JSON", Typed("system", "bob", "hi", "", "{nope"), "INVALID_METADATA"},
      {"metadata an array", Typed("system", "bob", "hi", "", "[1,2]"), "INVALID_METADATA"},
      {"metadata a string", Typed("system", "bob", "hi", "", "\"x\""), "INVALID_METADATA"},
      {"metadata over 16 KiB",
       Typed("system", "bob", "hi", "", absl::StrCat("{\"a\":\"", std::string(16384, 'x'), "\"}")),
       "INVALID_METADATA"},
      {"send_to and recipients", ToMany("system", {"alice"}, "hi"), "INVALID_RECIPIENTS"},
      {"a repeated recipient", ToMany("system", {"alice", "bob", "alice"}, "hi"),
       "INVALID_RECIPIENTS"},
      {"a bad recipient", ToMany("system", {"alice", ""}, "hi"), "INVALID_NAME"},
  };
  cases[13].request.set_send_to("bob");
  std::vector<std::string> many;
  for (int i = 0; i < 101; ++i) many.push_back(absl::StrCat("u", i));
  cases.push_back({"101 recipients", ToMany("system", many, "hi"), "INVALID_RECIPIENTS"});
  for (const Case& c : cases) {
    grpc::Status status;
    UnarySend(c.request, &status);
    EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << c.what << ": " << Show(status);
    EXPECT_EQ(ReasonOf(status), c.reason) << c.what;
    EXPECT_LE(status.error_message().size(), 256u) << c.what;
  }
  EXPECT_THAT(lookup_.asked(), IsEmpty()) << "refused before any lookup";
  grpc::Status unknown;
  Sync("system", 0, &unknown);
  EXPECT_EQ(unknown.error_code(), grpc::NOT_FOUND) << "nothing stored: " << Show(unknown);

  // The limits themselves are fine.
  v1::SendResponse ok =
      UnarySend(Typed("system", "bob", std::string(128 * 1024, 'x'), std::string(64, 't'),
                      absl::StrCat("{\"a\":\"", std::string(16384 - 8, 'x'), "\"}")));
  EXPECT_EQ(StatusName(ok.status()), "SEND_OK");
  UnarySend(Typed("system", "bob", "hi", "Az09._:/-", "{}"));
}

TEST_F(MessageServiceTest, PublicSendToAnUnknownUserIsUserNotFound) {
  grpc::Status status;
  UnarySend(Req("system", "nobody", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");
  // The edge's link still answers the code (the edge maps it to unknown_user).
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  EXPECT_EQ(CodeName(e1.SendOne(1, Req("alice", "nobody", "hi", "a1")).code()), "NOT_FOUND");
  // Store down: UNAVAILABLE, retryable.
  store_->Break();
  UnarySend(Req("system", "alice", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE);
  store_->Repair();
}

TEST_F(MessageServiceTest, ASendToSeveralRecipientsAnswersEachAndCommitsThemTogether) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  e1.Attach("b1", "bob");
  e1.Attach("b2", "bob");
  // alice and bob are known to the store; dave only to connection-service.
  UnarySend(Req("alice", "bob", "warm-up"));
  const size_t commits_before = store_->commits().size();

  v1::SendRequest request = ToMany("system", {"alice", "bob", "nobody", "dave"}, "Maintenance");
  request.set_type("notice.maintenance");
  request.set_metadata(R"({"window_min":30})");
  request.set_idempotency_key("notice-1");
  v1::SendResponse response = UnarySend(request);
  EXPECT_EQ(StatusName(response.status()), "SEND_OK");
  EXPECT_EQ(response.id(), "") << "the numbers are per recipient";
  ASSERT_EQ(response.results_size(), 4);
  std::vector<std::string> order;
  for (const auto& r : response.results()) order.push_back(r.send_to());
  EXPECT_THAT(order, ElementsAre("alice", "bob", "nobody", "dave")) << "request order";
  const v1::RecipientResult& alice = response.results(0);
  const v1::RecipientResult& bob = response.results(1);
  const v1::RecipientResult& nobody = response.results(2);
  const v1::RecipientResult& dave = response.results(3);
  EXPECT_TRUE(alice.has_status());
  EXPECT_EQ(alice.status().code(), 0);
  EXPECT_EQ(alice.delivered(), 1);
  EXPECT_EQ(bob.status().code(), 0);
  EXPECT_EQ(bob.delivered(), 2);
  EXPECT_EQ(dave.status().code(), 0) << dave.status().message();
  EXPECT_EQ(dave.delivered(), 0) << "offline: stored for later";
  EXPECT_EQ(nobody.status().code(), static_cast<int>(grpc::NOT_FOUND));
  EXPECT_NE(nobody.status().message(), "");
  EXPECT_EQ(ReasonIn(nobody.status()), "USER_NOT_FOUND");
  EXPECT_EQ(nobody.id(), "");
  EXPECT_NE(alice.id(), bob.id());
  EXPECT_EQ(alice.conversation(), store::ConversationId("system", "alice"));
  EXPECT_EQ(bob.conversation(), store::ConversationId("system", "bob"));
  EXPECT_EQ(alice.seq(), 1);
  EXPECT_EQ(bob.useq(), alice.useq() + 1) << "the sender's stream takes them in order";
  EXPECT_FALSE(alice.duplicate());
  // The known recipients went to the store in one commit; dave (looked up
  // first) in another.
  std::vector<size_t> commits = store_->commits();
  commits.erase(commits.begin(), commits.begin() + commits_before);
  EXPECT_THAT(commits, ElementsAre(2, 1));

  auto notices = [](const Seen& s) {
    std::vector<v1::Delivery> out;
    for (const auto& d : s.deliveries) {
      if (d.message() == "Maintenance") out.push_back(d);
    }
    return out;
  };
  ASSERT_TRUE(e1.WaitUntil([&](const Seen& s) { return notices(s).size() >= 2; }, "both"));
  for (const auto& d : notices(e1.Get())) {
    EXPECT_TRUE(d.server());
    EXPECT_EQ(d.type(), "notice.maintenance");
    EXPECT_EQ(d.metadata(), R"({"window_min":30})");
  }

  // The same call again (a retry): nothing new, each recipient's first answer.
  v1::SendResponse again = UnarySend(request);
  ASSERT_EQ(again.results_size(), 4);
  for (int i : {0, 1, 3}) {
    EXPECT_TRUE(again.results(i).duplicate()) << i;
    EXPECT_EQ(again.results(i).id(), response.results(i).id()) << i;
    EXPECT_EQ(again.results(i).delivered(), 0) << i;
  }
  EXPECT_EQ(again.results(2).status().code(), static_cast<int>(grpc::NOT_FOUND));
  EXPECT_EQ(Sync("bob").messages_size(), 2) << "warm-up and one notice";
  // The key is per recipient: a single send with it is another message.
  v1::SendResponse single = UnarySend(Req("system", "alice", "x", "", "notice-1"));
  EXPECT_FALSE(single.duplicate());
}

TEST_F(MessageServiceTest, BatchAnswersEachSendOnItsOwn) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  UnarySend(Req("system", "bob", "warm-up"));
  const size_t commits_before = store_->commits().size();
  v1::BatchRequest batch;
  *batch.add_sends() = Typed("billing", "alice", "Invoice ready", "invoice.ready", "{\"n\":1}");
  *batch.add_sends() = Req("billing", "nobody", "lost");
  *batch.add_sends() = Typed("billing", "alice", "bad", "", "[1]");
  *batch.add_sends() = ToMany("billing", {"alice", "bob"}, "both");
  *batch.add_sends() = Req("billing", "bob", "one more");
  v1::BatchResponse response;
  grpc::Status status = stub_->Batch(Ctx().get(), batch, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  ASSERT_EQ(response.results_size(), 5);
  EXPECT_EQ(response.results(0).status().code(), 0);
  EXPECT_TRUE(response.results(0).has_status());
  EXPECT_EQ(StatusName(response.results(0).response().status()), "SEND_OK");
  EXPECT_EQ(response.results(0).response().delivered(), 1);
  ASSERT_EQ(response.results(0).response().connections_size(), 1);
  EXPECT_EQ(response.results(0).response().connections(0).connection_id(), "a1");
  EXPECT_EQ(response.results(1).status().code(), static_cast<int>(grpc::NOT_FOUND));
  EXPECT_EQ(ReasonIn(response.results(1).status()), "USER_NOT_FOUND");
  EXPECT_FALSE(response.results(1).has_response());
  EXPECT_EQ(response.results(2).status().code(), static_cast<int>(grpc::INVALID_ARGUMENT));
  EXPECT_EQ(ReasonIn(response.results(2).status()), "INVALID_METADATA");
  EXPECT_EQ(response.results(3).status().code(), 0);
  ASSERT_EQ(response.results(3).response().results_size(), 2);
  EXPECT_EQ(response.results(3).response().results(1).status().code(), 0);
  EXPECT_EQ(response.results(4).status().code(), 0);
  EXPECT_EQ(response.results(4).response().seq(), 2) << "billing-bob: 'both', then this";
  std::vector<size_t> commits = store_->commits();
  commits.erase(commits.begin(), commits.begin() + commits_before);
  EXPECT_THAT(commits, ElementsAre(4)) << "every stored send of the batch in one commit";
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.deliveries.size() >= 2; }, "alice's"));
  EXPECT_TRUE(e1.Get().deliveries[0].server());
  EXPECT_EQ(e1.Get().deliveries[0].type(), "invoice.ready");

  // Bounds: none is fine, 100 are, 101 are not.
  v1::BatchRequest empty;
  ASSERT_TRUE(stub_->Batch(Ctx().get(), empty, &response).ok());
  EXPECT_EQ(response.results_size(), 0);
  v1::BatchRequest full;
  for (int i = 0; i < 100; ++i) *full.add_sends() = Req("billing", "bob", absl::StrCat("m", i));
  response.Clear();
  ASSERT_TRUE(stub_->Batch(Ctx().get(), full, &response).ok());
  ASSERT_EQ(response.results_size(), 100);
  EXPECT_EQ(response.results(99).response().seq(), 102);
  *full.add_sends() = Req("billing", "bob", "one too many");
  status = stub_->Batch(Ctx().get(), full, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  EXPECT_EQ(ReasonOf(status), "TOO_MANY_SENDS");
  // Fan-out is bounded too: 11 sends to 100 recipients each are 1,100 messages.
  v1::BatchRequest wide;
  for (int i = 0; i < 11; ++i) {
    v1::SendRequest* send = wide.add_sends();
    send->set_sent_by("billing");
    send->set_message("notice");
    for (int r = 0; r < 100; ++r) send->add_recipients(absl::StrCat("u", r));
  }
  status = stub_->Batch(Ctx().get(), wide, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  EXPECT_EQ(ReasonOf(status), "TOO_MANY_SENDS");
  // The store down: every item UNAVAILABLE, the call itself OK.
  store_->Break();
  v1::BatchRequest two;
  *two.add_sends() = Req("billing", "bob", "x");
  *two.add_sends() = Req("billing", "alice", "y");
  ASSERT_TRUE(stub_->Batch(Ctx().get(), two, &response).ok());
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.results(0).status().code(), static_cast<int>(grpc::UNAVAILABLE));
  EXPECT_EQ(response.results(1).status().code(), static_cast<int>(grpc::UNAVAILABLE));
  store_->Repair();
}

TEST_F(MessageServiceTest, DeleteUserErasesMessagesAndForgetsTheUserEverywhere) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  e1.Attach("c1", "carol");
  e1.SendOne(1, Req("alice", "carol", "hi carol", "a1"));
  e1.SendOne(2, Req("carol", "alice", "hi alice", "c1"));
  e1.SendOne(3, Req("alice", "bob", "hi bob", "a1"));
  e1.Reached("carol", 1, 2);
  ASSERT_TRUE(e1.WaitUntil([](const Seen& s) { return s.receipts.size() >= 1; }, "a receipt"));
  lookup_.SetDisconnects(1);

  v1::DeleteUserRequest request;
  request.set_name("carol");
  v1::DeleteUserResponse response;
  grpc::Status status = stub_->DeleteUser(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.messages_deleted(), 2);
  EXPECT_EQ(response.disconnected(), 1);
  EXPECT_THAT(lookup_.forgotten(), ElementsAre("carol 4003 account deleted"));

  // Gone from the store: alice keeps only what did not involve carol.
  std::vector<std::string> left;
  const v1::SyncResponse alice = Sync("alice");
  for (const auto& m : alice.messages()) left.push_back(m.message());
  EXPECT_THAT(left, ElementsAre("hi bob"));
  Sync("carol", 0, &status);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");

  // carol's connection is still attached (its edge has not closed it yet):
  // nothing new reaches it, since nobody knows the name any more (the
  // store's cache of known users forgot it too).
  const size_t delivered_before = e1.Get().deliveries.size();
  v1::EdgeSendResult refused = e1.SendOne(4, Req("alice", "carol", "still there?", "a1"));
  EXPECT_EQ(CodeName(refused.code()), "NOT_FOUND");
  UnarySend(Req("system", "carol", "x"), &status);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND);
  // A late reached report from the old socket does not mark the new stream.
  e1.Reached("carol", 1, 2);
  e1.Detach("c1");
  ASSERT_TRUE(WaitForConnections(1));
  EXPECT_EQ(e1.Get().deliveries.size(), delivered_before);

  // Again: nobody knows carol now.
  status = stub_->DeleteUser(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");

  // The name can be used again and starts afresh.
  lookup_.Add("carol");
  v1::Attached fresh = e1.Attach("c2", "carol");
  EXPECT_EQ(fresh.error(), "");
  EXPECT_EQ(fresh.last_useq(), 0);
  EXPECT_EQ(fresh.reached_useq(), 0) << "the old stream's marks are gone";
  v1::EdgeSendResult anew = e1.SendOne(5, Req("alice", "carol", "welcome back", "a1"));
  EXPECT_EQ(CodeName(anew.code()), "OK") << anew.error();
  EXPECT_EQ(anew.conversation_seq(), 1);
  EXPECT_EQ(anew.delivered(), 1);
}

// The erased messages leave holes in their peers' streams; one that never
// reached the peer must not hold the peer's reached mark (and delivered
// receipts) back for good.
TEST_F(MessageServiceTest, ErasedMessagesLeaveNoHoleInThePeersReachedMark) {
  UnarySend(Req("carol", "alice", "from carol"));  // alice's useq 1, never reached her
  UnarySend(Req("bob", "alice", "from bob"));      // alice's useq 2
  v1::DeleteUserRequest request;
  request.set_name("carol");
  v1::DeleteUserResponse response;
  grpc::Status status = stub_->DeleteUser(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.messages_deleted(), 1);

  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("b1", "bob");
  v1::Attached alice = e1.Attach("a1", "alice");
  EXPECT_EQ(alice.last_useq(), 2);
  EXPECT_EQ(alice.reached_useq(), 1) << "the erased useq 1 counts as reached";
  e1.Reached("alice", 2, 2);  // bob's message written to alice's socket
  ASSERT_TRUE(e1.WaitUntil(
      [](const Seen& s) {
        for (const auto& r : s.receipts) {
          if (Describe(r) == "alice:delivered=1@b1") return true;
        }
        return false;
      },
      "bob's delivered receipt"));
  EXPECT_EQ(Conversation("bob", "alice").delivered_seq(), 1);
}

TEST_F(MessageServiceTest, DeleteUserOfAUserOnlyConnectionServiceKnew) {
  // dave registered but never sent nor received anything.
  v1::DeleteUserRequest request;
  request.set_name("dave");
  v1::DeleteUserResponse response;
  grpc::Status status = stub_->DeleteUser(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.messages_deleted(), 0);
  UnarySend(Req("system", "dave", "hi"), &status);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << "dave is gone";
}

TEST_F(MessageServiceTest, DeleteUserErrors) {
  v1::DeleteUserResponse response;
  v1::DeleteUserRequest request;
  grpc::Status status = stub_->DeleteUser(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  EXPECT_EQ(ReasonOf(status), "INVALID_NAME");
  request.set_name(std::string(65, 'x'));
  EXPECT_EQ(stub_->DeleteUser(Ctx().get(), request, &response).error_code(),
            grpc::INVALID_ARGUMENT);
  request.set_name("ghost");
  status = stub_->DeleteUser(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");

  UnarySend(Req("alice", "bob", "hi"));
  request.set_name("bob");
  lookup_.SetUnavailable(true);
  status = stub_->DeleteUser(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << Show(status);
  lookup_.SetUnavailable(false);
  EXPECT_EQ(Sync("bob").messages_size(), 1) << "nothing erased when connection-service failed";

  store_->Break();
  status = stub_->DeleteUser(Ctx().get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << Show(status);
  store_->Repair();
  // Retried: connection-service forgot bob already, the store erases now.
  status = stub_->DeleteUser(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.messages_deleted(), 1);
}

TEST_F(MessageServiceTest, PublicReadsGiveReasonsAndRefuseLimitsOver500AndUnknownUsers) {
  UnarySend(Req("alice", "bob", "hi"));
  v1::SyncResponse sync_response;
  v1::HistoryResponse history_response;
  v1::ConversationsResponse conversations_response;
  v1::MarkReadResponse read_response;

  v1::SyncRequest sync;
  sync.set_user("bob");
  sync.set_limit(500);
  EXPECT_TRUE(stub_->Sync(Ctx().get(), sync, &sync_response).ok());
  sync.set_limit(501);
  grpc::Status status = stub_->Sync(Ctx().get(), sync, &sync_response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << Show(status);
  EXPECT_EQ(ReasonOf(status), "INVALID_LIMIT");
  sync.set_limit(-1);
  EXPECT_EQ(ReasonOf(stub_->Sync(Ctx().get(), sync, &sync_response)), "INVALID_LIMIT");
  sync.set_limit(0);
  sync.set_since(-1);
  EXPECT_EQ(ReasonOf(stub_->Sync(Ctx().get(), sync, &sync_response)), "INVALID_POSITION");
  sync.set_since(0);
  sync.set_user("");
  EXPECT_EQ(ReasonOf(stub_->Sync(Ctx().get(), sync, &sync_response)), "INVALID_NAME");
  sync.set_user("ghost");
  status = stub_->Sync(Ctx().get(), sync, &sync_response);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");

  v1::HistoryRequest history;
  history.set_user("bob");
  history.set_with("alice");
  history.set_limit(501);
  EXPECT_EQ(ReasonOf(stub_->History(Ctx().get(), history, &history_response)), "INVALID_LIMIT");
  history.set_limit(500);
  EXPECT_TRUE(stub_->History(Ctx().get(), history, &history_response).ok());
  history.set_user("ghost");
  status = stub_->History(Ctx().get(), history, &history_response);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");
  history.set_user("bob");
  history.set_with("ghost");
  EXPECT_EQ(ReasonOf(stub_->History(Ctx().get(), history, &history_response)), "USER_NOT_FOUND");
  history.set_with("alice");
  history.set_before(-1);
  EXPECT_EQ(ReasonOf(stub_->History(Ctx().get(), history, &history_response)), "INVALID_POSITION");

  v1::ConversationsRequest conversations;
  conversations.set_user("bob");
  conversations.set_limit(501);
  EXPECT_EQ(ReasonOf(stub_->Conversations(Ctx().get(), conversations, &conversations_response)),
            "INVALID_LIMIT");
  conversations.set_limit(0);
  conversations.set_after(std::string(300, '9'));
  EXPECT_EQ(ReasonOf(stub_->Conversations(Ctx().get(), conversations, &conversations_response)),
            "INVALID_CURSOR");
  conversations.clear_after();
  conversations.set_user("ghost");
  status = stub_->Conversations(Ctx().get(), conversations, &conversations_response);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);

  v1::MarkReadRequest read;
  read.set_user("ghost");
  read.set_with("alice");
  status = stub_->MarkRead(Ctx().get(), read, &read_response);
  EXPECT_EQ(status.error_code(), grpc::NOT_FOUND) << Show(status);
  EXPECT_EQ(ReasonOf(status), "USER_NOT_FOUND");
  read.set_user("bob");
  read.set_seq(-2);
  EXPECT_EQ(ReasonOf(stub_->MarkRead(Ctx().get(), read, &read_response)), "INVALID_POSITION");
  read.set_seq(0);
  read.set_with("");
  EXPECT_EQ(ReasonOf(stub_->MarkRead(Ctx().get(), read, &read_response)), "INVALID_NAME");
}

TEST_F(MessageServiceTest, AnEdgeSendWithRecipientsIsRefused) {
  Link e1(gateway_.get());
  ASSERT_TRUE(e1.Hello("e1"));
  e1.Attach("a1", "alice");
  v1::SendRequest r = Req("alice", "bob", "hi", "a1");
  r.add_recipients("carol");
  v1::EdgeSendResult result = e1.SendOne(1, r);
  EXPECT_EQ(CodeName(result.code()), "INVALID_ARGUMENT");
  EXPECT_NE(result.error(), "");
}

// Both credentials set: the public RPCs take the API token only, the
// EdgeLink the internal one only.
class CredentialsTest : public MessageServiceTest {
 protected:
  MessageServiceOptions Options() override {
    MessageServiceOptions options;
    options.auth = ServiceAuth("internal-token", "api-token");
    return options;
  }
  static std::unique_ptr<grpc::ClientContext> With(const std::string& token) {
    auto ctx = Ctx();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }
};

TEST_F(CredentialsTest, EveryPublicRpcWantsTheApiToken) {
  for (const std::string token : {"", "internal-token", "wrong"}) {
    std::vector<std::pair<std::string, grpc::Status>> calls;
    v1::SendResponse send;
    calls.emplace_back("Send", stub_->Send(With(token).get(), Req("system", "alice", "x"), &send));
    v1::BatchRequest batch_request;
    *batch_request.add_sends() = Req("system", "alice", "x");
    v1::BatchResponse batch;
    calls.emplace_back("Batch", stub_->Batch(With(token).get(), batch_request, &batch));
    v1::DeleteUserRequest delete_request;
    delete_request.set_name("alice");
    v1::DeleteUserResponse deleted;
    calls.emplace_back("DeleteUser",
                       stub_->DeleteUser(With(token).get(), delete_request, &deleted));
    v1::SyncRequest sync_request;
    sync_request.set_user("alice");
    v1::SyncResponse sync;
    calls.emplace_back("Sync", stub_->Sync(With(token).get(), sync_request, &sync));
    v1::HistoryRequest history_request;
    history_request.set_user("alice");
    history_request.set_with("bob");
    v1::HistoryResponse history;
    calls.emplace_back("History", stub_->History(With(token).get(), history_request, &history));
    v1::ConversationsRequest conversations_request;
    conversations_request.set_user("alice");
    v1::ConversationsResponse conversations;
    calls.emplace_back(
        "Conversations",
        stub_->Conversations(With(token).get(), conversations_request, &conversations));
    v1::MarkReadRequest read_request;
    read_request.set_user("alice");
    read_request.set_with("bob");
    v1::MarkReadResponse read;
    calls.emplace_back("MarkRead", stub_->MarkRead(With(token).get(), read_request, &read));
    for (const auto& [name, status] : calls) {
      EXPECT_EQ(status.error_code(), grpc::UNAUTHENTICATED)
          << name << " with '" << token << "': " << Show(status);
      EXPECT_EQ(ReasonOf(status), "BAD_CREDENTIAL") << name;
    }
  }
  EXPECT_THAT(lookup_.forgotten(), IsEmpty()) << "a refused DeleteUser does nothing";
  v1::SendResponse send;
  grpc::Status ok = stub_->Send(With("api-token").get(), Req("system", "alice", "x"), &send);
  EXPECT_TRUE(ok.ok()) << Show(ok);
  EXPECT_EQ(send.useq(), 1) << "none of the refused sends was stored";
}

}  // namespace
}  // namespace chat::message

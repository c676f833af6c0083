#ifndef CHAT_MESSAGE_SERVICE_STORE_WORKER_H_
#define CHAT_MESSAGE_SERVICE_STORE_WORKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cq_tag.h"
#include "grpcpp/alarm.h"
#include "grpcpp/completion_queue.h"
#include "message-service/store_metrics.h"
#include "message-service/user_lookup.h"
#include "store/message_store.h"

namespace chat::message {

// The one thread that owns the message store. Everything that reads or
// writes it, and the in-memory state derived from it (Dispatcher), runs here
// in the order it was handed in, so an attach and the commits around it
// never race. Sends are group-committed: each wake-up commits every send
// already there in one transaction; nothing waits to fill a batch.
//
// The thread waits on a gRPC completion queue: the server's queue of the
// EdgeLink streams (Start), so their reads and writes complete on this
// thread and an edge's batch is handled where it is read, with no hand-over.
// A wake-up handles every event that is ready, then the work they and other
// threads brought, then the writes that work produced, and only then waits
// again. In message-service every call of the server (unary ones included)
// and every connection-service answer completes on this queue; work handed
// in from another thread (Submit) is queued under a lock and wakes the thread
// with a grpc::Alarm due at once, at most one outstanding.
class StoreWorker {
 public:
  using Task = std::function<void(store::MessageStore*)>;
  // What a tag on the worker's completion queue points to: Done runs on the
  // worker's thread with the event's ok.
  using CqEvent = CqTag;
  struct SendJob {
    store::NewMessage message;
    // On this thread, after the commit (or its failure).
    std::function<void(absl::StatusOr<store::Committed>)> done;
  };

  struct Options {
    size_t max_queue = 100000;  // beyond: Submit fails (the caller answers unavailable)
    int64_t retention_ms = 0;   // 0: keep forever
    absl::Duration prune_interval = absl::Minutes(1);
    int prune_chunk = 1000;  // messages deleted per step between batches
  };

  // `users` answers for recipients the store has never seen (connection-
  // service's durable table); it must outlive the worker, as must `metrics`
  // (null: not counted). Nothing runs before Start.
  StoreWorker(std::unique_ptr<store::MessageStore> store, Options options, UserLookup* users,
              StoreMetrics* metrics = nullptr);
  // Stops after the queued work; sends still waiting for a lookup fail. The
  // server whose queue the thread drives must be shut down first
  // (Server::Shutdown): its calls end only while this thread handles their
  // events. Then the queue is shut down and drained here, and only then may
  // the server be destroyed: its pending requests complete on the queue and
  // refer to it.
  ~StoreWorker();

  // Starts the thread, waiting on `cq`: the server's queue
  // (ServerBuilder::AddCompletionQueue) for the async services whose events
  // are handled on this thread, or null for a queue of its own. Work
  // submitted before waits for it. Once.
  void Start(std::unique_ptr<grpc::CompletionQueue> cq = nullptr);

  // False when the queue is full or the worker stopped.
  bool Submit(Task task);
  bool SubmitSend(SendJob job);
  // Queues as many as fit under one lock; the rest fail at once as
  // unavailable.
  void SubmitSends(std::vector<SendJob> jobs);
  // Ignores the bound: for clean-up whose loss would leak state (a link's
  // routes); at most one per link or connection.
  void SubmitAlways(Task task);
  // Saving reached marks (the Dispatcher's TakeMovedMarks and MarksSaved):
  // each wake-up, `take` gives the marks that moved, and they are saved in
  // the same transaction as the wake-up's last batch of sends (one
  // transaction instead of two per batch; on their own when no send came).
  // `saved` gets the outcome after the sends were answered: the marks'
  // changes, or the failure that the sends got too. Always in pairs.
  struct MarkHooks {
    std::function<std::vector<std::pair<std::string, int64_t>>(store::MessageStore*)> take;
    std::function<void(const absl::StatusOr<std::vector<store::MarkChange>>&)> saved;
  };
  void SetMarkHooks(MarkHooks hooks);

  // Worker thread only (completion-queue handlers): appended to this
  // wake-up's work, behind what was handed in before, with no lock and no
  // bound (a link's next read is handled only by a later event).
  void Post(Task task) { local_.emplace_back(std::move(task)); }
  void PostSends(std::vector<SendJob> jobs);
  // Like Post, for a task that needs no commit of the sends before it, so
  // it does not split the wake-up's transaction: reached reports, which
  // describe messages committed in earlier wake-ups.
  void PostBetweenSends(Task task) { local_.emplace_back(Unordered{std::move(task)}); }
  // Worker thread only: runs once this wake-up's work is committed and
  // answered and marks are flushed (links start their writes there, so one
  // EdgeDown per link carries all a wake-up produced).
  void AfterThisBatch(std::function<void()> fn) { after_this_batch_.push_back(std::move(fn)); }

  // Remembers that the store knows `user` (skips the lookup). Worker thread only.
  void NoteKnownUser(const std::string& user) { known_[user] = absl::Now() + kKnownFor; }
  // The store erased `user`: the next send to them asks the store (and then
  // connection-service) again. Worker thread only.
  void ForgetKnownUser(const std::string& user) { known_.erase(user); }

  const std::string& epoch() const { return epoch_; }
  // For the queries that run on this thread to time themselves (may be null).
  StoreMetrics* metrics() const { return metrics_; }

 private:
  // A lookup's answer for `recipient`.
  struct Resolved {
    std::string recipient;
    absl::Status status;
  };
  struct Unordered {
    Task task;
  };
  using Item = std::variant<SendJob, Task, Resolved, Unordered>;
  // Lets lookup answers that come after the worker is gone find nothing.
  struct Alive {
    explicit Alive(StoreWorker* w) : worker(w) {}
    absl::Mutex mu;
    StoreWorker* worker ABSL_GUARDED_BY(mu);
  };
  // The alarm's tag.
  struct Wake final : CqEvent {
    explicit Wake(StoreWorker* w) : worker(w) {}
    void Done(bool ok) override;
    StoreWorker* const worker;
  };
  void Run();
  // Waits for an event until `deadline` and handles it and every event
  // ready after it (at most kMaxEventsPerWake: true when it stopped there,
  // more may be ready).
  bool WaitAndHandle(absl::Time deadline);
  // Sends, tasks and lookup answers in order; sends before a task are
  // committed before it runs.
  void RunItems(std::vector<Item>* items, std::vector<SendJob>* batch);
  // Wakes the thread if it may be waiting. mu_ held.
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Ask(const std::string& recipient);
  // Commits the sends of `batch` and answers them. With `marks`, also
  // saves the marks that moved, in the same transaction (or in one of
  // their own when the batch is empty).
  void CommitBatch(std::vector<SendJob>* batch, const MarkHooks* marks = nullptr);
  void MaybePrune();
  // Publishes queue_.size() (one atomic store; called with mu_ held so the
  // gauge follows the queue's order of changes).
  void NoteDepth() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteRejected(size_t n);

  const std::unique_ptr<store::MessageStore> store_;
  const Options options_;
  UserLookup* const users_;
  StoreMetrics* const metrics_;
  const std::shared_ptr<Alive> alive_;
  const std::string epoch_;
  MarkHooks mark_hooks_ ABSL_GUARDED_BY(mu_);

  absl::Mutex mu_;
  std::vector<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Set by Start; the thread waits on it.
  std::unique_ptr<grpc::CompletionQueue> cq_ ABSL_GUARDED_BY(mu_);
  // The queue is shut down: no alarm may be set on it any more.
  bool cq_closed_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Alarm alarm_ ABSL_GUARDED_BY(mu_);
  bool alarm_set_ ABSL_GUARDED_BY(mu_) = false;
  Wake wake_{this};
  // A wake-up handles at most this many events before its work runs, so a
  // fast link cannot hold a commit back.
  static constexpr int kMaxEventsPerWake = 1024;

  // Worker thread only.
  grpc::CompletionQueue* thread_cq_ = nullptr;
  std::vector<Item> local_;  // Post: this wake-up's work from the queue's events
  std::vector<std::function<void()>> after_this_batch_;
  // Recipients the store knew, until when: another replica may erase one
  // (DeleteUser) without this one hearing of it, so the store is asked
  // again after kKnownFor, which bounds how long a send through this replica
  // can recreate an erased name's stream.
  static constexpr absl::Duration kKnownFor = absl::Seconds(10);
  bool Known(const std::string& user) const {
    auto it = known_.find(user);
    return it != known_.end() && it->second > absl::Now();
  }
  absl::flat_hash_map<std::string, absl::Time> known_;
  // Sends to a recipient being looked up, in arrival order: later sends to
  // them wait here too, so one sender's messages are stored in order.
  absl::flat_hash_map<std::string, std::vector<SendJob>> awaiting_lookup_;
  absl::Time next_prune_;
  bool prune_more_ = false;
  std::thread thread_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_STORE_WORKER_H_

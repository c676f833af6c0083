#ifndef CHAT_MESSAGE_SERVICE_STORE_WORKER_H_
#define CHAT_MESSAGE_SERVICE_STORE_WORKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "message-service/store_metrics.h"
#include "message-service/user_lookup.h"
#include "store/message_store.h"

namespace chat::message {

// The one thread that owns the message store. Everything that reads or
// writes it, and the in-memory state derived from it (Dispatcher), runs here
// in the order it was submitted, so an attach and the commits around it
// never race. Sends are group-committed: each wake-up commits every send
// already queued in one transaction; nothing waits to fill a batch.
class StoreWorker {
 public:
  using Task = std::function<void(store::MessageStore*)>;
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
  // (null: not counted).
  StoreWorker(std::unique_ptr<store::MessageStore> store, Options options, UserLookup* users,
              StoreMetrics* metrics = nullptr);
  ~StoreWorker();  // stops after the queued work; sends still waiting for a lookup fail

  // False when the queue is full or the worker stopped.
  bool Submit(Task task);
  bool SubmitSend(SendJob job);
  // Queues as many as fit under one lock; the rest fail at once as
  // unavailable.
  void SubmitSends(std::vector<SendJob> jobs);
  // Ignores the bound: for clean-up whose loss would leak state (a link's
  // routes); at most one per link or connection.
  void SubmitAlways(Task task);
  // Runs on this thread after each wake-up's work (flushes mark moves).
  void SetAfterBatch(std::function<void(store::MessageStore*)> fn);
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
  using Item = std::variant<SendJob, Task, Resolved>;
  // Lets lookup answers that come after the worker is gone find nothing.
  struct Alive {
    explicit Alive(StoreWorker* w) : worker(w) {}
    absl::Mutex mu;
    StoreWorker* worker ABSL_GUARDED_BY(mu);
  };
  void Run();
  void Ask(const std::string& recipient);
  void CommitBatch(std::vector<SendJob>* batch);
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
  std::function<void(store::MessageStore*)> after_batch_;

  absl::Mutex mu_;
  std::vector<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Worker thread only.
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

#ifndef CHAT_EDGE_MESSAGE_LINK_H_
#define CHAT_EDGE_MESSAGE_LINK_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/alarm_timer.h"
#include "common/backoff.h"
#include "common/service_auth.h"
#include "edge/backends.h"
#include "edge/edge_metrics.h"
#include "edge/local_hub.h"
#include "grpcpp/channel.h"

namespace chat::edge {

struct LinkOptions {
  size_t max_inflight_sends = 100000;  // per link; beyond it sends fail as unavailable
  int max_sends_per_batch = 4096;      // message-service's limit per EdgeUp
  ServiceAuth auth;                    // credential sent on the stream
  // A link whose oldest unanswered send waits longer than this is wedged
  // (the service is stuck, the network silently dropped the stream): it is
  // torn down, its sends fail as unavailable, and it reconnects.
  absl::Duration answer_timeout = absl::Seconds(10);
  EdgeMetrics* metrics = nullptr;  // set: link up/down and reconnects are counted
  // Set: when a link that was up breaks, the reached reports it sent in the
  // last `reached_replay`, and those still waiting, are handed to it (for
  // another replica: the dead one may have held them in memory only).
  std::function<void(std::vector<chat::v1::Reached>)> on_lost_reached;
  absl::Duration reached_replay = absl::Seconds(2);
  // Reached reports alone wait up to this long for company (a send, an
  // attach or a query, which take them along, or more reports) before they
  // go up on their own: at moderate rates one EdgeUp, one read and one saved
  // batch of marks on the other side for many reports instead of one each.
  // They only move delivered receipts and marks; messages never wait.
  absl::Duration reached_delay = absl::Milliseconds(10);
};

// One EdgeLink stream to one message-service replica, kept open for as long
// as this object lives. Sends queued while a write is in flight go up together
// in the next EdgeUp; deliveries coming down are encoded once per delivery and
// handed to the local hub. When the stream breaks, or answers nothing for
// `answer_timeout` while sends wait, every unanswered send fails as
// unavailable and the link reconnects with backoff.
//
// It has no thread of its own: the stream's events complete on the process's
// GrpcLoop thread, and the reconnect backoff and the watchdog are alarms
// (AlarmTimer) on the same loop. Its destructor must not run on that thread. The
// watchdog is set only while something waits for an answer, for the moment
// that wait would exceed `answer_timeout`.
class MessageLink {
 public:
  MessageLink(std::shared_ptr<grpc::Channel> channel, std::string edge_id, LocalHub* hub,
              LinkOptions options);
  ~MessageLink();

  void Send(OutgoingSend send, std::function<void(const SendResult&)> done);
  // `done` may be empty (another link answers for the connection).
  void Attach(const std::string& connection_id, const std::string& user, int64_t after_useq,
              Done<AttachInfo> done);
  void Detach(const std::string& connection_id);
  void Reached(const std::string& user, int64_t from, int64_t to);
  // One store read; the answer comes back on a gRPC thread.
  void Query(chat::v1::EdgeQuery query, Done<chat::v1::EdgeQueryResult> done);
  bool Up() const { return up_.load(); }

 private:
  class Stream;
  // Starts an attempt at the stream (at construction, then from the
  // reconnect alarm).
  void Connect();
  // Sets the watchdog for when the current wait exceeds answer_timeout,
  // unless it is set already.
  void ArmWatchdogLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWatchdog();
  // Called by the stream reactor.
  void OnStreamUp(Stream* stream);
  void OnWriteDone(Stream* stream);
  // Takes what it hands on out of `down` (the stream reads into it again).
  void OnDown(chat::v1::EdgeDown* down);
  void OnStreamDone(Stream* stream);
  class LinkWrite;
  // Takes the next batch into the stream's out() and hands the stream to
  // `write`, which starts the write once mu_ is released.
  void WriteNextLocked(LinkWrite* write) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether anything sent up waits for its answer (the watchdog's business).
  bool AwaitingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !waiting_.empty() || !attaches_.empty() || !queries_.empty();
  }

  std::unique_ptr<chat::v1::EdgeGateway::Stub> stub_;
  const std::string edge_id_;
  LocalHub* hub_;
  const LinkOptions options_;
  std::atomic<bool> up_{false};

  absl::Mutex mu_;
  std::shared_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);  // the live attempt, if up
  // The latest attempt, until its end was handled (what the watchdog and
  // the destructor cancel).
  Stream* attempt_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Attempts started whose OnStreamDone has not returned: their callbacks
  // may still touch this object.
  int live_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ever_up_ ABSL_GUARDED_BY(mu_) = false;     // a later up is a reconnect
  bool attempt_up_ ABSL_GUARDED_BY(mu_) = false;  // the current attempt came up
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<chat::v1::EdgeSend> pending_ ABSL_GUARDED_BY(mu_);
  // Attaches, detaches, reached marks and queries waiting for the next write.
  chat::v1::EdgeUp pending_other_ ABSL_GUARDED_BY(mu_);
  // Reached reports written in the last options_.reached_replay, oldest
  // first (kept only with options_.on_lost_reached).
  std::deque<std::pair<absl::Time, chat::v1::Reached>> recent_reached_ ABSL_GUARDED_BY(mu_);
  // Per user, the index of their last entry in pending_other_.reached().
  absl::flat_hash_map<std::string, int> pending_reached_ ABSL_GUARDED_BY(mu_);
  bool has_other_ ABSL_GUARDED_BY(mu_) = false;
  // pending_other_ holds attaches, detaches or queries (not only reports).
  bool has_urgent_other_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time reached_since_ ABSL_GUARDED_BY(mu_);  // the oldest waiting report's arrival
  bool reached_flush_armed_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, Done<chat::v1::EdgeQueryResult>> queries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Done<AttachInfo>> attaches_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, std::function<void(const SendResult&)>> waiting_
      ABSL_GUARDED_BY(mu_);
  // Last time the service answered, or something began to wait for it.
  absl::Time last_answer_ ABSL_GUARDED_BY(mu_);
  bool watchdog_armed_ ABSL_GUARDED_BY(mu_) = false;
  Backoff backoff_ ABSL_GUARDED_BY(mu_){std::chrono::milliseconds(100),
                                        std::chrono::milliseconds(2000)};
  AlarmTimer reconnect_;
  AlarmTimer watchdog_;
  AlarmTimer reached_flush_;  // reached_delay
};

// The id message-service's store gives the direct conversation of `a` and
// `b` (store::ConversationId): the unordered pair, so both directions of a
// conversation share it.
std::string ConversationKey(const std::string& a, const std::string& b);

// One link per message-service replica. Everything of one conversation (the
// sends of both its users) goes to one replica, and everything keyed by a
// user (attach answers, reached marks, queries) to one replica, chosen by
// rendezvous (highest random weight) hashing over the replicas whose link is
// up: each edge picks the same replica for the same key, and a replica that
// goes down or comes back only moves its own keys.
//
// Order within a conversation: while sends of a conversation wait for their
// answers on one link, further sends of it from this edge take the same link
// (or fail with it), even if the hashing would now pick another; it moves
// only once none is in flight, so a send is never committed ahead of an
// earlier one of the same pair.
class MessageLinks : public MessageBackend {
 public:
  // `names`: one stable name per channel (its address), the same on every
  // edge, so that every edge hashes a conversation to the same replica;
  // empty: "replica-<index>".
  MessageLinks(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
               const std::string& edge_id, LocalHub* hub, LinkOptions options,
               std::vector<std::string> names = {});
  // The links go first: their ends answer sends, which reach Answered (and
  // no longer report own copies, which would look at the links).
  ~MessageLinks() override {
    closing_ = true;
    links_.clear();
  }

  void Send(OutgoingSend send, std::function<void(const SendResult&)> done) override;
  bool Ready() const override;
  void Attach(const std::string& connection_id, const std::string& user, int64_t after_useq,
              Done<AttachInfo> done) override;
  void Detach(const std::string& connection_id) override;
  void Reached(const std::string& user, int64_t from, int64_t to) override;
  void Sync(const std::string& user, int64_t since, int limit, const std::string& epoch,
            Done<SyncReply> done) override;
  void Unread(const std::string& user, int64_t after, int limit, Done<SyncReply> done) override;
  void History(const std::string& user, const std::string& with, int64_t before, int limit,
               Done<HistoryReply> done) override;
  void Conversations(const std::string& user, int limit, const std::string& after,
                     Done<ConversationsReply> done) override;
  void MarkRead(const std::string& user, const std::string& with, int64_t seq,
                Done<ReadReply> done) override;

  // The index of the link the hashing picks for `key` among those up, or -1
  // when none is up (no stickiness; for tests and logs).
  int Rank(const std::string& key) const;
  // The link a send of this conversation would take now (stickiness
  // included), or -1 when none is up.
  int LinkForConversation(const std::string& a, const std::string& b) const;
  size_t size() const { return links_.size(); }
  bool LinkUp(size_t i) const { return links_[i]->Up(); }

 private:
  // A conversation with sends in flight: the link they wait on.
  struct InFlight {
    size_t link = 0;
    int sends = 0;
  };
  MessageLink* Pick(const std::string& key) const;
  void Query(const std::string& user, chat::v1::EdgeQuery query,
             Done<chat::v1::EdgeQueryResult> done);
  void Answered(const std::string& conversation);

  std::vector<std::unique_ptr<MessageLink>> links_;
  std::vector<uint64_t> seeds_;  // per link, from its name
  std::atomic<bool> closing_{false};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_MESSAGE_LINK_H_

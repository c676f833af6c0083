#ifndef CHAT_MESSAGE_SERVICE_DISPATCHER_H_
#define CHAT_MESSAGE_SERVICE_DISPATCHER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "chat/v1/chat.pb.h"
#include "common/clock.h"
#include "message-service/edge_links.h"
#include "store/message_store.h"

namespace chat::message {

// Where stored messages go once committed, and what has reached whom. Lives
// on the store worker's thread only (no locks): connections attached by the
// edges (the routing table: every connection an edge attached before its
// hello), each user's reached prefix mark, and the receipts that follow
// when marks move.
class Dispatcher {
 public:
  static constexpr int64_t kHoleSweepMs = 1000;

  Dispatcher(const Clock* clock, std::string epoch) : clock_(clock), epoch_(std::move(epoch)) {}

  // Connections live on `link`'s edge. Answers Attached on the link for
  // each, in order, with the user's marks; every message committed from now
  // on reaches them. The store makes their users known and reads their marks
  // in one transaction; if it refuses a name, each attach is tried on its own
  // so only that one fails, and if it is unavailable, each answer says so.
  void Attach(const std::shared_ptr<Outbox>& link, const std::string& edge_id,
              const google::protobuf::RepeatedPtrField<chat::v1::Attach>& attaches,
              store::MessageStore* store);
  void Detach(const Outbox* link, const std::string& connection_id);
  // The link is gone: every connection it attached is detached.
  void DetachLink(const Outbox* link);

  // Hands a committed message to the recipient's connections (and copies to
  // the sender's other connections). Returns the number of recipient
  // connections it was handed to; fills `per_connection` when given.
  int Deliver(const store::Committed& committed, const std::string& from_connection_id,
              int64_t edge_received_us,
              google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection);

  // useq from..to of `user`'s stream reached the user.
  void Reached(const std::string& user, int64_t from, int64_t to);
  // Saving the marks that moved takes two steps around a store transaction,
  // so that the store worker's commit of a batch can carry them:
  // TakeMovedMarks works out whose marks moved since the last save (it may
  // read the store, to fill holes) and returns them for AdvanceReachedMany
  // or CommitAndAdvance; MarksSaved takes that transaction's outcome: on
  // success the marks are persisted and the receipts for the changes go
  // out; on failure the users stay dirty, to be saved next time. Every
  // TakeMovedMarks is followed by one MarksSaved, before anything else of
  // the Dispatcher's is called. Called for each batch of work, and at
  // least once a second (the sweep of marks held back by holes).
  std::vector<std::pair<std::string, int64_t>> TakeMovedMarks(store::MessageStore* store);
  void MarksSaved(const absl::StatusOr<std::vector<store::MarkChange>>& changes);
  // Both, the marks in a transaction of their own.
  void FlushMarks(store::MessageStore* store);
  // `user` read something: messages read count as reached, so their holes in
  // the reached prefix are filled at the next flush.
  void NoteRead(const std::string& user);
  // Receipts for marks that moved, to both users' connections.
  void SendReceipts(const std::vector<store::MarkChange>& changes);

  // The store erased `user` (DeleteUser): their marks are dropped, and reached
  // reports for them are ignored until the name is used again (a new
  // connection attaches, or a message to or from it is committed): reports
  // still on their way from the deleted user's sockets describe the old
  // stream and would mark the new one's first messages as reached. Their
  // connections stay routed until the edges detach them (connection-service
  // closes them); nothing new reaches them, since the store and
  // connection-service no longer know the name.
  void EraseUser(const std::string& user);

  size_t connection_count() const { return connections_.size(); }
  size_t user_count() const { return users_.size(); }

 private:
  struct Conn {
    std::string connection_id;
    std::shared_ptr<Outbox> link;
    std::string edge_id;
  };
  struct UserState {
    std::vector<Conn> conns;
    bool marks_loaded = false;
    int64_t mark = 0;                  // every useq up to here reached the user
    int64_t persisted_mark = 0;        // what the store holds
    std::map<int64_t, int64_t> above;  // reached ranges beyond the mark: from -> to
    // ResolveHole's back-off: a hole that the store cannot explain either
    // (a message to the user not reached yet) is looked at less and less.
    int64_t next_resolve_ms = 0;
    int64_t resolve_backoff_ms = 0;
    int64_t resolved_mark = 0;  // the mark after the last ResolveHole
  };
  UserState* LoadMarks(const std::string& user, store::MessageStore* store);
  // Moves the prefix over what is the user's own or read (what Unread does
  // not return): only reaching can fill the rest.
  void FillReadHoles(const std::string& user, UserState* state, store::MessageStore* store);
  // A hole that outlived a sweep interval: with several replicas it may be
  // the user's own message committed by another replica (reached there, at
  // commit), or this replica's mark may be older than the store's (another
  // replica moved it while the user's reports went there). Takes the store's
  // mark, then fills what is the user's own (in the held range) or read.
  void ResolveHole(const std::string& user, UserState* state, store::MessageStore* store,
                   int64_t now_ms);
  static void Advance(UserState* state);
  void ForgetIfIdle(const std::string& user);
  // One Delivery per link for `conns` (except `skip`); returns how many
  // connections it was handed to.
  int Fan(const std::vector<Conn>& conns, const std::string& skip, const std::string& user,
          const store::Message& message, int64_t useq, int64_t edge_received_us,
          google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection);

  const Clock* clock_;
  const std::string epoch_;
  absl::flat_hash_map<std::string, UserState> users_;
  absl::flat_hash_map<std::string, std::string> connections_;  // connection id -> user
  absl::flat_hash_set<std::string> dirty_;   // users whose mark moved since the last flush
  absl::flat_hash_set<std::string> read_;    // users who read since the last flush
  absl::flat_hash_set<std::string> erased_;  // EraseUser'd, not used again since
  // Users whose mark stopped at a hole at the last flush; looked at again by
  // the next sweep (at most one per kHoleSweepMs).
  absl::flat_hash_set<std::string> holes_;
  int64_t next_sweep_ms_ = 0;
  // Between TakeMovedMarks and MarksSaved: the users looked at and the
  // marks being saved.
  std::vector<std::string> taken_users_;
  std::vector<std::pair<std::string, int64_t>> taken_marks_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_DISPATCHER_H_

#ifndef CHAT_CONNECTION_SERVICE_SHARED_REGISTRY_H_
#define CHAT_CONNECTION_SERVICE_SHARED_REGISTRY_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "connection-service/registry_store.h"

namespace chat::connection {

enum class RemoveReason { kNone, kUnregistered, kLeaseExpired, kKicked };

// A user refused new connections until `until_ms`.
struct Ban {
  std::string user;
  int64_t until_ms;
};

// One change as the shared feed carries it, in the order it happened.
struct FeedEvent {
  enum class Kind { kAdded, kRemoved, kBanned, kForgotten, kEdgeUp, kEdgeDown };
  Kind kind = Kind::kAdded;
  // kAdded/kRemoved: the connection; kBanned/kForgotten: `user` only;
  // kEdgeUp/kEdgeDown: `edge_id` only.
  ConnectionInfo connection;
  RemoveReason reason = RemoveReason::kNone;  // kRemoved
  int close_code = 0;                         // kRemoved, kKicked
  std::string close_reason;                   // kRemoved, kKicked
  int64_t ban_until_ms = 0;                   // kBanned: 0 = lifted
  std::string incarnation;                    // kEdgeUp
};

// The whole shared state at one point of the feed.
struct SharedSnapshot {
  std::string epoch;
  // Presence snapshots still to hold back: the epoch is younger than a
  // lease, so edges may still be re-registering (0: none).
  int64_t warmup_left_ms = 0;
  std::vector<ConnectionInfo> connections;
  std::vector<Ban> bans;                                   // in force
  std::vector<std::pair<std::string, std::string>> edges;  // edge id, incarnation
};

// Where a replica's Registry applies the shared feed (its mirror).
class FeedSink {
 public:
  virtual ~FeedSink() = default;
  virtual void ApplyFeed(const std::vector<FeedEvent>& events) = 0;
  // Replaces the mirror by `snapshot`, telling watchers the differences.
  virtual void ApplySnapshot(const SharedSnapshot& snapshot) = 0;
};

// Where a mutation landed in the feed (`entry` empty: it changed nothing).
struct FeedPosition {
  std::string epoch;
  std::string entry;
};

// What a mutation did, besides its position.
struct SharedWrite {
  FeedPosition position;
  bool lease_known = false;     // Register, Heartbeat
  int count = 0;                // Kick, Forget: disconnected; ExpireLeases: dropped
  int64_t banned_until_ms = 0;  // Kick by user: the ban in force afterwards
};

// The registry's live state shared by every connection-service replica
// (Redis). Every mutation is one atomic step that appends its events to the
// feed; each replica applies the feed, in order, to its own mirror through a
// FeedSink, its own mutations included. Thread-safe.
class SharedRegistry {
 public:
  virtual ~SharedRegistry() = default;

  // Starts applying the feed to `sink` (from a thread of its own) after a
  // snapshot; Stop() ends that before `sink` goes away.
  virtual void Start(FeedSink* sink) = 0;
  virtual void Stop() = 0;

  // Unavailable (reason REGISTRY_UNAVAILABLE) when the shared state cannot be reached.
  virtual absl::StatusOr<SharedWrite> Register(const std::string& edge_id,
                                               const std::string& incarnation,
                                               const std::vector<ConnectionInfo>& connections) = 0;
  virtual absl::StatusOr<SharedWrite> Unregister(const std::string& edge_id,
                                                 const std::string& incarnation,
                                                 const std::vector<std::string>& ids) = 0;
  virtual absl::StatusOr<SharedWrite> Heartbeat(const std::string& edge_id,
                                                const std::string& incarnation) = 0;
  // Exactly one of `user` and `connection_id`; `set_ban` with `user` only.
  virtual absl::StatusOr<SharedWrite> Kick(const std::string& user,
                                           const std::string& connection_id, int code,
                                           const std::string& reason, bool set_ban,
                                           int64_t ban_ms) = 0;
  virtual absl::StatusOr<SharedWrite> Forget(const std::string& user, int code,
                                             const std::string& reason) = 0;
  // Drops the edges silent for `lease_ms` (and the bans that ended).
  virtual absl::StatusOr<SharedWrite> ExpireLeases(int64_t lease_ms) = 0;
  // Waits until this replica's mirror has applied `position`.
  virtual absl::Status AwaitApplied(const FeedPosition& position) = 0;
  // Whether leases may be expired now: only after a lease period of
  // uninterrupted contact, so that edges could heartbeat since an outage.
  virtual bool MayExpireLeases() = 0;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_SHARED_REGISTRY_H_

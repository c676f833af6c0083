#ifndef CHAT_EDGE_DIRECTORY_CLIENT_H_
#define CHAT_EDGE_DIRECTORY_CLIENT_H_

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/synchronization/mutex.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/alarm_timer.h"
#include "common/service_auth.h"
#include "common/stream_reader.h"
#include "edge/backends.h"
#include "edge/local_hub.h"
#include "grpcpp/channel.h"

namespace chat::edge {

struct DirectoryOptions {
  std::chrono::milliseconds rpc_deadline{3000};
  // At most; a third of the registry's lease when that is shorter (the
  // heartbeat's answer says the lease), so that any --lease_timeout_ms works.
  std::chrono::milliseconds heartbeat_interval{3000};
  size_t max_batch = 1000;         // connections per Register/Unregister call
  size_t max_queued_ops = 200000;  // registrations waiting; beyond it they fail at once
  ServiceAuth auth;                // credential sent with every call
};

// Everything the edge asks of connection-service:
// - Register/Unregister, queued and sent in batches, one call in flight: a
//   connect storm costs a few RPCs, not one per socket;
// - the edge lease (heartbeat). When the registry lost our connections (it
//   restarted: new instance id; or our lease expired) every live connection is
//   registered again. One heartbeat call at a time, each set off by an alarm
//   once the previous one was answered: no thread of its own;
// - ListUsers for the `users` action;
// - presence events (to the hub's watchers), and kicks of our connections and
//   bans of users (operator Disconnect), from two streams that reconnect by
//   themselves.
class DirectoryClient : public DirectoryBackend {
 public:
  DirectoryClient(std::shared_ptr<grpc::Channel> channel, std::string edge_id, LocalHub* hub,
                  DirectoryOptions options);
  ~DirectoryClient() override;

  void ListUsers(bool online_only, int limit, const std::string& after,
                 std::function<void(absl::StatusOr<UserPage>)> done) override;
  void Register(NewConnection connection, std::function<void(absl::Status)> done) override;
  void Unregister(const std::string& connection_id) override;
  bool Ready() const override { return healthy_.load(); }
  int64_t BannedUntil(const std::string& user) const override;

  // Waits until every queued registration change was sent (or the deadline).
  void Flush(std::chrono::milliseconds deadline);

 private:
  struct Op {
    bool is_register;
    NewConnection connection;                // register
    std::string connection_id;               // unregister
    std::function<void(absl::Status)> done;  // register only; empty when `again`
    // A re-registration of a connection in live_ (the registry lost it):
    // never adds to live_, and is dropped once the connection closed.
    bool again = false;
  };
  // What re-registration needs of a live connection, in few bytes: its id,
  // user and address in one string, the user agent shared with the
  // connections that sent the same one. One per connection on this edge.
  class Registered {
   public:
    Registered(const NewConnection& connection, std::shared_ptr<const std::string> user_agent);
    std::string_view connection_id() const { return std::string_view(text_).substr(0, id_size_); }
    NewConnection ToNewConnection() const;

   private:
    std::string text_;  // connection id, user, ip
    std::shared_ptr<const std::string> user_agent_;
    int64_t connected_at_ms_;
    uint32_t id_size_;
    uint32_t user_size_;
  };
  // A set of records found by their connection id.
  struct RegisteredHash {
    using is_transparent = void;
    size_t operator()(std::string_view id) const { return absl::Hash<std::string_view>()(id); }
    size_t operator()(const std::unique_ptr<Registered>& r) const {
      return (*this)(r->connection_id());
    }
  };
  struct RegisteredEq {
    using is_transparent = void;
    static std::string_view Id(std::string_view id) { return id; }
    static std::string_view Id(const std::unique_ptr<Registered>& r) { return r->connection_id(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return Id(a) == Id(b);
    }
  };
  // The user agent to keep for a new record (mu_ held): the last one seen
  // is shared when it is the same.
  std::shared_ptr<const std::string> InternUserAgentLocked(const std::string& agent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void KickLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnBatchDone(std::vector<Op> batch, const grpc::Status& status, const std::string& instance);
  // Returns true when the registry restarted (and re-registration began).
  bool NoteInstance(const std::string& instance) ABSL_LOCKS_EXCLUDED(mu_);
  // connection-service answered `status`, saying that the shared registry
  // behind it (Redis) is unreachable: it is up, its state is not.
  static bool RegistryStoreAway(const grpc::Status& status);
  void RegisterAllAgain() ABSL_LOCKS_EXCLUDED(mu_);
  // Starts one heartbeat call; its answer sets the alarm for the next one.
  void Heartbeat();
  void OnHeartbeat(const grpc::Status& status, const chat::v1::HeartbeatResponse& response);
  void OnRouteUpdate(const chat::v1::RouteUpdate& update);
  void OnPresenceEvent(const chat::v1::PresenceEvent& event);

  std::unique_ptr<chat::v1::EdgeRegistry::Stub> stub_;
  const std::string edge_id_;
  const std::string incarnation_;
  LocalHub* hub_;
  const DirectoryOptions options_;
  std::atomic<bool> healthy_{false};

  absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  // What the registry should hold for us: re-sent when it lost it.
  absl::flat_hash_set<std::unique_ptr<Registered>, RegisteredHash, RegisteredEq> live_
      ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::string> last_user_agent_ ABSL_GUARDED_BY(mu_);
  std::string instance_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The heartbeat call in flight (cancelled on destruction), and whether its
  // callback may still run.
  grpc::ClientContext* heartbeat_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool heartbeat_in_flight_ ABSL_GUARDED_BY(mu_) = false;

  // Bans in force, from the route stream (its snapshot carries them all).
  mutable absl::Mutex bans_mu_;
  absl::flat_hash_map<std::string, int64_t> bans_ ABSL_GUARDED_BY(bans_mu_);

  // Who is online according to the presence stream. Each (re)started stream
  // begins with a snapshot, compared with this when it ends: clients hear of
  // the changes they missed while the stream was down (connection-service
  // restarted), and of none that did not happen. One entry per online user
  // of the whole service.
  absl::Mutex presence_mu_;
  absl::flat_hash_set<std::string> online_ ABSL_GUARDED_BY(presence_mu_);
  absl::flat_hash_set<std::string> snapshot_ ABSL_GUARDED_BY(presence_mu_);  // arriving

  chat::v1::WatchPresenceRequest presence_request_;
  chat::v1::WatchRoutesRequest kicks_request_;
  std::unique_ptr<ReconnectingReader<chat::v1::PresenceEvent>> presence_;
  std::unique_ptr<ReconnectingReader<chat::v1::RouteUpdate>> kicks_;
  AlarmTimer heartbeat_timer_;  // the next heartbeat
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_DIRECTORY_CLIENT_H_

#include "connection-service/connection_service.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/stream_writer.h"

namespace chat::connection {
namespace {

using chat::v1::PresenceEvent;
using chat::v1::RouteChange;
using chat::v1::RouteUpdate;

constexpr size_t kMaxQueuedUpdates = 20000;
constexpr size_t kSnapshotChunk = 5000;

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Runs `body` (it fills the response and says how the call ends) on
// `blocking` when there is one, else at once; finishes the call either way.
grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* ctx, BlockingCalls* blocking,
                                  std::function<absl::Status()> body) {
  auto* reactor = ctx->DefaultReactor();
  if (blocking == nullptr) {
    reactor->Finish(ToGrpcStatus(body()));
    return reactor;
  }
  if (!blocking->Run(
          [reactor, body = std::move(body)] { reactor->Finish(ToGrpcStatus(body())); })) {
    reactor->Finish(ToGrpcStatus(
        WithReason(absl::UnavailableError("registry unavailable: too many calls waiting for it"),
                   "REGISTRY_UNAVAILABLE")));
  }
  return reactor;
}

ConnectionInfo FromProto(const chat::v1::Connection& c) {
  return {c.connection_id(), c.user(), c.edge_id(), c.connected_at_ms(), c.user_agent(), c.ip()};
}

void ToProto(const ConnectionInfo& c, chat::v1::Connection* out) {
  out->set_connection_id(c.connection_id);
  out->set_user(c.user);
  out->set_edge_id(c.edge_id);
  out->set_connected_at_ms(c.connected_at_ms);
  out->set_user_agent(c.user_agent);
  out->set_ip(c.ip);
}

RouteChange::Reason ToProto(RemoveReason reason) {
  switch (reason) {
    case RemoveReason::kUnregistered:
      return RouteChange::UNREGISTERED;
    case RemoveReason::kLeaseExpired:
      return RouteChange::LEASE_EXPIRED;
    case RemoveReason::kKicked:
      return RouteChange::KICKED;
    case RemoveReason::kNone:
      break;
  }
  return RouteChange::REASON_UNSPECIFIED;
}

class RouteStream final : public RouteWatcher {
 public:
  explicit RouteStream(Registry* registry)
      : registry_(registry), writer_(new StreamWriter<RouteUpdate>(kMaxQueuedUpdates, [this] {
          registry_->RemoveRouteWatcher(this);
          delete this;
        })) {}

  StreamWriter<RouteUpdate>* writer() { return writer_; }

  void OnReset() override {
    writer_->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the registry started afresh; watch again for a snapshot"));
  }

  void OnRouteSnapshot(const std::vector<std::string>& users,
                       const std::vector<ConnectionInfo>& connections,
                       const std::vector<Ban>& bans) override {
    RouteUpdate update;
    update.set_reset(true);
    size_t in_chunk = 0;
    auto flush = [&] {
      writer_->Push(std::move(update));
      update = RouteUpdate();
      in_chunk = 0;
    };
    for (const auto& ban : bans) {
      auto* change = update.add_changes();
      change->set_kind(RouteChange::BANNED);
      change->mutable_connection()->set_user(ban.user);
      change->set_ban_until_ms(ban.until_ms);
      if (++in_chunk == kSnapshotChunk) flush();
    }
    for (const auto& user : users) {
      update.add_users(user);
      if (++in_chunk == kSnapshotChunk) flush();
    }
    for (const auto& c : connections) {
      auto* change = update.add_changes();
      change->set_kind(RouteChange::ADDED);
      ToProto(c, change->mutable_connection());
      if (++in_chunk == kSnapshotChunk) flush();
    }
    update.set_snapshot_done(true);
    writer_->Push(std::move(update));
  }

  void OnRouteEvents(const std::vector<RouteEvent>& events) override {
    RouteUpdate update;
    for (const auto& e : events) {
      auto* change = update.add_changes();
      switch (e.kind) {
        case RouteEventKind::kAdded:
          change->set_kind(RouteChange::ADDED);
          break;
        case RouteEventKind::kRemoved:
          change->set_kind(RouteChange::REMOVED);
          break;
        case RouteEventKind::kUserCreated:
          change->set_kind(RouteChange::USER_CREATED);
          break;
        case RouteEventKind::kBanned:
          change->set_kind(RouteChange::BANNED);
          change->set_ban_until_ms(e.ban_until_ms);
          break;
      }
      change->set_reason(ToProto(e.reason));
      if (e.reason == RemoveReason::kKicked) {
        change->set_close_code(e.close_code);
        change->set_close_reason(e.close_reason);
      }
      ToProto(e.connection, change->mutable_connection());
    }
    writer_->Push(std::move(update));
  }

 private:
  Registry* registry_;
  StreamWriter<RouteUpdate>* writer_;  // owns itself; deletes us in OnDone
};

// The instance id edges and backends see: the shared registry's epoch (the
// same on every replica) when there is one, else this server's own id.
std::string InstanceId(const Registry& registry, const std::string& own) {
  std::string shared = registry.instance_id();
  return shared.empty() ? own : shared;
}

class PresenceStream final : public PresenceWatcher {
 public:
  PresenceStream(Registry* registry, std::string instance_id)
      : registry_(registry),
        own_instance_id_(std::move(instance_id)),
        writer_(new StreamWriter<PresenceEvent>(kMaxQueuedUpdates, [this] {
          registry_->RemovePresenceWatcher(this);
          delete this;
        })) {}

  StreamWriter<PresenceEvent>* writer() { return writer_; }

  void OnReset() override {
    writer_->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the registry started afresh; watch again for a snapshot"));
  }

  void OnPresenceSnapshot(const std::vector<PresenceChange>& users, int64_t now_ms) override {
    // Whole, however large: the queue's bound is for watchers that fall
    // behind on changes, not for the state they asked for.
    const std::string instance_id = InstanceId(*registry_, own_instance_id_);
    std::vector<PresenceEvent> events;
    events.reserve(users.size() + 1);
    for (const auto& user : users) {
      PresenceEvent& event = events.emplace_back();
      event.set_name(user.user);
      event.set_online(user.online);
      event.set_ts_ms(now_ms);
      event.set_snapshot(true);
      event.set_instance_id(instance_id);
    }
    PresenceEvent& end = events.emplace_back();
    end.set_ts_ms(now_ms);
    end.set_snapshot_end(true);
    end.set_instance_id(instance_id);
    writer_->PushSnapshot(std::move(events));
  }

  void OnPresence(const std::vector<PresenceChange>& changes) override {
    const std::string instance_id = InstanceId(*registry_, own_instance_id_);
    for (const auto& change : changes) {
      PresenceEvent event;
      event.set_name(change.user);
      event.set_online(change.online);
      event.set_ts_ms(change.ts_ms);
      event.set_instance_id(instance_id);
      if (!writer_->Push(std::move(event))) return;
    }
  }

 private:
  Registry* registry_;
  const std::string own_instance_id_;
  StreamWriter<PresenceEvent>* writer_;
};

void ToProto(const UserDetails& user, chat::v1::User* out) {
  out->set_name(user.name);
  out->set_online(!user.connections.empty());
  for (const auto& c : user.connections) ToProto(c, out->add_connections());
  out->set_banned_until_ms(user.banned_until_ms);
}

// A Duration as whole milliseconds (rounded up), within 0..kMaxBanMs.
absl::StatusOr<int64_t> BanMs(const google::protobuf::Duration& ban) {
  constexpr int64_t kMaxBanS = kMaxBanMs / 1000;
  if (ban.seconds() < 0 || ban.nanos() < 0 || ban.nanos() >= 1'000'000'000 ||
      ban.seconds() > kMaxBanS || (ban.seconds() == kMaxBanS && ban.nanos() > 0)) {
    return WithReason(absl::InvalidArgumentError("ban must be between 0 and 366 days"),
                      "INVALID_BAN");
  }
  return ban.seconds() * 1000 + (ban.nanos() + 999'999) / 1'000'000;
}

absl::Status GetUserInto(const Registry& registry, const std::string& name,
                         chat::v1::User* response) {
  auto result = registry.GetUser(name);
  if (result.ok()) ToProto(*result, response);
  return result.status();
}

absl::Status ListUsersInto(const Registry& registry, const chat::v1::ListUsersRequest& request,
                           chat::v1::ListUsersResponse* response) {
  auto result =
      registry.ListUsers(request.page_token(), request.page_size(), request.online_only());
  if (!result.ok()) return result.status();
  for (const auto& u : result->users) {
    auto* out = response->add_users();
    out->set_name(u.name);
    out->set_online(u.online);
  }
  response->set_next_page_token(result->next);
  return absl::OkStatus();
}

grpc::ServerWriteReactor<chat::v1::PresenceEvent>* StartPresenceStream(
    Registry* registry, const std::string& instance_id,
    const chat::v1::WatchPresenceRequest& request) {
  auto* stream = new PresenceStream(registry, instance_id);
  StreamWriter<PresenceEvent>* writer = stream->writer();  // `stream` may be gone after Close
  absl::Status added =
      registry->AddPresenceWatcher(stream, {request.users().begin(), request.users().end()});
  if (!added.ok()) writer->Close(ToGrpcStatus(added));
  return writer;
}

}  // namespace

// ---------------------------------------------------------------------------
// ConnectionService (public)

ConnectionServiceImpl::ConnectionServiceImpl(Registry* registry, std::string instance_id,
                                             ServiceAuth auth)
    : registry_(registry), instance_id_(std::move(instance_id)), auth_(std::move(auth)) {}

grpc::ServerUnaryReactor* ConnectionServiceImpl::Refused(grpc::CallbackServerContext* ctx) const {
  grpc::Status denied = auth_.CheckPublic(ctx);
  if (denied.ok()) return nullptr;
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(denied);
  return reactor;
}

grpc::ServerUnaryReactor* ConnectionServiceImpl::ListUsers(
    grpc::CallbackServerContext* ctx, const chat::v1::ListUsersRequest* request,
    chat::v1::ListUsersResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Done(ctx, ListUsersInto(*registry_, *request, response));
}

grpc::ServerUnaryReactor* ConnectionServiceImpl::GetUser(grpc::CallbackServerContext* ctx,
                                                         const chat::v1::GetUserRequest* request,
                                                         chat::v1::User* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Done(ctx, GetUserInto(*registry_, request->name(), response));
}

grpc::ServerUnaryReactor* ConnectionServiceImpl::GetUsers(grpc::CallbackServerContext* ctx,
                                                          const chat::v1::GetUsersRequest* request,
                                                          chat::v1::GetUsersResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  auto result = registry_->GetUsers({request->names().begin(), request->names().end()});
  if (result.ok()) {
    for (const auto& user : result->users) ToProto(user, response->add_users());
    for (const auto& name : result->not_found) response->add_not_found(name);
  }
  return Done(ctx, result.status());
}

grpc::ServerUnaryReactor* ConnectionServiceImpl::GetCounts(
    grpc::CallbackServerContext* ctx, const chat::v1::GetCountsRequest* request,
    chat::v1::GetCountsResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  const Counts counts = registry_->GetCounts();
  response->set_users(counts.users);
  response->set_online_users(counts.online_users);
  response->set_connections(counts.connections);
  response->set_edges(counts.edges);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* ConnectionServiceImpl::Disconnect(
    grpc::CallbackServerContext* ctx, const chat::v1::DisconnectRequest* request,
    chat::v1::DisconnectResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  KickRequest kick;
  switch (request->target_case()) {
    case chat::v1::DisconnectRequest::kUser:
      if (request->user().empty()) {
        return Done(ctx,
                    WithReason(absl::InvalidArgumentError("user: name is empty"), "INVALID_NAME"));
      }
      kick.user = request->user();
      break;
    case chat::v1::DisconnectRequest::kConnectionId:
      if (request->connection_id().empty()) {
        return Done(ctx, WithReason(absl::InvalidArgumentError("connection_id is empty"),
                                    "INVALID_CONNECTION_ID"));
      }
      kick.connection_id = request->connection_id();
      break;
    case chat::v1::DisconnectRequest::TARGET_NOT_SET:
      break;  // the registry refuses a request without a target
  }
  kick.code = request->code();
  kick.reason = request->reason();
  if (request->has_ban()) {
    absl::StatusOr<int64_t> ban_ms = BanMs(request->ban());
    if (!ban_ms.ok()) return Done(ctx, ban_ms.status());
    kick.set_ban = true;
    kick.ban_ms = *ban_ms;
  }
  return Offload(ctx, blocking_, [this, kick, response] {
    auto result = registry_->Disconnect(kick);
    if (result.ok()) {
      response->set_disconnected(result->disconnected);
      response->set_banned_until_ms(result->banned_until_ms);
    }
    return result.status();
  });
}

grpc::ServerWriteReactor<chat::v1::PresenceEvent>* ConnectionServiceImpl::WatchPresence(
    grpc::CallbackServerContext* ctx, const chat::v1::WatchPresenceRequest* request) {
  if (grpc::Status denied = auth_.CheckPublic(ctx); !denied.ok()) {
    return new RefusedWriter<chat::v1::PresenceEvent>(denied);
  }
  return StartPresenceStream(registry_, instance_id_, *request);
}

// ---------------------------------------------------------------------------
// EdgeRegistry (internal)

EdgeRegistryImpl::EdgeRegistryImpl(Registry* registry, std::string instance_id, ServiceAuth auth,
                                   NameClaims* claims)
    : registry_(registry),
      instance_id_(std::move(instance_id)),
      auth_(std::move(auth)),
      claims_(claims) {}

grpc::ServerUnaryReactor* EdgeRegistryImpl::Refused(grpc::CallbackServerContext* ctx) const {
  grpc::Status denied = auth_.Check(ctx);
  if (denied.ok()) return nullptr;
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(denied);
  return reactor;
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::Register(grpc::CallbackServerContext* ctx,
                                                     const chat::v1::RegisterRequest* request,
                                                     chat::v1::RegisterResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  std::vector<ConnectionInfo> connections;
  connections.reserve(request->connections_size());
  for (const auto& c : request->connections()) connections.push_back(FromProto(c));
  return Offload(ctx, blocking_, [this, request, response, connections]() mutable {
    const absl::Status status =
        registry_->Register(request->edge_id(), request->incarnation(), std::move(connections));
    response->set_instance_id(InstanceId(*registry_, instance_id_));
    return status;
  });
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::Unregister(grpc::CallbackServerContext* ctx,
                                                       const chat::v1::UnregisterRequest* request,
                                                       chat::v1::UnregisterResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Offload(ctx, blocking_, [this, request, response] {
    const absl::Status status =
        registry_->Unregister(request->edge_id(), request->incarnation(),
                              {request->connection_ids().begin(), request->connection_ids().end()});
    response->set_instance_id(InstanceId(*registry_, instance_id_));
    return status;
  });
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::Heartbeat(grpc::CallbackServerContext* ctx,
                                                      const chat::v1::HeartbeatRequest* request,
                                                      chat::v1::HeartbeatResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Offload(ctx, blocking_, [this, request, response] {
    auto result = registry_->Heartbeat(request->edge_id(), request->incarnation());
    if (result.ok()) {
      response->set_instance_id(InstanceId(*registry_, instance_id_));
      response->set_lease_known(result->lease_known);
      response->set_lease_timeout_ms(registry_->lease_timeout_ms());
    }
    return result.status();
  });
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::ClaimName(grpc::CallbackServerContext* ctx,
                                                      const chat::v1::ClaimNameRequest* request,
                                                      chat::v1::ClaimNameResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  if (claims_ == nullptr) {
    return Done(ctx, absl::UnimplementedError("this connection-service keeps no name claims"));
  }
  auto granted = claims_->Claim(request->name(), request->subject());
  if (granted.ok()) response->set_granted(*granted);
  return Done(ctx, granted.status());
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::LookupUser(grpc::CallbackServerContext* ctx,
                                                       const chat::v1::GetUserRequest* request,
                                                       chat::v1::User* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Done(ctx, GetUserInto(*registry_, request->name(), response));
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::ForgetUser(grpc::CallbackServerContext* ctx,
                                                       const chat::v1::ForgetUserRequest* request,
                                                       chat::v1::ForgetUserResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Offload(ctx, blocking_, [this, request, response] {
    auto result = registry_->ForgetUser(request->name(), request->code(), request->reason());
    if (!result.ok()) return result.status();
    if (claims_ != nullptr) {
      if (absl::Status released = claims_->Release(request->name()); !released.ok()) {
        return absl::UnavailableError(
            absl::StrCat("name claims unavailable: ", released.message()));
      }
    }
    response->set_existed(result->existed);
    response->set_disconnected(result->disconnected);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EdgeRegistryImpl::ListUsers(grpc::CallbackServerContext* ctx,
                                                      const chat::v1::ListUsersRequest* request,
                                                      chat::v1::ListUsersResponse* response) {
  if (auto* refused = Refused(ctx)) return refused;
  return Done(ctx, ListUsersInto(*registry_, *request, response));
}

grpc::ServerWriteReactor<chat::v1::PresenceEvent>* EdgeRegistryImpl::WatchPresence(
    grpc::CallbackServerContext* ctx, const chat::v1::WatchPresenceRequest* request) {
  if (grpc::Status denied = auth_.Check(ctx); !denied.ok()) {
    return new RefusedWriter<chat::v1::PresenceEvent>(denied);
  }
  return StartPresenceStream(registry_, instance_id_, *request);
}

grpc::ServerWriteReactor<chat::v1::RouteUpdate>* EdgeRegistryImpl::WatchRoutes(
    grpc::CallbackServerContext* ctx, const chat::v1::WatchRoutesRequest* request) {
  if (grpc::Status denied = auth_.Check(ctx); !denied.ok()) {
    return new RefusedWriter<chat::v1::RouteUpdate>(denied);
  }
  auto* stream = new RouteStream(registry_);
  registry_->AddRouteWatcher(stream, request->edge_id());
  return stream->writer();
}

}  // namespace chat::connection

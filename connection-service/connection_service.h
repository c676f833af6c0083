#ifndef CHAT_CONNECTION_SERVICE_CONNECTION_SERVICE_H_
#define CHAT_CONNECTION_SERVICE_CONNECTION_SERVICE_H_

#include <string>

#include "chat/v1/chat.grpc.pb.h"
#include "common/service_auth.h"
#include "connection-service/blocking_calls.h"
#include "connection-service/name_claims.h"
#include "connection-service/registry.h"

namespace chat::connection {

// gRPC adapters over Registry: translate messages and statuses, nothing more.
// Two services on one server: the public one for backends and the internal
// one for edges and message-service, each with its own credential.

// Public: users, presence, disconnects.
class ConnectionServiceImpl final : public chat::v1::ConnectionService::CallbackService {
 public:
  ConnectionServiceImpl(Registry* registry, std::string instance_id, ServiceAuth auth = {});
  // Where mutations run (null: on gRPC's thread); with a shared registry
  // they block on Redis. Must outlive the calls.
  void set_blocking_calls(BlockingCalls* calls) { blocking_ = calls; }

  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* ctx,
                                      const chat::v1::ListUsersRequest* request,
                                      chat::v1::ListUsersResponse* response) override;
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* ctx,
                                    const chat::v1::GetUserRequest* request,
                                    chat::v1::User* response) override;
  grpc::ServerUnaryReactor* GetUsers(grpc::CallbackServerContext* ctx,
                                     const chat::v1::GetUsersRequest* request,
                                     chat::v1::GetUsersResponse* response) override;
  grpc::ServerUnaryReactor* GetCounts(grpc::CallbackServerContext* ctx,
                                      const chat::v1::GetCountsRequest* request,
                                      chat::v1::GetCountsResponse* response) override;
  grpc::ServerUnaryReactor* Disconnect(grpc::CallbackServerContext* ctx,
                                       const chat::v1::DisconnectRequest* request,
                                       chat::v1::DisconnectResponse* response) override;
  grpc::ServerWriteReactor<chat::v1::PresenceEvent>* WatchPresence(
      grpc::CallbackServerContext* ctx, const chat::v1::WatchPresenceRequest* request) override;

 private:
  // A finished reactor when the caller lacks the API credential, else null.
  grpc::ServerUnaryReactor* Refused(grpc::CallbackServerContext* ctx) const;

  Registry* registry_;
  const std::string instance_id_;
  const ServiceAuth auth_;
  BlockingCalls* blocking_ = nullptr;
};

// Internal: edges register their connections; message-service looks users up.
class EdgeRegistryImpl final : public chat::v1::EdgeRegistry::CallbackService {
 public:
  // `claims` may be null: ClaimName is then UNIMPLEMENTED.
  EdgeRegistryImpl(Registry* registry, std::string instance_id, ServiceAuth auth = {},
                   NameClaims* claims = nullptr);
  // As ConnectionServiceImpl::set_blocking_calls.
  void set_blocking_calls(BlockingCalls* calls) { blocking_ = calls; }

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const chat::v1::RegisterRequest* request,
                                     chat::v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Unregister(grpc::CallbackServerContext* ctx,
                                       const chat::v1::UnregisterRequest* request,
                                       chat::v1::UnregisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const chat::v1::HeartbeatRequest* request,
                                      chat::v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* ClaimName(grpc::CallbackServerContext* ctx,
                                      const chat::v1::ClaimNameRequest* request,
                                      chat::v1::ClaimNameResponse* response) override;
  grpc::ServerUnaryReactor* LookupUser(grpc::CallbackServerContext* ctx,
                                       const chat::v1::GetUserRequest* request,
                                       chat::v1::User* response) override;
  grpc::ServerUnaryReactor* ForgetUser(grpc::CallbackServerContext* ctx,
                                       const chat::v1::ForgetUserRequest* request,
                                       chat::v1::ForgetUserResponse* response) override;
  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* ctx,
                                      const chat::v1::ListUsersRequest* request,
                                      chat::v1::ListUsersResponse* response) override;
  grpc::ServerWriteReactor<chat::v1::PresenceEvent>* WatchPresence(
      grpc::CallbackServerContext* ctx, const chat::v1::WatchPresenceRequest* request) override;
  grpc::ServerWriteReactor<chat::v1::RouteUpdate>* WatchRoutes(
      grpc::CallbackServerContext* ctx, const chat::v1::WatchRoutesRequest* request) override;

 private:
  // A finished reactor when the caller lacks the internal credential, else null.
  grpc::ServerUnaryReactor* Refused(grpc::CallbackServerContext* ctx) const;

  Registry* registry_;
  const std::string instance_id_;
  const ServiceAuth auth_;
  NameClaims* const claims_;
  BlockingCalls* blocking_ = nullptr;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_CONNECTION_SERVICE_H_

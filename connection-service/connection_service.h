#ifndef CHAT_CONNECTION_SERVICE_CONNECTION_SERVICE_H_
#define CHAT_CONNECTION_SERVICE_CONNECTION_SERVICE_H_

#include <string>

#include "chat/v1/chat.grpc.pb.h"
#include "common/service_auth.h"
#include "connection-service/name_claims.h"
#include "connection-service/registry.h"

namespace chat::connection {

// gRPC adapter over Registry: translates messages and statuses, nothing more.
class ConnectionServiceImpl final : public chat::v1::ConnectionService::CallbackService {
 public:
  // `claims` may be null: ClaimName is then UNIMPLEMENTED.
  ConnectionServiceImpl(Registry* registry, std::string instance_id, ServiceAuth auth = {},
                        NameClaims* claims = nullptr);

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const chat::v1::RegisterRequest* request,
                                     chat::v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Unregister(grpc::CallbackServerContext* ctx,
                                       const chat::v1::UnregisterRequest* request,
                                       chat::v1::UnregisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const chat::v1::HeartbeatRequest* request,
                                      chat::v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* ctx,
                                      const chat::v1::ListUsersRequest* request,
                                      chat::v1::ListUsersResponse* response) override;
  grpc::ServerUnaryReactor* GetUser(grpc::CallbackServerContext* ctx,
                                    const chat::v1::GetUserRequest* request,
                                    chat::v1::User* response) override;
  grpc::ServerUnaryReactor* Disconnect(grpc::CallbackServerContext* ctx,
                                       const chat::v1::DisconnectRequest* request,
                                       chat::v1::DisconnectResponse* response) override;
  grpc::ServerUnaryReactor* ClaimName(grpc::CallbackServerContext* ctx,
                                      const chat::v1::ClaimNameRequest* request,
                                      chat::v1::ClaimNameResponse* response) override;
  grpc::ServerWriteReactor<chat::v1::PresenceEvent>* WatchPresence(
      grpc::CallbackServerContext* ctx, const chat::v1::WatchPresenceRequest* request) override;
  grpc::ServerWriteReactor<chat::v1::RouteUpdate>* WatchRoutes(
      grpc::CallbackServerContext* ctx, const chat::v1::WatchRoutesRequest* request) override;

 private:
  // A finished reactor when the caller lacks the service credential, else null.
  grpc::ServerUnaryReactor* Refused(grpc::CallbackServerContext* ctx) const;

  Registry* registry_;
  const std::string instance_id_;
  const ServiceAuth auth_;
  NameClaims* const claims_;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_CONNECTION_SERVICE_H_

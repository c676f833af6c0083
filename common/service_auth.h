#ifndef CHAT_COMMON_SERVICE_AUTH_H_
#define CHAT_COMMON_SERVICE_AUTH_H_

#include <string>

#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace chat {

// Bearer credentials of the two gRPC surfaces. Callers send
// `authorization: Bearer <token>` metadata:
//  - internal RPCs (EdgeRegistry, EdgeGateway: our own processes) need the
//    internal token (--service_token);
//  - public RPCs (ConnectionService, MessageService: other backends) need the
//    API token (--api_token), or the internal token when no API token is set
//    (one shared token, the way single-token deployments already run).
// With both set, each surface refuses the other's token. An empty token
// leaves its surface unchecked (the zero-configuration local default). Health
// and reflection stay open. Clients send the internal token.
class ServiceAuth {
 public:
  ServiceAuth() = default;  // no credential: calls are not checked
  explicit ServiceAuth(std::string internal_token, std::string api_token = "")
      : internal_(std::move(internal_token)), api_(std::move(api_token)) {}

  bool enabled() const { return !internal_.empty(); }
  // Internal RPCs.
  grpc::Status Check(const grpc::ServerContextBase* ctx) const;
  grpc::Status CheckPublic(const grpc::ServerContextBase* ctx) const;
  void Apply(grpc::ClientContext* ctx) const;

 private:
  static grpc::Status Matches(const grpc::ServerContextBase* ctx, const std::string& token);

  std::string internal_;
  std::string api_;
};

// Reactors that only refuse, for streaming methods whose caller failed Check.
template <typename Resp>
class RefusedWriter final : public grpc::ServerWriteReactor<Resp> {
 public:
  explicit RefusedWriter(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

template <typename Req, typename Resp>
class RefusedBidi final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  explicit RefusedBidi(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace chat

#endif  // CHAT_COMMON_SERVICE_AUTH_H_

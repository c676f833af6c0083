#ifndef CHAT_COMMON_SERVICE_AUTH_H_
#define CHAT_COMMON_SERVICE_AUTH_H_

#include <string>

#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace chat {

// A shared service credential: callers of our gRPC APIs (edges, message-service,
// other backend services) send `authorization: Bearer <token>` metadata, and
// servers refuse calls without it. An empty token disables the check (the
// zero-configuration local default). Health and reflection stay open.
class ServiceAuth {
 public:
  ServiceAuth() = default;  // no credential: calls are not checked
  explicit ServiceAuth(std::string token) : token_(std::move(token)) {}

  bool enabled() const { return !token_.empty(); }
  grpc::Status Check(const grpc::CallbackServerContext* ctx) const;
  void Apply(grpc::ClientContext* ctx) const;

 private:
  std::string token_;
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

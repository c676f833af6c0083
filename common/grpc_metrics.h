#ifndef CHAT_COMMON_GRPC_METRICS_H_
#define CHAT_COMMON_GRPC_METRICS_H_

#include <memory>

#include "common/metrics.h"
#include "grpcpp/support/client_interceptor.h"
#include "grpcpp/support/server_interceptor.h"

namespace chat {

// Call counts and latencies of every gRPC method, served and called, by
// method and status code, recorded by interceptors so that no RPC handler
// has to count for itself:
//   grpc_{server,client}_started_total{grpc_service,grpc_method}
//   grpc_{server,client}_handled_total{grpc_service,grpc_method,grpc_code}
//   grpc_{server,client}_handling_seconds{grpc_service,grpc_method,grpc_code}
// (the names the Go and Java gRPC exporters use, so existing dashboards fit).
// A stream's "handling" time is its whole life.
//
// The interceptor factories share the metrics' state: a channel released late
// (ReleaseChannel may leak one on purpose) never points at freed metrics.
class GrpcMetrics {
 public:
  explicit GrpcMetrics(Metrics& metrics);
  ~GrpcMetrics();

  // For ServerBuilder::experimental().SetInterceptorCreators (StartGrpcServer).
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> ServerInterceptors() const;
  // For the channels MakeChannel opens.
  std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> ClientInterceptors() const;

  class Side;  // one direction's metric families (grpc_server_* or grpc_client_*)

 private:
  std::shared_ptr<Side> server_;
  std::shared_ptr<Side> client_;
};

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_METRICS_H_

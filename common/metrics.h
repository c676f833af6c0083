#ifndef CHAT_COMMON_METRICS_H_
#define CHAT_COMMON_METRICS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"

namespace prometheus {
class Exposer;
}  // namespace prometheus

namespace chat {

// One process's metrics: the registry its components add their metrics to
// (passed to them by reference), and optionally an HTTP endpoint serving the
// registry at /metrics (the gRPC services; the edge answers /metrics on its
// own port with Text()). The text format is prometheus-cpp's.
class Metrics {
 public:
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  // For holders that may outlive this object (gRPC's interceptor factories).
  std::shared_ptr<prometheus::Registry> shared_registry() const { return registry_; }

  // Serves GET /metrics on `listen` ("host:port"; port 0 = any free port) on
  // the exposer's own threads. Returns the bound port.
  absl::StatusOr<int> Serve(const std::string& listen);

  // The registry in Prometheus' text exposition format (version 0.0.4).
  std::string Text() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

// The Content-Type of Text().
inline constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Serves `metrics` on `listen` unless it is empty, and says where on stderr
// ("metrics on host:port") and in the log. Used by the gRPC services' main().
absl::Status ServeMetricsIfAsked(Metrics& metrics, const std::string& listen);

}  // namespace chat

#endif  // CHAT_COMMON_METRICS_H_

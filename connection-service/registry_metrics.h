#ifndef CHAT_CONNECTION_SERVICE_REGISTRY_METRICS_H_
#define CHAT_CONNECTION_SERVICE_REGISTRY_METRICS_H_

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace chat::connection {

// What the Registry counts, kept up to date by it as it changes (so a scrape
// costs no walk over the registry).
struct RegistryMetrics {
  explicit RegistryMetrics(prometheus::Registry& registry)
      : users(prometheus::BuildGauge()
                  .Name("chat_registry_users")
                  .Help("Users the registry knows (ever connected)")
                  .Register(registry)
                  .Add({})),
        online_users(prometheus::BuildGauge()
                         .Name("chat_registry_online_users")
                         .Help("Users with at least one live connection")
                         .Register(registry)
                         .Add({})),
        connections(prometheus::BuildGauge()
                        .Name("chat_registry_connections")
                        .Help("Live connections registered by the edges")
                        .Register(registry)
                        .Add({})),
        edges(prometheus::BuildGauge()
                  .Name("chat_registry_edges")
                  .Help("Edges holding a lease")
                  .Register(registry)
                  .Add({})),
        lease_expiries(prometheus::BuildCounter()
                           .Name("chat_registry_lease_expiries_total")
                           .Help("Edge leases that ran out (the edge stopped heartbeating)")
                           .Register(registry)
                           .Add({})),
        expired_connections(prometheus::BuildCounter()
                                .Name("chat_registry_lease_expired_connections_total")
                                .Help("Connections dropped because their edge's lease ran out "
                                      "or the edge restarted")
                                .Register(registry)
                                .Add({})) {}

  prometheus::Gauge& users;
  prometheus::Gauge& online_users;
  prometheus::Gauge& connections;
  prometheus::Gauge& edges;
  prometheus::Counter& lease_expiries;
  prometheus::Counter& expired_connections;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REGISTRY_METRICS_H_

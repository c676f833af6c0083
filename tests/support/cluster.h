#ifndef CHAT_TESTS_SUPPORT_CLUSTER_H_
#define CHAT_TESTS_SUPPORT_CLUSTER_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/support/process.h"

namespace chat::testing {

using namespace std::chrono_literals;

struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
};

// One HTTP/1.1 request to 127.0.0.1:port with a deadline.
absl::StatusOr<HttpResult> HttpGet(
    int port, const std::string& target,
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    std::chrono::milliseconds timeout = 3s);
// The same over TLS (https://), trusting only the certificates in `ca_file`;
// the server's certificate must name 127.0.0.1.
absl::StatusOr<HttpResult> HttpsGet(
    int port, const std::string& target, const std::string& ca_file,
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    std::chrono::milliseconds timeout = 3s);
// The raw bytes the server answered to `request` (for malformed requests).
absl::StatusOr<std::string> RawRequest(int port, const std::string& request,
                                       std::chrono::milliseconds timeout = 3s);

// Polls `condition` until true or the deadline: for state that has no event
// to wait on (another process's view). Returns whether it became true.
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s);

struct ClusterOptions {
  std::vector<std::string> connection_flags;
  std::vector<std::string> message_flags;
  std::vector<std::string> edge_flags;
  int edges = 1;
  // message-service replicas on one store (give them a postgresql:// URL
  // when more than one); every edge links to all of them.
  int message_services = 1;
  // Set when edge_flags turn TLS on: readiness is then probed over https://,
  // trusting this PEM file.
  std::string edge_tls_ca;
  // --store of message-service and connection-service ("sqlite:PATH" or a
  // postgresql:// URL); empty: SQLite files in a directory of this cluster's
  // own, kept across restarts of its processes and removed with it.
  std::string message_store;
  std::string connection_store;
};

// The three real binaries on free loopback ports, as a test's fixture.
class Cluster {
 public:
  explicit Cluster(std::string name, ClusterOptions options = {});
  ~Cluster();

  absl::Status Start();  // all of them, waiting until the first edge is ready

  absl::Status StartConnectionService();
  absl::Status StartMessageService(int index = 0);  // again on the same port
  absl::Status StartEdge(int index);
  // Sends `sig` and waits for exit; returns the wait status.
  absl::StatusOr<int> Stop(ChildProcess& process, int sig, std::chrono::milliseconds timeout = 10s);
  // Waits until the edge's /readyz answers 200.
  absl::Status WaitEdgeReady(int index, std::chrono::milliseconds timeout = 10s);

  ChildProcess& connection_service() { return *connection_; }
  ChildProcess& message_service(int index = 0) { return *messages_[index]; }
  ChildProcess& edge(int index) { return *edges_[index]; }
  int connection_port() const { return connection_port_; }
  int message_port(int index = 0) const { return message_ports_[index]; }
  // Where the gRPC services serve /metrics (the cluster starts them with
  // --metrics_listen=127.0.0.1:0); 0 when a test turned it off. The edge
  // serves /metrics on edge_port().
  int connection_metrics_port() const { return connection_metrics_port_; }
  int message_metrics_port(int index = 0) const { return message_metrics_ports_[index]; }
  int edge_port(int index = 0) const { return edge_ports_[index]; }
  std::string LogPath(const std::string& process) const;

 private:
  std::string name_;
  ClusterOptions options_;
  std::unique_ptr<ChildProcess> connection_;
  std::vector<std::unique_ptr<ChildProcess>> messages_;
  std::vector<std::unique_ptr<ChildProcess>> edges_;
  int connection_port_ = 0;
  std::vector<int> message_ports_;
  int connection_metrics_port_ = 0;
  std::vector<int> message_metrics_ports_;
  std::vector<int> edge_ports_;
  std::string data_dir_;  // the default stores' directory, if made here
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_CLUSTER_H_

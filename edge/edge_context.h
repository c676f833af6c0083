#ifndef CHAT_EDGE_EDGE_CONTEXT_H_
#define CHAT_EDGE_EDGE_CONTEXT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "common/clock.h"
#include "edge/admission.h"
#include "edge/backends.h"
#include "edge/connection_logic.h"
#include "edge/edge_metrics.h"
#include "edge/jwt_identities.h"
#include "edge/local_hub.h"

namespace chat {
class Metrics;
}  // namespace chat

namespace chat::edge {

class StaticFiles;

// What every session of one edge shares. Owned by EdgeServer; outlives them.
struct EdgeContext {
  std::string edge_id;
  LogicConfig logic;
  size_t max_outbound_bytes = 4 << 20;
  size_t max_connections = 100000;
  std::chrono::seconds handshake_timeout{10};
  // A closing handshake the peer does not complete within this is cut (also
  // how long a client that stopped reading has to pick up its 4008).
  std::chrono::milliseconds close_grace{3000};
  size_t max_header_bytes = 8192;
  MessageBackend* messages = nullptr;
  DirectoryBackend* directory = nullptr;
  LocalHub* hub = nullptr;
  const StaticFiles* static_files = nullptr;  // null: every other GET is 404
  const OriginPolicy* origins = nullptr;
  UserConnectionLimit* per_user = nullptr;
  TokenVerifier* tokens = nullptr;  // set: jwt mode
  // Never null once EdgeServer::Start() ran: sessions count without checking.
  EdgeMetrics* metrics = nullptr;
  const Metrics* all_metrics = nullptr;  // what GET /metrics serves
  JwtIdentities* identities = nullptr;   // set with `tokens`: the handshake's identity
  // jwt mode: a live connection whose token expires stays open (until
  // max_connection_age) instead of closing with 1008.
  bool keep_on_token_expiry = false;
  // Connections older than this close with 1001 (going away); zero: no limit.
  std::chrono::seconds max_connection_age{0};
  const Clock* clock = SystemClock::Get();
  std::atomic<uint64_t> next_connection{0};
  std::atomic<size_t> live_connections{0};  // registered and not yet closed
  std::atomic<bool> shutting_down{false};
  // The I/O threads are gone and the backends may be too: a session destroyed
  // now (with the io_context's pending handlers) only closes its socket.
  std::atomic<bool> stopped{false};
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_EDGE_CONTEXT_H_

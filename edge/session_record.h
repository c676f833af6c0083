#ifndef CHAT_EDGE_SESSION_RECORD_H_
#define CHAT_EDGE_SESSION_RECORD_H_

#include <chrono>
#include <cstdint>
#include <memory>

#include "boost/asio/ip/tcp.hpp"
#include "edge/backends.h"
#include "edge/connection_logic.h"
#include "edge/edge_context.h"

namespace chat::edge {

// What a WebSocket session tells the rest of the edge when it opens and when
// it ends, the same whichever framing it runs on (PlainWsSession on plain
// sockets, WsSession with Beast over TLS): the info lines, the connection
// metrics, the local hub, the directory, and the counts the upgrade took
// (HttpSession reserved them). One place, so that the two sessions cannot
// drift apart: a release one of them forgot would hold a user's connection
// slot for the life of the edge.
//
// The session passes what only its transport knows (the peer's address, the
// close code, its frame counts) and keeps its own teardown (timers, socket),
// which runs between Closed and Release. It holds just what the close line
// needs from the open, where the sessions held it before: no session grows.
class SessionRecord {
 public:
  // The handshake is done: the open line, the metric, and the hub entry
  // that routes this connection's deliveries to `self`.
  void Opened(EdgeContext& context, const ConnectionLogic& logic,
              const boost::asio::ip::tcp::endpoint& remote, std::weak_ptr<LocalConnection> self);

  // A connection that was Opened ended: the metric and the close line.
  // `code`: the one this edge sent, else the peer's, else 1006. Called
  // before the session closes its socket (as the sessions always did).
  void Closed(const EdgeContext& context, const ConnectionLogic& logic, uint16_t code,
              uint64_t frames_in, uint64_t frames_out) const;

  // Once the socket is closed, opened or not: ends the logic and gives back
  // what the upgrade took (hub entry, directory entry, the edge's and the
  // user's connection counts). Nothing once the edge has stopped: its
  // backends may be gone, and the counts with them.
  static void Release(EdgeContext& context, ConnectionLogic& logic);

 private:
  boost::asio::ip::tcp::endpoint remote_;
  std::chrono::steady_clock::time_point opened_at_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_SESSION_RECORD_H_

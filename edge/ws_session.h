#ifndef CHAT_EDGE_WS_SESSION_H_
#define CHAT_EDGE_WS_SESSION_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/websocket.hpp"
#include "edge/connection_logic.h"
#include "edge/edge_context.h"
#include "edge/fifo.h"
#include "edge/read_buffer.h"
#include "edge/session_record.h"
#include "edge/transport.h"

namespace chat::edge {

// One WebSocket connection over TLS, framed by Beast: its strand, one read
// and one write in flight, a bounded outbound queue (bytes) and the close
// handshake. The protocol itself lives in ConnectionLogic. Beast's close
// handshake is followed by the TLS shutdown (close_notify), all within the
// close grace. Plain connections use PlainWsSession (plain_ws_session.h),
// which holds far less per idle connection; `Stream` is TlsStream.
template <class Stream>
class WsSession final : public std::enable_shared_from_this<WsSession<Stream>>,
                        public ClientSink,
                        public LocalConnection {
 public:
  WsSession(Stream&& stream, EdgeContext* context, Identity identity, std::string connection_id,
            bool answer_authorization);
  ~WsSession() override;

  // Completes the upgrade (answering `request`), then sends hello and reads.
  void Run(boost::beast::http::request<boost::beast::http::empty_body> request);

  // ClientSink (on the strand).
  void SendText(std::shared_ptr<const std::string> frame) override;
  void SendStored(std::shared_ptr<const std::string> frame, int64_t from, int64_t to,
                  int64_t edge_received_us) override;
  size_t QueuedBytes() const override { return queued_bytes_; }
  void Close(uint16_t code, std::string reason) override;
  void Post(std::function<void()> fn) override;
  std::weak_ptr<ClientSink> WeakSelf() override { return this->shared_from_this(); }
  void SetReadPaused(bool paused) override;
  void SetExpiry(int64_t expires_at_ms) override;

  // LocalConnection (any thread).
  void Deliver(std::shared_ptr<const std::string> frame) override;
  void DeliverStored(std::shared_ptr<const std::string> frame, int64_t useq, bool own_copy,
                     int64_t edge_received_us) override;
  void DeliverReceipt(std::shared_ptr<const std::string> frame) override;
  void Reattach() override;
  void Kick(uint16_t close_code, std::string reason) override;

 private:
  void OnAccept(boost::beast::error_code ec);
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void DoWrite();
  void OnWrite(boost::beast::error_code ec, size_t bytes);
  void DoClose();
  void End();

  // permessage-deflate is never negotiated: without it the stream is smaller.
  using Ws = boost::beast::websocket::stream<WsLayer<Stream>, /*deflateSupported=*/false>;
  Ws ws_;
  ReadBuffer<Ws> buffer_{ws_};
  boost::asio::steady_timer close_timer_;
  boost::asio::steady_timer expiry_timer_;
  int64_t expires_at_ms_ = 0;  // the token's, with skew; 0: none (or kept past it)
  int64_t age_limit_ms_ = 0;   // --max_connection_age_s from the upgrade; 0: none
  EdgeContext* context_;
  ConnectionLogic logic_;
  const bool answer_authorization_;
  // A queued frame; from..to: the useqs of the user's stream it carries
  // (0: none), reported to the logic once written.
  struct Outgoing {
    std::shared_ptr<const std::string> frame;
    int64_t from = 0;
    int64_t to = 0;
    int64_t edge_received_us = 0;  // a live delivery: its latency is observed once written
  };
  void Enqueue(Outgoing out);
  Fifo<Outgoing> queue_;
  size_t queued_bytes_ = 0;
  bool accepted_ = false;
  bool writing_ = false;
  bool reading_ = false;
  bool read_paused_ = false;
  // While reads are paused no operation holds the session; this does, until
  // reads resume or the connection ends.
  std::shared_ptr<WsSession<Stream>> keep_alive_while_paused_;
  bool closing_ = false;     // Close() called: no more reads or frames
  bool close_sent_ = false;  // async_close started
  bool ended_ = false;
  uint16_t close_code_ = kCloseNormal;
  std::string close_reason_;
  // The open and close bookkeeping, shared with PlainWsSession (session_record.h);
  // the frame counts are for its close line.
  SessionRecord record_;
  uint64_t frames_in_ = 0;
  uint64_t frames_out_ = 0;
};

extern template class WsSession<TlsStream>;

}  // namespace chat::edge

#endif  // CHAT_EDGE_WS_SESSION_H_

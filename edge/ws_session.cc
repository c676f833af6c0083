#include "edge/ws_session.h"

#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/ssl.hpp"
#include "boost/beast/websocket/ssl.hpp"
#include "spdlog/spdlog.h"

namespace chat::edge {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;

template <class Stream>
WsSession<Stream>::WsSession(Stream&& stream, EdgeContext* context, Identity identity,
                             std::string connection_id, bool answer_authorization)
    : ws_(WsLayerOf<Stream>::From(std::move(stream))),
      close_timer_(ws_.get_executor()),
      expiry_timer_(ws_.get_executor()),
      context_(context),
      logic_(std::move(identity.user), std::move(connection_id), &context->logic, context->messages,
             context->directory, context->hub, this, context->clock, context->tokens),
      answer_authorization_(answer_authorization) {
  logic_.set_subject(std::move(identity.subject));
  if (identity.expires_at_s > 0 && context->tokens != nullptr) {
    expires_at_ms_ = ExpiryMs(identity.expires_at_s, context->tokens->clock_skew_s());
  }
  if (context->max_connection_age.count() > 0) {
    age_limit_ms_ =
        context->clock->NowMs() +
        std::chrono::duration_cast<std::chrono::milliseconds>(context->max_connection_age).count();
  }
}

template <class Stream>
WsSession<Stream>::~WsSession() {
  End();
}

template <class Stream>
void WsSession<Stream>::Run(http::request<http::empty_body> request) {
  if constexpr (kIsTls<Stream>) {
    beast::get_lowest_layer(ws_).expires_never();  // the websocket timeouts take over
  }
  websocket::stream_base::timeout timeouts;
  timeouts.handshake_timeout = context_->handshake_timeout;
  timeouts.idle_timeout = std::chrono::seconds(context_->logic.idle_timeout_s);
  timeouts.keep_alive_pings = true;
  ws_.set_option(timeouts);
  ws_.read_message_max(context_->logic.max_message_bytes);
  ws_.auto_fragment(false);
  const bool answer = answer_authorization_;
  ws_.set_option(websocket::stream_base::decorator([answer](websocket::response_type& res) {
    res.set(http::field::server, "chat-edge");
    if (answer) res.set(http::field::sec_websocket_protocol, "authorization");
  }));
  ws_.async_accept(request,
                   beast::bind_front_handler(&WsSession::OnAccept, this->shared_from_this()));
}

template <class Stream>
void WsSession<Stream>::OnAccept(beast::error_code ec) {
  if (ec) {
    spdlog::debug("{}: accept: {}", logic_.connection_id(), ec.message());
    End();
    return;
  }
  accepted_ = true;
  beast::error_code no_peer;  // an unknown address logs as 0.0.0.0:0
  record_.Opened(*context_, logic_,
                 RawSocket(beast::get_lowest_layer(ws_)).remote_endpoint(no_peer),
                 this->weak_from_this());
  SetExpiry(expires_at_ms_);
  logic_.Start();  // attaches, then the hello
  if (context_->shutting_down) {
    Close(kCloseGoingAway, "server shutting down");
    return;
  }
  DoRead();
}

template <class Stream>
void WsSession<Stream>::DoRead() {
  if (reading_ || read_paused_ || closing_) return;
  reading_ = true;
  ws_.async_read(buffer_, beast::bind_front_handler(&WsSession::OnRead, this->shared_from_this()));
}

template <class Stream>
void WsSession<Stream>::OnRead(beast::error_code ec, size_t bytes) {
  reading_ = false;
  if (ec) {
    // Beast has already answered protocol violations with the right close
    // code (1009 too big, 1007 bad UTF-8, 1002 protocol).
    if (ec != websocket::error::closed && ec != net::error::operation_aborted &&
        ec != beast::error::timeout) {
      spdlog::debug("{}: read: {}", logic_.connection_id(), ec.message());
    }
    End();
    return;
  }
  ++frames_in_;
  context_->metrics->FrameReceived();
  if (ws_.got_text()) {
    const auto data = buffer_.cdata();
    logic_.OnText(std::string_view(static_cast<const char*>(data.data()), data.size()));
  } else {
    logic_.OnBinary();
  }
  buffer_.consume(bytes);  // gives a large message's memory back
  DoRead();
}

template <class Stream>
void WsSession<Stream>::SetReadPaused(bool paused) {
  read_paused_ = paused;
  if (paused) {
    if (!ended_) keep_alive_while_paused_ = this->shared_from_this();
    return;
  }
  // Reset last: it may hold the only reference, and DoRead takes its own.
  auto keep = std::move(keep_alive_while_paused_);
  DoRead();
}

template <class Stream>
void WsSession<Stream>::SetExpiry(int64_t expires_at_ms) {
  // --on_token_expiry=keep: like API Gateway, the token only had to be good
  // at the handshake; the age limit still ends the connection.
  if (context_->keep_on_token_expiry) expires_at_ms = 0;
  expires_at_ms_ = expires_at_ms;
  expiry_timer_.cancel();
  const int64_t deadline_ms = expires_at_ms == 0   ? age_limit_ms_
                              : age_limit_ms_ == 0 ? expires_at_ms
                                                   : std::min(expires_at_ms, age_limit_ms_);
  if (deadline_ms == 0 || ended_) return;
  // Waits at most a day at a time (a far exp must not overflow the clock).
  constexpr int64_t kMaxWaitMs = 24 * 3600 * 1000;
  const int64_t left_ms = deadline_ms - context_->clock->NowMs();
  expiry_timer_.expires_after(
      std::chrono::milliseconds(std::clamp<int64_t>(left_ms, 0, kMaxWaitMs)));
  expiry_timer_.async_wait(
      [self = this->shared_from_this(), expires_at_ms, deadline_ms](beast::error_code ec) {
        if (ec || self->expires_at_ms_ != expires_at_ms) return;  // refreshed meanwhile
        const int64_t now = self->context_->clock->NowMs();
        if (now < deadline_ms) {
          self->SetExpiry(expires_at_ms);  // not yet: wait again
          return;
        }
        if (expires_at_ms != 0 && now >= expires_at_ms) {
          self->Close(kClosePolicy, "token expired");
        } else {
          // Going away, not a policy violation: the client did nothing wrong
          // and should reconnect (as after API Gateway's 2-hour limit).
          self->Close(kCloseGoingAway, "connection age limit reached");
        }
      });
}

template <class Stream>
void WsSession<Stream>::SendText(std::shared_ptr<const std::string> frame) {
  Enqueue({std::move(frame), 0, 0});
}

template <class Stream>
void WsSession<Stream>::SendStored(std::shared_ptr<const std::string> frame, int64_t from,
                                   int64_t to, int64_t edge_received_us) {
  Enqueue({std::move(frame), from, to, edge_received_us});
}

template <class Stream>
void WsSession<Stream>::Enqueue(Outgoing out) {
  if (closing_ || ended_) return;
  if (queued_bytes_ + out.frame->size() > context_->max_outbound_bytes && !queue_.empty()) {
    // The client is not reading fast enough; dropping it protects everyone else.
    Close(kCloseSlowConsumer, "slow consumer: outbound queue full");
    return;
  }
  queued_bytes_ += out.frame->size();
  queue_.push_back(std::move(out));
  if (!writing_ && accepted_) DoWrite();
}

template <class Stream>
void WsSession<Stream>::DoWrite() {
  writing_ = true;
  ws_.text(true);
  const std::string& frame = *queue_.front().frame;
  ws_.async_write(net::buffer(frame),
                  beast::bind_front_handler(&WsSession::OnWrite, this->shared_from_this()));
}

template <class Stream>
void WsSession<Stream>::OnWrite(beast::error_code ec, size_t) {
  writing_ = false;
  int64_t from = 0, to = 0, received_us = 0;
  if (!queue_.empty()) {
    queued_bytes_ -= queue_.front().frame->size();
    from = queue_.front().from;
    to = queue_.front().to;
    received_us = queue_.front().edge_received_us;
    queue_.pop_front();
  }
  if (ec) {
    spdlog::debug("{}: write: {}", logic_.connection_id(), ec.message());
    End();
    return;
  }
  ++frames_out_;
  context_->metrics->FrameSent();
  if (received_us > 0) context_->metrics->DeliveryWritten(received_us);
  // Written to the socket: only now has the message reached the user.
  if (to > 0) logic_.OnWritten(from, to);
  if (!queue_.empty()) {
    DoWrite();
  } else if (closing_ && !close_sent_) {
    DoClose();
  } else {
    logic_.OnQueueEmpty();
  }
}

template <class Stream>
void WsSession<Stream>::Close(uint16_t code, std::string reason) {
  if (closing_ || ended_) return;
  spdlog::debug("{}: closing with {} ({})", logic_.connection_id(), code, reason);
  closing_ = true;
  close_code_ = code;
  close_reason_ = std::move(reason);
  if (code == kCloseSlowConsumer) {
    context_->metrics->SlowConsumerClose();
    // Nothing queued will reach a client that does not read.
    while (queue_.size() > (writing_ ? 1u : 0u)) {
      queued_bytes_ -= queue_.back().frame->size();
      queue_.pop_back();
    }
  }
  close_timer_.expires_after(context_->close_grace);
  close_timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
    if (ec) return;
    beast::error_code ignored;
    RawSocket(beast::get_lowest_layer(self->ws_)).close(ignored);
  });
  if (!accepted_) return;  // OnAccept will see closing_
  // A queued goodbye (e.g. the last error) goes out before the close frame,
  // except for a slow consumer, whose pending write may never finish.
  if ((!writing_ && queue_.empty()) || code == kCloseSlowConsumer) DoClose();
}

template <class Stream>
void WsSession<Stream>::DoClose() {
  close_sent_ = true;
  ws_.async_close(
      websocket::close_reason(static_cast<websocket::close_code>(close_code_), close_reason_),
      [self = this->shared_from_this()](beast::error_code) {
        // Beast waited for the peer's close frame and, with TLS, exchanged
        // close_notify (or the grace timer cut the socket): the connection
        // is over.
        self->End();
      });
}

template <class Stream>
void WsSession<Stream>::End() {
  if (ended_) return;
  if (accepted_) {
    // The code this edge sent, else the peer's, else 1006: no close frame.
    const uint16_t peer_code = static_cast<uint16_t>(ws_.reason().code);
    const uint16_t code = closing_ ? close_code_ : peer_code != 0 ? peer_code : 1006;
    record_.Closed(*context_, logic_, code, frames_in_, frames_out_);
  }
  ended_ = true;
  closing_ = true;
  spdlog::debug("{}: closed", logic_.connection_id());
  close_timer_.cancel();
  expiry_timer_.cancel();
  auto keep = std::move(keep_alive_while_paused_);  // released when End returns
  beast::error_code ignored;
  RawSocket(beast::get_lowest_layer(ws_)).close(ignored);
  SessionRecord::Release(*context_, logic_);
}

template <class Stream>
void WsSession<Stream>::Post(std::function<void()> fn) {
  net::post(ws_.get_executor(), [self = this->shared_from_this(), fn = std::move(fn)] { fn(); });
}

template <class Stream>
void WsSession<Stream>::Deliver(std::shared_ptr<const std::string> frame) {
  net::post(ws_.get_executor(),
            [self = this->shared_from_this(), frame = std::move(frame)]() mutable {
              self->SendText(std::move(frame));
            });
}

template <class Stream>
void WsSession<Stream>::DeliverStored(std::shared_ptr<const std::string> frame, int64_t useq,
                                      bool own_copy, int64_t edge_received_us) {
  net::post(ws_.get_executor(), [self = this->shared_from_this(), frame = std::move(frame), useq,
                                 own_copy, edge_received_us]() mutable {
    if (!self->ended_) {
      self->logic_.OnStored(std::move(frame), useq, own_copy, edge_received_us);
    }
  });
}

template <class Stream>
void WsSession<Stream>::DeliverReceipt(std::shared_ptr<const std::string> frame) {
  net::post(ws_.get_executor(),
            [self = this->shared_from_this(), frame = std::move(frame)]() mutable {
              if (!self->ended_) self->logic_.OnReceipt(std::move(frame));
            });
}

template <class Stream>
void WsSession<Stream>::Reattach() {
  net::post(ws_.get_executor(), [self = this->shared_from_this()] {
    if (!self->ended_) self->logic_.Reattach();
  });
}

template <class Stream>
void WsSession<Stream>::Kick(uint16_t close_code, std::string reason) {
  net::post(ws_.get_executor(),
            [self = this->shared_from_this(), close_code, reason = std::move(reason)]() mutable {
              self->Close(close_code, std::move(reason));
            });
}

template class WsSession<TlsStream>;

}  // namespace chat::edge

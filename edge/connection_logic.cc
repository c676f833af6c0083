#include "edge/connection_logic.h"

// Copies of a message's text on the edge (counted from the code; plain TCP,
// no permessage-deflate; TLS adds its encryption on either side).
//
// Socket read to EdgeLink write, 3:
//   1. ParseRequest: Boost.JSON builds a DOM (in the frame's scratch memory);
//      "message" becomes a json::string.
//   2. StringField: that json::string into the SendAction's std::string.
//      From there it is moved: SendAction -> OutgoingSend -> EdgeSend (set_message
//      with an rvalue) -> EdgeUp (protobuf move, no arena: a swap).
//   3. gRPC serializes the EdgeUp into its slices.
//   Before 1, on a plain socket the kernel copies the bytes into the I/O
//   thread's scratch buffer; a frame that arrived whole in one read is
//   unmasked there in place and OnText sees a string_view into it (no copy);
//   only a frame or message split across reads is gathered into the parser's
//   buffer first (one more copy, freed once delivered). With TLS, Beast reads
//   into its small read buffer and copies into the session's ReadBuffer.
//
// EdgeLink read to socket write, 3, once per delivery whatever the number of
// the recipient's connections on this edge:
//   1. gRPC parses the EdgeDown from its slices.
//      MessageLink takes the strings out of the Delivery (moved, not copied).
//   2. EncodeDelivery: the text into the Boost.JSON DOM.
//   3. json::serialize writes the escaped frame into a std::string.
//      From there one shared_ptr<const std::string> is shared by every target
//      connection: the strand hop, the catch-up holds and the write queue pass
//      the pointer, and the session writes it in one gather write (frame
//      header + payload, several queued frames per write; Beast does the same
//      with TLS).

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace chat::edge {

ConnectionLogic::ConnectionLogic(std::string user, std::string connection_id,
                                 const LogicConfig* config, MessageBackend* messages,
                                 DirectoryBackend* directory, LocalHub* hub, ClientSink* sink,
                                 const Clock* clock, TokenVerifier* tokens)
    : user_(std::move(user)),
      connection_id_(std::move(connection_id)),
      config_(config),
      messages_(messages),
      directory_(directory),
      hub_(hub),
      sink_(sink),
      clock_(clock),
      tokens_(tokens),
      rate_(config->messages_per_second, std::max(config->rate_burst, 1), clock->NowMs()),
      bad_frames_(config->bad_frames_max, config->bad_frames_window_ms),
      rate_strikes_(config->rate_limit_strikes, config->rate_limit_window_ms) {}

template <typename T, typename Fn>
Done<T> ConnectionLogic::OnStrand(Fn fn) {
  return [this, weak = sink_->WeakSelf(), fn = std::move(fn)](absl::StatusOr<T> answer) mutable {
    auto sink = weak.lock();
    if (sink == nullptr) return;
    sink->Post([this, fn = std::move(fn), answer = std::move(answer)]() mutable {
      if (closed_) return;
      fn(std::move(answer));
    });
  };
}

void ConnectionLogic::Start() { Attach(-1); }

void ConnectionLogic::Attach(int64_t after_useq) {
  if (closed_ || attach_pending_) return;
  attach_pending_ = true;
  messages_->Attach(connection_id_, user_, after_useq,
                    OnStrand<AttachInfo>([this, after_useq](absl::StatusOr<AttachInfo> info) {
                      OnAttached(std::move(info), after_useq);
                      if (reattach_again_) {
                        reattach_again_ = false;
                        Reattach();
                      }
                    }));
}

void ConnectionLogic::OnAttached(absl::StatusOr<AttachInfo> info, int64_t after_useq) {
  attach_pending_ = false;
  if (!hello_sent_) {
    // Without message-service the connection still opens: sends fail as
    // unavailable until the link is back, and then it attaches.
    hello_sent_ = true;
    if (info.ok()) epoch_ = info->epoch;
    Send(EncodeHello(
        user_, connection_id_, config_->server_id,
        {config_->max_message_bytes, config_->messages_per_second, config_->idle_timeout_s},
        info.ok() ? info->epoch : ""));
  }
  if (!info.ok()) return;
  if (!epoch_.empty() && info->epoch != epoch_) {
    // The store behind message-service was replaced: the numbers this client
    // holds mean nothing there. It reconnects, gets the new epoch in hello
    // and its next sync starts over.
    closed_ = true;
    sink_->Close(kCloseServiceRestart, "message store replaced; reconnect and sync");
    return;
  }
  epoch_ = info->epoch;
  attached_ = true;
  if (after_useq < 0) {
    // New: everything after the user's reached mark that reached no
    // connection of theirs is pushed, oldest first.
    seen_useq_ = std::max(seen_useq_, info->last_useq);
    if (info->reached_useq < info->last_useq) BeginCatchUp(true, info->reached_useq);
  } else if (info->last_useq > after_useq) {
    // Back after a link outage: what was committed meanwhile.
    BeginCatchUp(false, after_useq);
  }
}

void ConnectionLogic::Reattach() {
  if (closed_) return;
  if (attach_pending_) {
    // The attach under way went to the links up when it left; the one that
    // just changed may not have had it.
    reattach_again_ = true;
    return;
  }
  if (!hello_sent_) return;  // a new connection's own attach is under way
  attached_ = false;
  Attach(seen_useq_);
}

void ConnectionLogic::BeginCatchUp(bool unread_only, int64_t after) {
  if (catching_up_) {
    // Already paging: continue from the lower point.
    catch_up_after_ = std::min(catch_up_after_, after);
    return;
  }
  catching_up_ = true;
  last_page_ = false;
  catch_up_unread_ = unread_only;
  catch_up_after_ = after;
  caught_up_to_ = after;
  FetchPage();
}

void ConnectionLogic::FetchPage() {
  if (page_in_flight_ || closed_) return;
  page_in_flight_ = true;
  auto done =
      OnStrand<SyncReply>([this](absl::StatusOr<SyncReply> page) { OnPage(std::move(page)); });
  if (catch_up_unread_) {
    messages_->Unread(user_, catch_up_after_, config_->push_page_limit, std::move(done));
  } else {
    messages_->Sync(user_, catch_up_after_, config_->push_page_limit, "", std::move(done));
  }
}

void ConnectionLogic::OnPage(absl::StatusOr<SyncReply> page) {
  page_in_flight_ = false;
  if (!page.ok()) {
    // The path broke again: the next attach resumes from what was written.
    while (!pushing_.empty()) pushing_.pop_front();
    EndCatchUp();
    return;
  }
  for (const MessageObject& m : page->messages) {
    caught_up_to_ = std::max(caught_up_to_, m.useq);
    // Copies of the user's own messages from other connections are only for
    // version 2 connections.
    if (m.sent_by == user_ && m.send_to != user_ &&
        (!v2_ || std::find(sent_here_.begin(), sent_here_.end(), m.useq) != sent_here_.end())) {
      continue;
    }
    pushing_.push_back({std::make_shared<const std::string>(EncodeDelivery(m)), m.useq, 0});
  }
  catch_up_after_ = std::max(catch_up_after_, page->useq);
  last_page_ = !page->more;
  PumpCatchUp();
}

void ConnectionLogic::PumpCatchUp() {
  // A small window in the socket's queue at a time, whatever the queue's
  // size: pushing never makes a slow consumer.
  constexpr size_t kWindowBytes = 16 << 10;
  while (!pushing_.empty()) {
    const size_t queued = sink_->QueuedBytes();
    if (queued > 0 && queued + pushing_.front().frame->size() > kWindowBytes) return;
    Held next = std::move(pushing_.front());
    pushing_.pop_front();
    sink_->SendStored(std::move(next.frame), next.useq, next.useq, next.edge_received_us);
    if (closed_) return;
  }
  if (page_in_flight_) return;
  if (last_page_) {
    EndCatchUp();
  } else if (sink_->QueuedBytes() == 0) {
    FetchPage();  // else when the queue ran empty
  }
}

void ConnectionLogic::EndCatchUp() {
  catching_up_ = false;
  std::vector<Held> held;
  held.swap(held_);
  held_bytes_ = 0;
  for (Held& h : held) {
    if (h.useq <= caught_up_to_) continue;  // a page carried it already
    sink_->SendStored(std::move(h.frame), h.useq, h.useq, h.edge_received_us);
  }
}

void ConnectionLogic::OnQueueEmpty() {
  if (catching_up_) PumpCatchUp();
}

void ConnectionLogic::OnWritten(int64_t from, int64_t to) {
  seen_useq_ = std::max(seen_useq_, to);
  messages_->Reached(user_, from, to);
}

void ConnectionLogic::OnStored(std::shared_ptr<const std::string> frame, int64_t useq,
                               bool own_copy, int64_t edge_received_us) {
  if (closed_ || !hello_sent_) return;
  if (own_copy && !v2_) return;
  if (catching_up_) {
    held_bytes_ += frame->size();
    if (held_bytes_ > config_->max_held_bytes) {
      closed_ = true;
      sink_->Close(kCloseSlowConsumer, "slow consumer: too much arrived while catching up");
      return;
    }
    held_.push_back({std::move(frame), useq, edge_received_us});
    return;
  }
  sink_->SendStored(std::move(frame), useq, useq, edge_received_us);
}

void ConnectionLogic::OnReceipt(std::shared_ptr<const std::string> frame) {
  if (closed_ || !v2_) return;
  sink_->SendText(std::move(frame));
}

void ConnectionLogic::SendStoreError(const absl::Status& status, const RequestId& request_id) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      SendError(ErrorCode::kBadRequest, std::string(status.message()), request_id);
      return;
    case absl::StatusCode::kNotFound:
      SendError(ErrorCode::kUnknownUser, std::string(status.message()), request_id);
      return;
    default:
      SendError(ErrorCode::kUnavailable,
                absl::StrCat("message store unavailable: ", status.message()), request_id);
  }
}

void ConnectionLogic::HandleSync(const SyncAction& action, RequestId request_id) {
  // Version 2 from here on, before the store is read: nothing committed
  // meanwhile is missed.
  v2_ = true;
  messages_->Sync(user_, action.since, action.limit, action.epoch,
                  OnStrand<SyncReply>([this, request_id = std::move(request_id)](
                                          absl::StatusOr<SyncReply> reply) {
                    if (!reply.ok()) return SendStoreError(reply.status(), request_id);
                    std::string frame = EncodeSynced(&*reply, request_id);
                    const int64_t from = reply->messages.empty() ? 0 : reply->messages.front().useq;
                    const int64_t to = reply->messages.empty() ? 0 : reply->messages.back().useq;
                    if (closed_) return;
                    sink_->SendStored(std::make_shared<const std::string>(std::move(frame)), from,
                                      to, /*edge_received_us=*/0);
                  }));
}

void ConnectionLogic::HandleHistory(const HistoryAction& action, RequestId request_id) {
  messages_->History(user_, action.with, action.before, action.limit,
                     OnStrand<HistoryReply>([this, request_id = std::move(request_id)](
                                                absl::StatusOr<HistoryReply> reply) {
                       if (!reply.ok()) return SendStoreError(reply.status(), request_id);
                       Send(EncodeHistory(std::move(*reply), request_id));
                     }));
}

void ConnectionLogic::HandleConversations(const ConversationsAction& action, RequestId request_id) {
  messages_->Conversations(user_, action.limit, action.after,
                           OnStrand<ConversationsReply>([this, request_id = std::move(request_id)](
                                                            absl::StatusOr<ConversationsReply> r) {
                             if (!r.ok()) return SendStoreError(r.status(), request_id);
                             Send(EncodeConversations(*r, request_id));
                           }));
}

void ConnectionLogic::HandleRead(const ReadAction& action, RequestId request_id) {
  messages_->MarkRead(
      user_, action.with, action.seq,
      OnStrand<ReadReply>([this, with = action.with,
                           request_id = std::move(request_id)](absl::StatusOr<ReadReply> r) {
        if (!r.ok()) return SendStoreError(r.status(), request_id);
        if (request_id.has_value()) Send(EncodeReadMark(with, r->read_seq, request_id));
      }));
}

void ConnectionLogic::Send(std::string frame) {
  if (closed_) return;
  sink_->SendText(std::make_shared<const std::string>(std::move(frame)));
}

void ConnectionLogic::SendError(ErrorCode code, std::string_view message,
                                const RequestId& request_id) {
  Send(EncodeError(code, message, request_id));
}

void ConnectionLogic::CountBadFrame() {
  if (closed_) return;
  if (bad_frames_.AddAndCheck(clock_->NowMs())) {
    closed_ = true;
    sink_->Close(kClosePolicy, "too many bad frames");
  }
}

void ConnectionLogic::OnBinary() {
  if (closed_) return;
  SendError(ErrorCode::kBadRequest, "binary frames are not supported; send JSON text frames",
            std::nullopt);
  CountBadFrame();
}

void ConnectionLogic::OnText(std::string_view text) {
  if (closed_) return;
  auto parsed = ParseRequest(text);
  if (auto* error = std::get_if<RequestError>(&parsed)) {
    SendError(error->code, error->message, error->request_id);
    CountBadFrame();
    return;
  }
  Request& request = std::get<Request>(parsed);
  if (!rate_.TryTake(clock_->NowMs())) {
    if (rate_strikes_.AddAndCheck(clock_->NowMs())) {
      closed_ = true;
      if (config_->metrics != nullptr) config_->metrics->RateLimitClose();
      sink_->Close(kClosePolicy, "rate limit exceeded repeatedly");
      return;
    }
    if (config_->metrics != nullptr && std::holds_alternative<SendAction>(request.action)) {
      config_->metrics->Send(SendOutcome::kRateLimited);
    }
    SendError(ErrorCode::kRateLimited,
              absl::StrCat("more than ", config_->messages_per_second,
                           " messages per second; slow down and retry"),
              request.request_id);
    return;
  }
  std::visit(
      [&](auto& action) {
        using T = std::decay_t<decltype(action)>;
        if constexpr (std::is_same_v<T, SendAction>) {
          HandleSend(std::move(action), std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, UsersAction>) {
          HandleUsers(action, std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, WatchAction>) {
          HandleWatch(std::move(action), std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, RefreshAction>) {
          HandleRefresh(std::move(action), std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, SyncAction>) {
          HandleSync(action, std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, HistoryAction>) {
          HandleHistory(action, std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, ConversationsAction>) {
          HandleConversations(action, std::move(request.request_id));
        } else if constexpr (std::is_same_v<T, ReadAction>) {
          HandleRead(action, std::move(request.request_id));
        } else {
          Send(EncodePong(clock_->NowMs(), request.request_id));
        }
      },
      request.action);
}

void ConnectionLogic::HandleSend(SendAction action, RequestId request_id) {
  if (action.sent_by.has_value() && *action.sent_by != user_) {
    if (config_->metrics != nullptr) config_->metrics->Send(SendOutcome::kForbidden);
    SendError(ErrorCode::kForbidden, absl::StrCat("sent_by must be your own name ('", user_, "')"),
              request_id);
    return;
  }
  if (action.message.size() > config_->max_message_bytes) {
    if (config_->metrics != nullptr) config_->metrics->Send(SendOutcome::kBadRequest);
    SendError(ErrorCode::kBadRequest, "'message' is too long", request_id);
    return;
  }
  const int inflight = inflight_sends_.fetch_add(1) + 1;
  if (inflight >= config_->max_inflight_sends && !read_paused_) {
    // Back-pressure: stop reading this socket until answers come back.
    read_paused_ = true;
    // Answers counted down on the backend's thread before it could see the
    // flag cannot resume reading: look again now that the flag is set.
    if (inflight_sends_.load() < config_->max_inflight_sends / 2) {
      read_paused_ = false;
    } else {
      sink_->SetReadPaused(true);
    }
  }
  OutgoingSend send{user_,          std::move(action.send_to),         std::move(action.message),
                    connection_id_, std::move(action.idempotency_key), WallMicros()};
  // The metrics outlive every connection; `this` may be gone by the answer.
  messages_->Send(std::move(send), [this, weak = sink_->WeakSelf(), metrics = config_->metrics,
                                    request_id = std::move(request_id)](const SendResult& result) {
    // Counted on whichever thread answers: one atomic add.
    if (metrics != nullptr) metrics->Send(OutcomeOf(result.status));
    auto sink = weak.lock();
    if (sink == nullptr) return;
    bool counted = false;
    if (result.status.ok() && !request_id.has_value()) {
      // Nothing to tell the client: the common case takes no strand hop
      // unless reading must resume.
      const int left = inflight_sends_.fetch_sub(1) - 1;
      if (!read_paused_.load() || left >= config_->max_inflight_sends / 2) return;
      counted = true;
    }
    sink->Post([this, result, request_id, counted] { OnSendResult(result, request_id, counted); });
  });
}

void ConnectionLogic::OnSendResult(const SendResult& result, const RequestId& request_id,
                                   bool counted) {
  const int inflight = counted ? inflight_sends_.load() : inflight_sends_.fetch_sub(1) - 1;
  if (read_paused_ && inflight < config_->max_inflight_sends / 2) {
    read_paused_ = false;
    sink_->SetReadPaused(false);
  }
  if (!result.status.ok()) {
    const ErrorCode code = SendErrorCode(result.status.code());
    std::string_view message(result.status.message().data(), result.status.message().size());
    if (code == ErrorCode::kUnavailable && message.empty()) {
      message = "message service unavailable; nothing was delivered";
    }
    SendError(code, message, request_id);
    return;
  }
  if (result.useq > seen_useq_ && !result.duplicate) {
    constexpr size_t kMaxSentHere = 256;
    if (sent_here_.size() == kMaxSentHere) sent_here_.erase(sent_here_.begin());
    sent_here_.push_back(result.useq);
  }
  if (request_id.has_value()) Send(EncodeSent(request_id, result));
}

void ConnectionLogic::HandleUsers(const UsersAction& action, RequestId request_id) {
  directory_->ListUsers(
      action.online_only, action.limit, action.after,
      [this, weak = sink_->WeakSelf(),
       request_id = std::move(request_id)](absl::StatusOr<UserPage> page) {
        auto sink = weak.lock();
        if (sink == nullptr) return;
        sink->Post([this, page = std::move(page), request_id] {
          if (!page.ok()) {
            if (page.status().code() == absl::StatusCode::kInvalidArgument) {
              // A bad `after` or `limit`: the client's mistake, not an outage.
              SendError(ErrorCode::kBadRequest, std::string(page.status().message()), request_id);
              return;
            }
            SendError(ErrorCode::kUnavailable,
                      absl::StrCat("connection service unavailable: ", page.status().message()),
                      request_id);
            return;
          }
          std::vector<Contact> contacts;
          contacts.reserve(page->users.size());
          for (auto& u : page->users) contacts.push_back({u.name, u.online});
          Send(EncodeUsers(contacts, page->next, request_id));
        });
      });
}

void ConnectionLogic::HandleWatch(WatchAction action, RequestId request_id) {
  hub_->SetWatch(connection_id_, action.users);
  Send(EncodeWatching(action.users, request_id));
}

void ConnectionLogic::HandleRefresh(RefreshAction action, RequestId request_id) {
  if (tokens_ == nullptr) {
    SendError(ErrorCode::kUnknownAction,
              "no action named 'refresh' (identities are not tokens on this edge)", request_id);
    CountBadFrame();
    return;
  }
  tokens_->Verify(
      std::move(action.token), [this, weak = sink_->WeakSelf(), request_id = std::move(request_id)](
                                   absl::StatusOr<Identity> identity) {
        auto sink = weak.lock();
        if (sink == nullptr) return;
        sink->Post([this, identity = std::move(identity), request_id] {
          if (!identity.ok()) {
            SendError(ErrorCode::kForbidden,
                      absl::StrCat("token refused: ", identity.status().message()), request_id);
            return;
          }
          const bool same_subject = !subject_.empty() && identity->subject == subject_;
          if (identity->user != user_ && !same_subject) {
            SendError(ErrorCode::kForbidden, "the new token names another user", request_id);
            return;
          }
          sink_->SetExpiry(ExpiryMs(identity->expires_at_s, tokens_->clock_skew_s()));
          Send(EncodeRefreshed(identity->expires_at_s, request_id));
        });
      });
}

void ConnectionLogic::OnClosed() {
  closed_ = true;
  hub_->SetWatch(connection_id_, {});
  messages_->Detach(connection_id_);
}

}  // namespace chat::edge

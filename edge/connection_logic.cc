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
#include <set>

#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace chat::edge {

struct ConnectionLogic::Rare {
  explicit Rare(const LogicConfig& config)
      : bad_frames(config.bad_frames_max, config.bad_frames_window_ms),
        rate_strikes(config.rate_limit_strikes, config.rate_limit_window_ms) {}

  std::string subject;  // jwt mode, when it is not the connection's name
  WindowCounter bad_frames;
  WindowCounter rate_strikes;
  // useqs of messages this connection sent (answered with `sent`, never
  // written as frames): a catch-up does not echo them back. Small, bounded.
  std::vector<int64_t> sent_here;
};

struct ConnectionLogic::CatchUp {
  struct Held {
    std::shared_ptr<const std::string> frame;
    int64_t useq;
    int64_t edge_received_us;
  };
  bool unread = true;  // pushes after hello (else: missed during a link outage)
  bool page_in_flight = false;
  bool last_page = false;  // the page being written is the last
  int64_t after = 0;
  int64_t caught_up_to = 0;  // highest useq a page held
  std::vector<Held> held;    // live frames waiting behind the catch-up
  Fifo<Held> pushing;        // the current page, fed to the socket a window at a time
  size_t held_bytes = 0;
};

namespace {

// Every connection is told the same epoch (until the store is replaced):
// one copy of it is kept for them all, rather than one per connection. The
// copies are never freed: there is one per store replacement.
const std::string* InternEpoch(const std::string& epoch) {
  ABSL_CONST_INIT static absl::Mutex mu(absl::kConstInit);
  static auto* seen = new std::set<std::string>();
  absl::MutexLock lock(&mu);
  return &*seen->insert(epoch).first;
}

}  // namespace

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
      rate_tokens_(std::max(config->rate_burst, 1)),
      rate_last_ms_(clock->NowMs()) {}

ConnectionLogic::~ConnectionLogic() = default;

ConnectionLogic::Rare& ConnectionLogic::rare() {
  if (rare_ == nullptr) rare_ = std::make_unique<Rare>(*config_);
  return *rare_;
}

void ConnectionLogic::set_subject(std::string subject) {
  subject_is_user_ = !subject.empty() && subject == user_;
  if (subject.empty() || subject_is_user_) {
    if (rare_ != nullptr) rare_->subject.clear();
    return;
  }
  rare().subject = std::move(subject);
}

template <typename T, typename Fn>
Done<T> ConnectionLogic::OnStrand(Fn fn) {
  return [this, weak = sink_->WeakSelf(), fn = std::move(fn)](absl::StatusOr<T> answer) mutable {
    auto sink = weak.lock();
    if (sink == nullptr) return;
    // Answers come on the message link's thread, which holds no lock here.
    sink->RunOrPost([this, fn = std::move(fn), answer = std::move(answer)]() mutable {
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
    if (info.ok()) epoch_ = InternEpoch(info->epoch);
    Send(EncodeHello(
        user_, connection_id_, config_->server_id,
        {config_->max_message_bytes, config_->messages_per_second, config_->idle_timeout_s},
        info.ok() ? info->epoch : ""));
  }
  if (!info.ok()) return;
  if (epoch_ != nullptr && !epoch_->empty() && info->epoch != *epoch_) {
    // The store behind message-service was replaced: the numbers this client
    // holds mean nothing there. It reconnects, gets the new epoch in hello
    // and its next sync starts over.
    closed_ = true;
    sink_->Close(kCloseServiceRestart, "message store replaced; reconnect and sync");
    return;
  }
  if (epoch_ == nullptr || *epoch_ != info->epoch) epoch_ = InternEpoch(info->epoch);
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
  if (catch_up_ != nullptr) {
    // Already paging: continue from the lower point.
    catch_up_->after = std::min(catch_up_->after, after);
    return;
  }
  catch_up_ = std::make_unique<CatchUp>();
  catch_up_->unread = unread_only;
  catch_up_->after = after;
  catch_up_->caught_up_to = after;
  FetchPage();
}

void ConnectionLogic::FetchPage() {
  if (catch_up_ == nullptr || catch_up_->page_in_flight || closed_) return;
  catch_up_->page_in_flight = true;
  auto done =
      OnStrand<SyncReply>([this](absl::StatusOr<SyncReply> page) { OnPage(std::move(page)); });
  if (catch_up_->unread) {
    messages_->Unread(user_, catch_up_->after, config_->push_page_limit, std::move(done));
  } else {
    messages_->Sync(user_, catch_up_->after, config_->push_page_limit, "", std::move(done));
  }
}

void ConnectionLogic::OnPage(absl::StatusOr<SyncReply> page) {
  // The catch-up ends only with no page in flight: it is there.
  if (catch_up_ == nullptr) return;
  CatchUp& c = *catch_up_;
  c.page_in_flight = false;
  if (!page.ok()) {
    // The path broke again: the next attach resumes from what was written.
    while (!c.pushing.empty()) c.pushing.pop_front();
    EndCatchUp();
    return;
  }
  const std::vector<int64_t>* sent_here = rare_ != nullptr ? &rare_->sent_here : nullptr;
  for (const MessageObject& m : page->messages) {
    c.caught_up_to = std::max(c.caught_up_to, m.useq);
    // Copies of the user's own messages from other connections are only for
    // version 2 connections.
    if (m.sent_by == user_ && m.send_to != user_ &&
        (!v2_ || (sent_here != nullptr &&
                  std::find(sent_here->begin(), sent_here->end(), m.useq) != sent_here->end()))) {
      continue;
    }
    c.pushing.push_back({std::make_shared<const std::string>(EncodeDelivery(m)), m.useq, 0});
  }
  c.after = std::max(c.after, page->useq);
  c.last_page = !page->more;
  PumpCatchUp();
}

void ConnectionLogic::PumpCatchUp() {
  // A small window in the socket's queue at a time, whatever the queue's
  // size: pushing never makes a slow consumer.
  constexpr size_t kWindowBytes = 16 << 10;
  if (catch_up_ == nullptr) return;
  CatchUp& c = *catch_up_;
  while (!c.pushing.empty()) {
    const size_t queued = sink_->QueuedBytes();
    if (queued > 0 && queued + c.pushing.front().frame->size() > kWindowBytes) return;
    CatchUp::Held next = std::move(c.pushing.front());
    c.pushing.pop_front();
    sink_->SendStored(std::move(next.frame), next.useq, next.useq, next.edge_received_us);
    if (closed_) return;
  }
  if (c.page_in_flight) return;
  if (c.last_page) {
    EndCatchUp();
  } else if (sink_->QueuedBytes() == 0) {
    FetchPage();  // else when the queue ran empty
  }
}

void ConnectionLogic::EndCatchUp() {
  // Live frames go straight to the socket from here on (OnStored).
  std::unique_ptr<CatchUp> ended = std::move(catch_up_);
  if (ended == nullptr) return;
  for (CatchUp::Held& h : ended->held) {
    if (h.useq <= ended->caught_up_to) continue;  // a page carried it already
    sink_->SendStored(std::move(h.frame), h.useq, h.useq, h.edge_received_us);
  }
}

void ConnectionLogic::OnQueueEmpty() {
  if (catch_up_ != nullptr) PumpCatchUp();
}

void ConnectionLogic::OnWritten(int64_t from, int64_t to) {
  seen_useq_ = std::max(seen_useq_, to);
  messages_->Reached(user_, from, to);
}

void ConnectionLogic::OnStored(std::shared_ptr<const std::string> frame, int64_t useq,
                               bool own_copy, int64_t edge_received_us) {
  if (closed_ || !hello_sent_) return;
  if (own_copy && !v2_) return;
  if (catch_up_ != nullptr) {
    catch_up_->held_bytes += frame->size();
    if (catch_up_->held_bytes > config_->max_held_bytes) {
      closed_ = true;
      sink_->Close(kCloseSlowConsumer, "slow consumer: too much arrived while catching up");
      return;
    }
    catch_up_->held.push_back({std::move(frame), useq, edge_received_us});
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
  if (rare().bad_frames.AddAndCheck(clock_->NowMs())) {
    closed_ = true;
    sink_->Close(kClosePolicy, "too many bad frames");
  }
}

bool ConnectionLogic::TakeRateToken(int64_t now_ms) {
  const double burst = std::max(config_->rate_burst, 1);
  if (now_ms > rate_last_ms_) {
    const double rate_per_ms = config_->messages_per_second / 1000.0;
    rate_tokens_ = std::min(burst, rate_tokens_ + (now_ms - rate_last_ms_) * rate_per_ms);
    rate_last_ms_ = now_ms;
  }
  if (rate_tokens_ < 1.0) return false;
  rate_tokens_ -= 1.0;
  return true;
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
  if (!TakeRateToken(clock_->NowMs())) {
    if (rare().rate_strikes.AddAndCheck(clock_->NowMs())) {
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
    sink->RunOrPost(
        [this, result, request_id, counted] { OnSendResult(result, request_id, counted); });
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
    std::vector<int64_t>& sent_here = rare().sent_here;
    if (sent_here.size() == kMaxSentHere) sent_here.erase(sent_here.begin());
    sent_here.push_back(result.useq);
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
  tokens_->Verify(std::move(action.token), [this, weak = sink_->WeakSelf(),
                                            request_id = std::move(request_id)](
                                               absl::StatusOr<Identity> identity) {
    auto sink = weak.lock();
    if (sink == nullptr) return;
    sink->Post([this, identity = std::move(identity), request_id] {
      if (!identity.ok()) {
        SendError(ErrorCode::kForbidden,
                  absl::StrCat("token refused: ", identity.status().message()), request_id);
        return;
      }
      const bool same_subject = subject_is_user_ ? identity->subject == user_
                                                 : rare_ != nullptr && !rare_->subject.empty() &&
                                                       identity->subject == rare_->subject;
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

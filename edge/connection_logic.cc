#include "edge/connection_logic.h"

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

std::string ConnectionLogic::HelloFrame() const {
  return EncodeHello(
      user_, connection_id_, config_->server_id,
      {config_->max_message_bytes, config_->messages_per_second, config_->idle_timeout_s});
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
      sink_->Close(kClosePolicy, "rate limit exceeded repeatedly");
      return;
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
        } else {
          Send(EncodePong(clock_->NowMs(), request.request_id));
        }
      },
      request.action);
}

void ConnectionLogic::HandleSend(SendAction action, RequestId request_id) {
  if (action.sent_by.has_value() && *action.sent_by != user_) {
    SendError(ErrorCode::kForbidden, absl::StrCat("sent_by must be your own name ('", user_, "')"),
              request_id);
    return;
  }
  if (action.message.size() > config_->max_message_bytes) {
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
  OutgoingSend send{user_, std::move(action.send_to), std::move(action.message), connection_id_};
  messages_->Send(std::move(send), [this, weak = sink_->WeakSelf(),
                                    request_id = std::move(request_id)](const SendResult& result) {
    auto sink = weak.lock();
    if (sink == nullptr) return;
    bool counted = false;
    if (result.status == SendResult::Status::kOk && !request_id.has_value()) {
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
  switch (result.status) {
    case SendResult::Status::kOk:
      if (request_id.has_value())
        Send(EncodeSent(request_id, result.id, result.ts_ms, result.delivered));
      return;
    case SendResult::Status::kUnknownUser:
      SendError(ErrorCode::kUnknownUser, result.error, request_id);
      return;
    case SendResult::Status::kRecipientOffline:
      SendError(ErrorCode::kRecipientOffline, result.error, request_id);
      return;
    case SendResult::Status::kBadRequest:
      SendError(ErrorCode::kBadRequest, result.error, request_id);
      return;
    case SendResult::Status::kUnavailable:
      SendError(ErrorCode::kUnavailable,
                result.error.empty() ? "message service unavailable; nothing was delivered"
                                     : result.error,
                request_id);
      return;
  }
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
}

}  // namespace chat::edge

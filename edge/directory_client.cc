#include "edge/directory_client.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/async_client.h"
#include "common/grpc_status.h"
#include "spdlog/spdlog.h"

namespace chat::edge {
namespace {

// What an operator's Disconnect without a code closes with (chat.proto: 0 =
// 4000).
constexpr int kKickDefaultCode = 4000;

std::string RandomIncarnation() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x", rd(), rd());
}

}  // namespace

DirectoryClient::Registered::Registered(const NewConnection& connection,
                                        std::shared_ptr<const std::string> user_agent)
    : text_(absl::StrCat(connection.connection_id, connection.user, connection.ip)),
      user_agent_(std::move(user_agent)),
      connected_at_ms_(connection.connected_at_ms),
      id_size_(static_cast<uint32_t>(connection.connection_id.size())),
      user_size_(static_cast<uint32_t>(connection.user.size())) {
  text_.shrink_to_fit();
}

NewConnection DirectoryClient::Registered::ToNewConnection() const {
  const std::string_view text(text_);
  NewConnection c;
  c.connection_id = std::string(text.substr(0, id_size_));
  c.user = std::string(text.substr(id_size_, user_size_));
  c.ip = std::string(text.substr(id_size_ + user_size_));
  c.connected_at_ms = connected_at_ms_;
  if (user_agent_ != nullptr) c.user_agent = *user_agent_;
  return c;
}

std::shared_ptr<const std::string> DirectoryClient::InternUserAgentLocked(
    const std::string& agent) {
  if (agent.empty()) return nullptr;
  if (last_user_agent_ == nullptr || *last_user_agent_ != agent) {
    last_user_agent_ = std::make_shared<const std::string>(agent);
  }
  return last_user_agent_;
}

DirectoryClient::DirectoryClient(std::shared_ptr<grpc::Channel> channel, std::string edge_id,
                                 LocalHub* hub, DirectoryOptions options)
    : stub_(chat::v1::EdgeRegistry::NewStub(channel)),
      edge_id_(std::move(edge_id)),
      incarnation_(RandomIncarnation()),
      hub_(hub),
      options_(options) {
  kicks_request_.set_edge_id(edge_id_);
  presence_ = std::make_unique<ReconnectingReader<chat::v1::PresenceEvent>>(
      [this](grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        options_.auth.Apply(ctx);
        return stub_->PrepareAsyncWatchPresence(ctx, presence_request_, cq);
      },
      [this](const chat::v1::PresenceEvent& e) { OnPresenceEvent(e); },
      [this](const grpc::Status&) {
        absl::MutexLock lock(&presence_mu_);
        snapshot_.clear();  // the next stream sends a whole one again
      });
  kicks_ = std::make_unique<ReconnectingReader<chat::v1::RouteUpdate>>(
      [this](grpc::ClientContext* ctx, grpc::CompletionQueue* cq) {
        options_.auth.Apply(ctx);
        return stub_->PrepareAsyncWatchRoutes(ctx, kicks_request_, cq);
      },
      [this](const chat::v1::RouteUpdate& update) { OnRouteUpdate(update); },
      [](const grpc::Status&) {});
  Heartbeat();
}

DirectoryClient::~DirectoryClient() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (heartbeat_ctx_ != nullptr) heartbeat_ctx_->TryCancel();
  }
  // A heartbeat alarm that fires from now on finds stopping_ set.
  heartbeat_timer_.Shutdown();
  presence_.reset();
  kicks_.reset();
  // Wait for the calls in flight: their callbacks touch this object.
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !in_flight_ && !heartbeat_in_flight_;
  };
  mu_.Await(absl::Condition(&idle));
}

void DirectoryClient::OnRouteUpdate(const chat::v1::RouteUpdate& update) {
  using chat::v1::RouteChange;
  {
    absl::MutexLock lock(&bans_mu_);
    if (update.reset()) bans_.clear();  // the snapshot lists every ban in force
    for (const auto& change : update.changes()) {
      if (change.kind() != RouteChange::BANNED) continue;
      if (change.ban_until_ms() > 0) {
        bans_[change.connection().user()] = change.ban_until_ms();
      } else {
        bans_.erase(change.connection().user());
      }
    }
  }
  for (const auto& change : update.changes()) {
    if (change.kind() != RouteChange::REMOVED || change.reason() != RouteChange::KICKED) continue;
    // A registry from before close codes sends 0: the API's default.
    const int code = change.close_code() == 0 ? kKickDefaultCode : change.close_code();
    hub_->Kick(
        change.connection().connection_id(), static_cast<uint16_t>(code),
        change.close_reason().empty() ? "disconnected by an operator" : change.close_reason());
  }
}

void DirectoryClient::OnPresenceEvent(const chat::v1::PresenceEvent& e) {
  struct Change {
    std::string user;
    bool online;
  };
  std::vector<Change> changes;
  {
    absl::MutexLock lock(&presence_mu_);
    if (e.snapshot()) {
      // Watching everyone: the snapshot lists the users online.
      if (e.online()) snapshot_.insert(e.name());
      return;
    }
    if (e.snapshot_end()) {
      for (const auto& user : snapshot_) {
        if (!online_.contains(user)) changes.push_back({user, true});
      }
      for (const auto& user : online_) {
        if (!snapshot_.contains(user)) changes.push_back({user, false});
      }
      online_ = std::move(snapshot_);
      snapshot_.clear();
    } else {
      if (e.online()) {
        online_.insert(e.name());
      } else {
        online_.erase(e.name());
      }
      changes.push_back({e.name(), e.online()});
    }
  }
  for (const auto& change : changes) hub_->OnPresence(change.user, change.online, e.ts_ms());
}

int64_t DirectoryClient::BannedUntil(const std::string& user) const {
  absl::MutexLock lock(&bans_mu_);
  auto it = bans_.find(user);
  return it == bans_.end() ? 0 : it->second;
}

void DirectoryClient::ListUsers(bool online_only, int limit, const std::string& after,
                                std::function<void(absl::StatusOr<UserPage>)> done) {
  struct Call {
    grpc::ClientContext ctx;
    chat::v1::ListUsersRequest request;
    chat::v1::ListUsersResponse response;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_deadline);
  options_.auth.Apply(&call->ctx);
  call->request.set_online_only(online_only);
  call->request.set_page_size(limit);
  call->request.set_page_token(after);
  CallOnLoop(
      [&](grpc::CompletionQueue* cq) {
        return stub_->PrepareAsyncListUsers(&call->ctx, call->request, cq);
      },
      &call->response,
      [call, done = std::move(done)](grpc::Status status) {
        if (!status.ok()) {
          done(FromGrpcStatus(status));
          return;
        }
        UserPage page;
        page.users.reserve(call->response.users_size());
        for (const auto& u : call->response.users()) {
          page.users.push_back({u.name(), u.online()});
        }
        page.next = call->response.next_page_token();
        done(std::move(page));
      });
}

void DirectoryClient::Register(NewConnection connection, std::function<void(absl::Status)> done) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() >= options_.max_queued_ops) {
    mu_.Unlock();
    done(absl::UnavailableError("too many registrations waiting"));
    mu_.Lock();
    return;
  }
  queue_.push_back({true, std::move(connection), {}, std::move(done), false});
  KickLocked();
}

void DirectoryClient::Unregister(const std::string& connection_id) {
  absl::MutexLock lock(&mu_);
  if (auto it = live_.find(std::string_view(connection_id)); it != live_.end()) live_.erase(it);
  // Unregisters are never dropped: the registry would show a ghost until our
  // lease ends, which is never while we live.
  queue_.push_back({false, {}, connection_id, nullptr, false});
  KickLocked();
}

void DirectoryClient::KickLocked() {
  if (in_flight_) return;
  // A batch is a run of the same kind, so order between register and
  // unregister of one connection is kept.
  std::vector<Op> batch;
  bool is_register = false;
  while (batch.empty()) {
    if (queue_.empty()) return;
    is_register = queue_.front().is_register;
    while (!queue_.empty() && queue_.front().is_register == is_register &&
           batch.size() < options_.max_batch) {
      Op& op = queue_.front();
      // A re-registration of a connection that closed since it was queued
      // would leave a ghost (its unregister may be gone: see NoteInstance).
      if (!op.again || live_.contains(std::string_view(op.connection.connection_id)))
        batch.push_back(std::move(op));
      queue_.pop_front();
    }
  }
  in_flight_ = true;
  struct Call {
    grpc::ClientContext ctx;
    chat::v1::RegisterRequest reg;
    chat::v1::RegisterResponse reg_response;
    chat::v1::UnregisterRequest unreg;
    chat::v1::UnregisterResponse unreg_response;
    std::vector<Op> batch;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_deadline);
  options_.auth.Apply(&call->ctx);
  if (is_register) {
    call->reg.set_edge_id(edge_id_);
    call->reg.set_incarnation(incarnation_);
    for (const auto& op : batch) {
      auto* c = call->reg.add_connections();
      c->set_connection_id(op.connection.connection_id);
      c->set_user(op.connection.user);
      c->set_connected_at_ms(op.connection.connected_at_ms);
      c->set_user_agent(op.connection.user_agent);
      c->set_ip(op.connection.ip);
    }
    call->batch = std::move(batch);
    CallOnLoop(
        [&](grpc::CompletionQueue* cq) {
          return stub_->PrepareAsyncRegister(&call->ctx, call->reg, cq);
        },
        &call->reg_response,
        [this, call](grpc::Status status) {
          OnBatchDone(std::move(call->batch), status, call->reg_response.instance_id());
        });
  } else {
    call->unreg.set_edge_id(edge_id_);
    call->unreg.set_incarnation(incarnation_);
    for (const auto& op : batch) call->unreg.add_connection_ids(op.connection_id);
    call->batch = std::move(batch);
    CallOnLoop(
        [&](grpc::CompletionQueue* cq) {
          return stub_->PrepareAsyncUnregister(&call->ctx, call->unreg, cq);
        },
        &call->unreg_response,
        [this, call](grpc::Status status) {
          OnBatchDone(std::move(call->batch), status, call->unreg_response.instance_id());
        });
  }
}

void DirectoryClient::OnBatchDone(std::vector<Op> batch, const grpc::Status& status,
                                  const std::string& instance) {
  const bool ok = status.ok();
  if (ok) NoteInstance(instance);
  // Unregisters and re-registrations are retried after a failure (the
  // heartbeat kicks the queue once the registry answers): a registry that
  // restarted never knew of the first, and nothing else would send the
  // second again while the lease holds and the instance stays the same.
  const bool retry = !ok && status.error_code() != grpc::StatusCode::INVALID_ARGUMENT;
  std::vector<std::function<void(absl::Status)>> callbacks;
  {
    absl::MutexLock lock(&mu_);
    in_flight_ = false;
    for (auto& op : batch) {
      if (op.is_register && op.again) {
        // live_ holds it already, unless it closed meanwhile: then it stays
        // out, or every later re-registration would bring it back.
        if (retry && live_.contains(std::string_view(op.connection.connection_id)))
          queue_.push_back(std::move(op));
      } else if (op.is_register) {
        if (ok) {
          auto record = std::make_unique<Registered>(
              op.connection, InternUserAgentLocked(op.connection.user_agent));
          auto it = live_.find(record->connection_id());
          if (it != live_.end()) live_.erase(it);
          live_.insert(std::move(record));
        }
        if (op.done) callbacks.push_back(std::move(op.done));
      } else if (retry) {
        queue_.push_back(std::move(op));
      }
    }
    // After a failure the next heartbeat retries, once the registry answers.
    if (ok) {
      KickLocked();
    } else if (!RegistryStoreAway(status)) {
      healthy_ = false;
    }
  }
  const absl::Status result = FromGrpcStatus(status);
  for (auto& done : callbacks) done(result);
}

bool DirectoryClient::RegistryStoreAway(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         ReasonOf(FromGrpcStatus(status)) == "REGISTRY_UNAVAILABLE";
}

bool DirectoryClient::NoteInstance(const std::string& instance) {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    if (instance_ != instance) {
      changed = !instance_.empty();
      instance_ = instance;
    }
  }
  if (changed) {
    {
      // Queued unregisters are moot: the new registry never knew them.
      absl::MutexLock lock(&mu_);
      queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                  [](const Op& op) { return !op.is_register; }),
                   queue_.end());
    }
    spdlog::warn("connection-service restarted (instance {}): registering live connections again",
                 instance);
    RegisterAllAgain();
  }
  return changed;
}

void DirectoryClient::RegisterAllAgain() {
  absl::MutexLock lock(&mu_);
  for (const auto& record : live_) {
    queue_.push_back({true, record->ToNewConnection(), {}, nullptr, true});
  }
  KickLocked();
}

void DirectoryClient::Heartbeat() {
  struct Call {
    grpc::ClientContext ctx;
    chat::v1::HeartbeatRequest request;
    chat::v1::HeartbeatResponse response;
  };
  auto call = std::make_shared<Call>();
  call->request.set_edge_id(edge_id_);
  call->request.set_incarnation(incarnation_);
  call->ctx.set_deadline(std::chrono::system_clock::now() + options_.rpc_deadline);
  options_.auth.Apply(&call->ctx);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    heartbeat_ctx_ = &call->ctx;
    heartbeat_in_flight_ = true;
  }
  CallOnLoop(
      [&](grpc::CompletionQueue* cq) {
        return stub_->PrepareAsyncHeartbeat(&call->ctx, call->request, cq);
      },
      &call->response,
      [this, call](grpc::Status status) {
        {
          absl::MutexLock lock(&mu_);
          heartbeat_ctx_ = nullptr;
        }
        OnHeartbeat(status, call->response);
        // Last touch of this object (the destructor waits for it).
        absl::MutexLock lock(&mu_);
        heartbeat_in_flight_ = false;
      });
}

void DirectoryClient::OnHeartbeat(const grpc::Status& status,
                                  const chat::v1::HeartbeatResponse& response) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;  // cancelled by the destructor, most likely: nothing to say
  }
  bool retry_soon = false;
  std::chrono::milliseconds interval = options_.heartbeat_interval;
  if (status.ok()) {
    healthy_ = true;
    // Three heartbeats per lease at least, whatever lease the registry
    // was started with: one lost or late heartbeat never expires us.
    if (response.lease_timeout_ms() > 0) {
      interval = std::clamp(std::chrono::milliseconds(response.lease_timeout_ms() / 3),
                            std::chrono::milliseconds(20), interval);
    }
    const bool restarted = NoteInstance(response.instance_id());
    if (!response.lease_known() && !restarted) {
      // Our lease ran out (or this is a new registry): it forgot us.
      RegisterAllAgain();
    } else {
      absl::MutexLock lock(&mu_);
      KickLocked();  // retry whatever failed since the last heartbeat
    }
  } else if (RegistryStoreAway(status)) {
    // connection-service answered, but the shared state it keeps (Redis)
    // is out of reach. This edge stays ready for load balancers: its live
    // connections keep working, and handshakes get 503 + Retry-After from
    // the registration that fails meanwhile. Asked again soon.
    healthy_ = true;
    retry_soon = true;
    spdlog::warn("connection-service: registry unavailable: {}", status.error_message());
  } else {
    if (healthy_.exchange(false)) {
      spdlog::warn("connection-service heartbeat failed: {}", status.error_message());
    }
    retry_soon = true;
  }
  // The next one counts from this answer, as the interval always did. After
  // shutdown began the alarm is refused (or finds stopping_ set).
  heartbeat_timer_.Schedule(retry_soon ? std::chrono::milliseconds(300) : interval,
                            [this] { Heartbeat(); });
}

void DirectoryClient::Flush(std::chrono::milliseconds deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !in_flight_; };
  mu_.AwaitWithTimeout(absl::Condition(&drained), absl::FromChrono(deadline));
}

}  // namespace chat::edge

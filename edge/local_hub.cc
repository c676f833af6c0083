#include "edge/local_hub.h"

#include "edge/protocol.h"

namespace chat::edge {

void LocalHub::Add(const std::string& connection_id, std::weak_ptr<LocalConnection> connection) {
  absl::MutexLock lock(&mu_);
  connections_[connection_id] = std::move(connection);
}

void LocalHub::Remove(const std::string& connection_id) {
  absl::MutexLock lock(&mu_);
  connections_.erase(connection_id);
  auto it = watching_.find(connection_id);
  if (it == watching_.end()) return;
  for (const auto& user : it->second) {
    auto w = watchers_.find(user);
    if (w == watchers_.end()) continue;
    w->second.erase(connection_id);
    if (w->second.empty()) watchers_.erase(w);
  }
  watching_.erase(it);
}

void LocalHub::SetWatch(const std::string& connection_id, const std::vector<std::string>& users) {
  absl::MutexLock lock(&mu_);
  auto& current = watching_[connection_id];
  for (const auto& user : current) {
    auto w = watchers_.find(user);
    if (w == watchers_.end()) continue;
    w->second.erase(connection_id);
    if (w->second.empty()) watchers_.erase(w);
  }
  current = users;
  for (const auto& user : users) watchers_[user].insert(connection_id);
  if (current.empty()) watching_.erase(connection_id);
}

std::shared_ptr<LocalConnection> LocalHub::FindLocked(const std::string& connection_id) const {
  auto it = connections_.find(connection_id);
  return it == connections_.end() ? nullptr : it->second.lock();
}

int LocalHub::Deliver(const std::vector<std::string>& connection_ids,
                      const std::shared_ptr<const std::string>& frame) {
  std::vector<std::shared_ptr<LocalConnection>> targets;
  targets.reserve(connection_ids.size());
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& id : connection_ids) {
      if (auto c = FindLocked(id)) targets.push_back(std::move(c));
    }
  }
  for (auto& c : targets) c->Deliver(frame);
  return static_cast<int>(targets.size());
}

void LocalHub::ForAll(const std::function<void(LocalConnection&)>& fn) {
  std::vector<std::shared_ptr<LocalConnection>> targets;
  {
    absl::ReaderMutexLock lock(&mu_);
    targets.reserve(connections_.size());
    for (const auto& [id, weak] : connections_) {
      if (auto c = weak.lock()) targets.push_back(std::move(c));
    }
  }
  for (auto& c : targets) fn(*c);
}

void LocalHub::OnPresence(const std::string& user, bool online, int64_t ts_ms) {
  std::vector<std::shared_ptr<LocalConnection>> targets;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = watchers_.find(user);
    if (it == watchers_.end()) return;
    for (const auto& id : it->second) {
      if (auto c = FindLocked(id)) targets.push_back(std::move(c));
    }
  }
  auto frame = std::make_shared<const std::string>(EncodePresence(user, online, ts_ms));
  for (auto& c : targets) c->Deliver(frame);
}

bool LocalHub::Kick(const std::string& connection_id, uint16_t close_code,
                    const std::string& reason) {
  std::shared_ptr<LocalConnection> target;
  {
    absl::ReaderMutexLock lock(&mu_);
    target = FindLocked(connection_id);
  }
  if (target == nullptr) return false;
  target->Kick(close_code, reason);
  return true;
}

void LocalHub::KickAll(uint16_t close_code, const std::string& reason) {
  std::vector<std::shared_ptr<LocalConnection>> targets;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [id, weak] : connections_) {
      if (auto c = weak.lock()) targets.push_back(std::move(c));
    }
  }
  for (auto& c : targets) c->Kick(close_code, reason);
}

size_t LocalHub::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return connections_.size();
}

}  // namespace chat::edge

#include "message-service/routing_table.h"

#include <algorithm>

namespace chat::message {

void RoutingTable::Reset() {
  absl::MutexLock lock(&mu_);
  ready_ = false;
  users_.clear();
  routes_.clear();
  connections_ = 0;
}

void RoutingTable::MarkReady() {
  absl::MutexLock lock(&mu_);
  ready_ = true;
}

void RoutingTable::MarkNotReady() {
  absl::MutexLock lock(&mu_);
  ready_ = false;
}

void RoutingTable::AddUsers(const std::vector<std::string>& users) {
  absl::MutexLock lock(&mu_);
  users_.insert(users.begin(), users.end());
}

void RoutingTable::Add(const std::string& user, Route route) {
  absl::MutexLock lock(&mu_);
  users_.insert(user);
  auto& routes = routes_[user];
  for (const auto& r : routes) {
    if (r.connection_id == route.connection_id) return;
  }
  routes.push_back(std::move(route));
  ++connections_;
}

void RoutingTable::Remove(const std::string& user, const std::string& connection_id) {
  absl::MutexLock lock(&mu_);
  auto it = routes_.find(user);
  if (it == routes_.end()) return;
  auto& routes = it->second;
  auto found = std::find_if(routes.begin(), routes.end(),
                            [&](const Route& r) { return r.connection_id == connection_id; });
  if (found == routes.end()) return;
  routes.erase(found);
  --connections_;
  if (routes.empty()) routes_.erase(it);
}

LookupResult RoutingTable::Lookup(const std::string& user) const {
  absl::ReaderMutexLock lock(&mu_);
  LookupResult result;
  if (!ready_) return result;
  auto it = routes_.find(user);
  if (it != routes_.end()) {
    result.status = LookupStatus::kOnline;
    result.routes = it->second;
  } else {
    result.status = users_.contains(user) ? LookupStatus::kOffline : LookupStatus::kUnknownUser;
  }
  return result;
}

bool RoutingTable::ready() const {
  absl::ReaderMutexLock lock(&mu_);
  return ready_;
}

size_t RoutingTable::connection_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return connections_;
}

}  // namespace chat::message

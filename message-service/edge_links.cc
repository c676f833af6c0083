#include "message-service/edge_links.h"

namespace chat::message {

bool Outbox::AddDelivery(chat::v1::Delivery delivery) {
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr) return false;
  const size_t bytes = delivery.ByteSizeLong();
  if (pending_bytes_ + bytes > max_pending_bytes_) return false;
  pending_bytes_ += bytes;
  *pending_.add_deliveries() = std::move(delivery);
  MaybeWriteLocked();
  return true;
}

void Outbox::AddResult(const chat::v1::EdgeSendResult& result) {
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr) return;
  *pending_.add_results() = result;
  MaybeWriteLocked();
}

void Outbox::Greet() {
  absl::MutexLock lock(&mu_);
  greet_ = true;
  MaybeWriteLocked();
}

void Outbox::OnWriteDone() {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  MaybeWriteLocked();
}

void Outbox::Detach() {
  absl::MutexLock lock(&mu_);
  writer_ = nullptr;
  pending_.Clear();
  pending_bytes_ = 0;
}

void Outbox::MaybeWriteLocked() {
  if (writing_ || writer_ == nullptr) return;
  if (pending_.deliveries_size() == 0 && pending_.results_size() == 0 && !greet_) return;
  greet_ = false;
  in_flight_.Clear();
  in_flight_.Swap(&pending_);
  pending_bytes_ = 0;
  writing_ = true;
  writer_->StartDownWrite(&in_flight_);
}

void EdgeLinks::Attach(const std::string& edge_id, std::shared_ptr<Outbox> outbox) {
  absl::MutexLock lock(&mu_);
  links_[edge_id] = std::move(outbox);
}

void EdgeLinks::Detach(const std::string& edge_id, const Outbox* outbox) {
  absl::MutexLock lock(&mu_);
  auto it = links_.find(edge_id);
  if (it != links_.end() && it->second.get() == outbox) links_.erase(it);
}

std::shared_ptr<Outbox> EdgeLinks::Find(const std::string& edge_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = links_.find(edge_id);
  return it == links_.end() ? nullptr : it->second;
}

size_t EdgeLinks::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return links_.size();
}

}  // namespace chat::message

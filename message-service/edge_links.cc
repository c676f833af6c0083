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

bool Outbox::AddReceipt(chat::v1::Receipt receipt) {
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr) return false;
  const size_t bytes = receipt.ByteSizeLong();
  if (pending_bytes_ + bytes > max_pending_bytes_) return false;
  pending_bytes_ += bytes;
  *pending_.add_receipts() = std::move(receipt);
  MaybeWriteLocked();
  return true;
}

// Results, attach answers and query results are always queued: their number
// is bounded by the edge's own requests in flight.
void Outbox::AddResult(const chat::v1::EdgeSendResult& result) {
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr) return;
  *pending_.add_results() = result;
  MaybeWriteLocked();
}

void Outbox::AddAttached(chat::v1::Attached attached) {
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr) return;
  *pending_.add_attached() = std::move(attached);
  MaybeWriteLocked();
}

void Outbox::AddQueryResult(chat::v1::EdgeQueryResult result) {
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr) return;
  *pending_.add_query_results() = std::move(result);
  MaybeWriteLocked();
}

void Outbox::Greet(const std::string& epoch) {
  absl::MutexLock lock(&mu_);
  greet_ = true;
  epoch_ = epoch;
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

void Outbox::Flush() {
  absl::MutexLock lock(&mu_);
  flush_asked_ = false;
  WriteLocked();
}

void Outbox::MaybeWriteLocked() {
  if (flush_asked_ || writing_ || writer_ == nullptr || !HasPendingLocked()) return;
  if (writer_->FlushLater()) {
    flush_asked_ = true;
    return;
  }
  WriteLocked();
}

bool Outbox::HasPendingLocked() const {
  return pending_.deliveries_size() > 0 || pending_.results_size() > 0 ||
         pending_.attached_size() > 0 || pending_.query_results_size() > 0 ||
         pending_.receipts_size() > 0 || greet_;
}

void Outbox::WriteLocked() {
  if (writing_ || writer_ == nullptr || !HasPendingLocked()) return;
  in_flight_.Clear();
  in_flight_.Swap(&pending_);
  if (greet_) in_flight_.set_epoch(epoch_);
  greet_ = false;
  pending_bytes_ = 0;
  writing_ = true;
  writer_->StartDownWrite(&in_flight_);
}

}  // namespace chat::message

#ifndef CHAT_MESSAGE_SERVICE_EDGE_LINKS_H_
#define CHAT_MESSAGE_SERVICE_EDGE_LINKS_H_

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "chat/v1/chat.pb.h"

namespace chat::message {

// Whatever can put one EdgeDown on the wire at a time (the EdgeLink stream).
class DownWriter {
 public:
  virtual ~DownWriter() = default;
  virtual void StartDownWrite(const chat::v1::EdgeDown* message) = 0;
  // Something is waiting and no write is in flight. True: the writer calls
  // Outbox::Flush once the work at hand is done (the store worker's
  // wake-up), so everything it produced goes down in one EdgeDown; false:
  // written at once.
  virtual bool FlushLater() { return false; }
};

// Everything waiting to go down one edge's link. Items queued while a write is
// in flight go out together in the next EdgeDown: batches form from what is
// already waiting, never by waiting. Deliveries beyond `max_pending_bytes` are
// refused (the edge is not keeping up); results are always queued because
// their number is bounded by the edge's own in-flight sends.
class Outbox {
 public:
  Outbox(DownWriter* writer, size_t max_pending_bytes)
      : writer_(writer), max_pending_bytes_(max_pending_bytes) {}

  // Sends the greeting: tells the edge the link is accepted, with the
  // store's epoch.
  void Greet(const std::string& epoch);
  bool AddDelivery(chat::v1::Delivery delivery);
  bool AddReceipt(chat::v1::Receipt receipt);
  void AddResult(const chat::v1::EdgeSendResult& result);
  void AddAttached(chat::v1::Attached attached);
  void AddQueryResult(chat::v1::EdgeQueryResult result);
  // The writer finished the in-flight message.
  void OnWriteDone();
  // Writes what is waiting, if no write is in flight (after FlushLater).
  void Flush();
  // The link is gone: nothing more is accepted or written.
  void Detach();

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasPendingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  DownWriter* writer_ ABSL_GUARDED_BY(mu_);
  const size_t max_pending_bytes_;
  chat::v1::EdgeDown pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  chat::v1::EdgeDown in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool greet_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_asked_ ABSL_GUARDED_BY(mu_) = false;  // FlushLater said true
  std::string epoch_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_EDGE_LINKS_H_

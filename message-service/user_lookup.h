#ifndef CHAT_MESSAGE_SERVICE_USER_LOOKUP_H_
#define CHAT_MESSAGE_SERVICE_USER_LOOKUP_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/service_auth.h"
#include "grpcpp/completion_queue.h"

namespace chat::message {

// What connection-service answered to ForgetUser.
struct ForgetResult {
  bool existed = false;  // connection-service knew the user
  int disconnected = 0;  // connections it closed
};

// connection-service as message-service needs it (the durable table of users
// ever seen). Exists is asked only when the message store has never seen the
// recipient: a user who just said hello exists there before their hello.
class UserLookup {
 public:
  virtual ~UserLookup() = default;
  // OK: exists; NOT_FOUND: never existed; anything else: could not tell.
  virtual void Exists(const std::string& user, std::function<void(absl::Status)> done) = 0;
  // DeleteUser: drops the user (registry, user table, name claim) and closes
  // their connections with `code` and `reason`. UNAVAILABLE when it could
  // not be asked.
  virtual void Forget(const std::string& user, int code, const std::string& reason,
                      std::function<void(absl::StatusOr<ForgetResult>)> done) = 0;
};

// Calls connection-service on the async API: each answer completes on the
// queue given to UseQueue (the store worker's), and `done` runs on the thread
// that drives it. No call may start before UseQueue.
class GrpcUserLookup : public UserLookup {
 public:
  GrpcUserLookup(chat::v1::EdgeRegistry::Stub* stub, ServiceAuth auth,
                 std::chrono::milliseconds deadline = std::chrono::milliseconds(3000))
      : stub_(stub), auth_(std::move(auth)), deadline_(deadline) {}
  // The queue must outlive every call (its thread handles their answers).
  void UseQueue(grpc::CompletionQueue* cq) { cq_ = cq; }
  void Exists(const std::string& user, std::function<void(absl::Status)> done) override;
  void Forget(const std::string& user, int code, const std::string& reason,
              std::function<void(absl::StatusOr<ForgetResult>)> done) override;

 private:
  chat::v1::EdgeRegistry::Stub* stub_;
  const ServiceAuth auth_;
  const std::chrono::milliseconds deadline_;
  grpc::CompletionQueue* cq_ = nullptr;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_USER_LOOKUP_H_

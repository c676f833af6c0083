#ifndef CHAT_TESTS_GRPC_GRPC_TEST_UTIL_H_
#define CHAT_TESTS_GRPC_GRPC_TEST_UTIL_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/grpc_server.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/client_callback.h"
#include "grpcpp/support/status.h"

// Helpers for in-process gRPC tests: deadlines on every call, a stream reader
// a test can wait on, and a health check without generated health stubs.
namespace chat::testing {

// Services on 127.0.0.1:0 and a channel to them; shut down on destruction.
class InProcessServer {
 public:
  absl::Status Start(grpc::Service* service) { return Start(std::vector<grpc::Service*>{service}); }
  // `completion_queue`: one for async services, taken by TakeCompletionQueue;
  // the health service is then served on it too.
  absl::Status Start(const std::vector<grpc::Service*>& services, bool completion_queue = false) {
    GrpcServerOptions options;
    options.completion_queue = completion_queue;
    options.health_on_queue = completion_queue;  // as message-service serves it
    auto started = StartGrpcServer(options, services);
    if (!started.ok()) return started.status();
    health_ = std::move(started->health);
    server_ = std::move(started->server);
    completion_queue_ = std::move(started->completion_queue);
    channel_ = MakeChannel(absl::StrCat("127.0.0.1:", started->port));
    return absl::OkStatus();
  }
  ~InProcessServer() { Shutdown(); }
  // Ends the calls (5 s to finish, then cancelled). With a completion queue,
  // whoever drives it must drain it before this object is destroyed: the
  // server's pending requests complete on it and refer to the server.
  void Shutdown() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  std::unique_ptr<grpc::ServerCompletionQueue> TakeCompletionQueue() {
    return std::move(completion_queue_);
  }

 private:
  std::unique_ptr<AsyncHealthService> health_;  // outlives the server
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::ServerCompletionQueue> completion_queue_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Every call a test makes has a deadline, so a broken server fails the test
// instead of hanging it.
inline std::unique_ptr<grpc::ClientContext> Ctx(
    std::chrono::seconds timeout = std::chrono::seconds(10)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

inline std::string Show(const grpc::Status& status) {
  return status.ok() ? "OK"
                     : absl::StrCat("code ", static_cast<int>(status.error_code()), ": ",
                                    status.error_message());
}

// Reads a server stream in the background into a list the test waits on.
template <typename Resp>
class StreamCollector final : public grpc::ClientReadReactor<Resp> {
 public:
  using StartFn = std::function<void(grpc::ClientContext*, grpc::ClientReadReactor<Resp>*)>;

  explicit StreamCollector(const StartFn& start) {
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    start(&context_, this);
    this->StartRead(&msg_);
    this->StartCall();
  }
  ~StreamCollector() override {
    context_.TryCancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

  // Waits up to `timeout` for at least `n` messages; returns all received so far.
  std::vector<Resp> WaitFor(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&] { return messages_.size() >= n || done_; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return messages_;
  }
  // Waits up to `timeout` until `pred` holds for the messages received so far.
  bool WaitUntil(const std::function<bool(const std::vector<Resp>&)>& pred,
                 absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto holds = [&] { return pred(messages_); };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
  }
  // Everything received so far, without waiting.
  std::vector<Resp> Received() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  void Clear() {
    absl::MutexLock lock(&mu_);
    messages_.clear();
  }
  // The stream's final status once it ended, within `timeout`.
  std::optional<grpc::Status> WaitDone(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&done_), timeout)) return std::nullopt;
    return status_;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    {
      absl::MutexLock lock(&mu_);
      messages_.push_back(msg_);
    }
    this->StartRead(&msg_);
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  grpc::ClientContext context_;
  Resp msg_;
  absl::Mutex mu_;
  std::vector<Resp> messages_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// grpc.health.v1.Health/Check through a generic stub (Debian ships no
// generated health client). Returns the serving status number (1 = SERVING),
// or -1 with `error` set.
inline int HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                       std::string* error) {
  // HealthCheckRequest { string service = 1; }
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back(0x0A);
    request_bytes.push_back(static_cast<char>(service.size()));
    request_bytes += service;
  }
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::GenericStub stub(channel);
  auto ctx = Ctx();
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(ctx.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  if (!done.WaitForNotificationWithTimeout(absl::Seconds(15))) {
    *error = "no answer within 15 s";
    return -1;
  }
  if (!status.ok()) {
    *error = Show(status);
    return -1;
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) {
    *error = "unreadable response";
    return -1;
  }
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse { ServingStatus status = 1; } -> 0x08 <varint>; absent means 0.
  if (bytes.empty()) return 0;
  if (bytes.size() != 2 || bytes[0] != 0x08) {
    *error = absl::StrCat("unexpected response of ", bytes.size(), " bytes");
    return -1;
  }
  return bytes[1];
}

}  // namespace chat::testing

#endif  // CHAT_TESTS_GRPC_GRPC_TEST_UTIL_H_

#include "common/grpc_metrics.h"

#include <array>
#include <atomic>
#include <chrono>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"

namespace chat {
namespace {

using grpc::experimental::InterceptionHookPoints;

constexpr int kCodes = 17;  // grpc::StatusCode OK..UNAUTHENTICATED

const char* CodeName(int code) {
  static constexpr std::array<const char*, kCodes> kNames = {"OK",
                                                             "CANCELLED",
                                                             "UNKNOWN",
                                                             "INVALID_ARGUMENT",
                                                             "DEADLINE_EXCEEDED",
                                                             "NOT_FOUND",
                                                             "ALREADY_EXISTS",
                                                             "PERMISSION_DENIED",
                                                             "RESOURCE_EXHAUSTED",
                                                             "FAILED_PRECONDITION",
                                                             "ABORTED",
                                                             "OUT_OF_RANGE",
                                                             "UNIMPLEMENTED",
                                                             "INTERNAL",
                                                             "UNAVAILABLE",
                                                             "DATA_LOSS",
                                                             "UNAUTHENTICATED"};
  return kNames[code];
}

// From about a loopback unary call to a stream that lives for hours.
prometheus::Histogram::BucketBoundaries Buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,   0.5,     1,      2.5,   5,      10,    30,   60,    300,  3600};
}

}  // namespace

// The metrics of one gRPC method, looked up once per call; the per-code
// children are created on first use and then read without a lock.
struct MethodMetrics {
  prometheus::Labels labels;  // grpc_service, grpc_method
  prometheus::Counter* started = nullptr;
  std::array<std::atomic<prometheus::Counter*>, kCodes> handled{};
  std::array<std::atomic<prometheus::Histogram*>, kCodes> seconds{};
};

class GrpcMetrics::Side {
 public:
  Side(Metrics& metrics, const std::string& prefix, const std::string& what)
      : registry_(metrics.shared_registry()),
        started_(prometheus::BuildCounter()
                     .Name(prefix + "_started_total")
                     .Help("gRPC calls " + what + " that started")
                     .Register(*registry_)),
        handled_(prometheus::BuildCounter()
                     .Name(prefix + "_handled_total")
                     .Help("gRPC calls " + what + " that finished, by status code")
                     .Register(*registry_)),
        seconds_(prometheus::BuildHistogram()
                     .Name(prefix + "_handling_seconds")
                     .Help("Duration of gRPC calls " + what +
                           " (streams: their whole life), by status code")
                     .Register(*registry_)) {}

  MethodMetrics* ForMethod(const char* full_method) {
    const std::string name = full_method == nullptr ? "" : full_method;
    absl::MutexLock lock(&mu_);
    auto& slot = methods_[name];
    if (slot == nullptr) {
      slot = std::make_unique<MethodMetrics>();
      // "/package.Service/Method"
      const size_t slash = name.rfind('/');
      const bool well_formed = slash != std::string::npos && slash > 1 && name[0] == '/';
      slot->labels = {{"grpc_service", well_formed ? name.substr(1, slash - 1) : "unknown"},
                      {"grpc_method", well_formed ? name.substr(slash + 1) : name}};
      slot->started = &started_.Add(slot->labels);
    }
    return slot.get();
  }

  void Finished(MethodMetrics* m, grpc::StatusCode status, double seconds) {
    int code = static_cast<int>(status);
    if (code < 0 || code >= kCodes) code = static_cast<int>(grpc::StatusCode::UNKNOWN);
    prometheus::Counter* handled = m->handled[code].load(std::memory_order_acquire);
    prometheus::Histogram* latency = m->seconds[code].load(std::memory_order_acquire);
    if (handled == nullptr || latency == nullptr) {
      // Family::Add is thread-safe and returns the existing child for the
      // same labels, so racing first calls store the same pointers.
      prometheus::Labels labels = m->labels;
      labels.emplace("grpc_code", CodeName(code));
      handled = &handled_.Add(labels);
      latency = &seconds_.Add(labels, Buckets());
      m->handled[code].store(handled, std::memory_order_release);
      m->seconds[code].store(latency, std::memory_order_release);
    }
    handled->Increment();
    latency->Observe(seconds);
  }

 private:
  std::shared_ptr<prometheus::Registry> registry_;  // keeps the families alive
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& seconds_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> methods_ ABSL_GUARDED_BY(mu_);
};

namespace {

// One per call: started when gRPC creates it, finished at the status.
class CallInterceptor final : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(std::shared_ptr<GrpcMetrics::Side> side, const char* method, bool server)
      : side_(std::move(side)),
        method_(side_->ForMethod(method)),
        server_(server),
        start_(std::chrono::steady_clock::now()) {
    method_->started->Increment();
  }
  ~CallInterceptor() override {
    // A call torn down without a status passing through (server shutdown).
    if (!finished_) Finish(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (server_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      Finish(methods->GetSendStatus().error_code());
    } else if (!server_ &&
               methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      Finish(methods->GetRecvStatus()->error_code());
    }
    methods->Proceed();
  }

 private:
  void Finish(grpc::StatusCode code) {
    if (finished_) return;
    finished_ = true;
    side_->Finished(
        method_, code,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

  std::shared_ptr<GrpcMetrics::Side> side_;
  MethodMetrics* method_;
  const bool server_;
  const std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

class ServerFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit ServerFactory(std::shared_ptr<GrpcMetrics::Side> side) : side_(std::move(side)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallInterceptor(side_, info->method(), /*server=*/true);
  }

 private:
  std::shared_ptr<GrpcMetrics::Side> side_;
};

class ClientFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ClientFactory(std::shared_ptr<GrpcMetrics::Side> side) : side_(std::move(side)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    return new CallInterceptor(side_, info->method(), /*server=*/false);
  }

 private:
  std::shared_ptr<GrpcMetrics::Side> side_;
};

}  // namespace

GrpcMetrics::GrpcMetrics(Metrics& metrics)
    : server_(std::make_shared<Side>(metrics, "grpc_server", "served")),
      client_(std::make_shared<Side>(metrics, "grpc_client", "made")) {}

GrpcMetrics::~GrpcMetrics() = default;

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcMetrics::ServerInterceptors() const {
  return std::make_unique<ServerFactory>(server_);
}

std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>
GrpcMetrics::ClientInterceptors() const {
  return std::make_unique<ClientFactory>(client_);
}

}  // namespace chat

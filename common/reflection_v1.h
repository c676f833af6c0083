#ifndef CHAT_COMMON_REFLECTION_V1_H_
#define CHAT_COMMON_REFLECTION_V1_H_

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace chat {

// grpc.reflection.v1.ServerReflection, answered from the descriptors compiled
// into this binary (DescriptorPool::generated_pool()). gRPC 1.51 serves only
// grpc.reflection.v1alpha; clients of the stable name get the same answers
// here. Files come with their transitive dependencies, serialized as
// FileDescriptorProto; what the pool does not know is a NOT_FOUND error
// response on the stream (which stays open).
class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // The services the server registered (list_services answers these).
  void SetServiceList(std::vector<std::string> services);

  grpc::reflection::v1::ServerReflectionResponse Answer(
      const grpc::reflection::v1::ServerReflectionRequest& request);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  absl::Mutex mu_;
  std::vector<std::string> services_ ABSL_GUARDED_BY(mu_);
};

// Adds a ReflectionV1Service to every grpc::ServerBuilder made after this
// call (a builder plugin: only plugins see the final list of services,
// health included). Idempotent; StartGrpcServer calls it.
void InitReflectionV1ServerBuilderPlugin();

}  // namespace chat

#endif  // CHAT_COMMON_REFLECTION_V1_H_

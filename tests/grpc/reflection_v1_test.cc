// grpc.reflection.v1 on a server started by StartGrpcServer, through the v1
// stub: the services it lists, files with their dependencies, errors that
// leave the stream usable, and v1alpha still answering the same.
#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "chat/v1/chat.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/impl/codegen/client_context.h"
#include "grpcpp/impl/codegen/rpc_method.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"

namespace chat::testing {
namespace {

using grpc::reflection::v1::ServerReflection;
using grpc::reflection::v1::ServerReflectionRequest;
using grpc::reflection::v1::ServerReflectionResponse;
using ::testing::Contains;
using ::testing::IsSupersetOf;

// Registered by name only: reflection needs the services, not their logic.
class ConnectionStub final : public chat::v1::ConnectionService::CallbackService {};
class MessageStub final : public chat::v1::MessageService::CallbackService {};

class ReflectionV1Test : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.Start({&connection_, &message_}).ok()); }

  // One stream, every request answered in order.
  std::vector<ServerReflectionResponse> Ask(const std::vector<ServerReflectionRequest>& requests,
                                            const std::string& method = "") {
    auto ctx = Ctx();
    std::unique_ptr<grpc::ClientReaderWriter<ServerReflectionRequest, ServerReflectionResponse>>
        stream;
    if (method.empty()) {
      stub_ = ServerReflection::NewStub(server_.channel());
      stream = stub_->ServerReflectionInfo(ctx.get());
    } else {
      // The same messages on another method name (v1alpha's are wire-identical).
      stream.reset(
          grpc::internal::
              ClientReaderWriterFactory<ServerReflectionRequest, ServerReflectionResponse>::Create(
                  server_.channel().get(),
                  grpc::internal::RpcMethod(method.c_str(),
                                            grpc::internal::RpcMethod::BIDI_STREAMING),
                  ctx.get()));
    }
    std::vector<ServerReflectionResponse> responses;
    for (const auto& request : requests) {
      EXPECT_TRUE(stream->Write(request));
      ServerReflectionResponse response;
      if (!stream->Read(&response)) break;
      responses.push_back(std::move(response));
    }
    stream->WritesDone();
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << Show(status);
    EXPECT_EQ(responses.size(), requests.size());
    return responses;
  }

  static ServerReflectionRequest ListServices() {
    ServerReflectionRequest r;
    r.set_list_services("");
    return r;
  }
  static ServerReflectionRequest Symbol(const std::string& symbol) {
    ServerReflectionRequest r;
    r.set_file_containing_symbol(symbol);
    return r;
  }

  static std::vector<std::string> Names(const ServerReflectionResponse& response) {
    std::vector<std::string> names;
    for (const auto& s : response.list_services_response().service()) names.push_back(s.name());
    return names;
  }

  static std::vector<google::protobuf::FileDescriptorProto> Files(
      const ServerReflectionResponse& response) {
    std::vector<google::protobuf::FileDescriptorProto> files;
    for (const auto& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      files.push_back(std::move(file));
    }
    return files;
  }

  ConnectionStub connection_;
  MessageStub message_;
  InProcessServer server_;
  std::unique_ptr<ServerReflection::Stub> stub_;
};

TEST_F(ReflectionV1Test, ListsRegisteredServicesHealthAndReflection) {
  auto responses = Ask({ListServices()});
  ASSERT_EQ(responses.size(), 1u);
  ASSERT_TRUE(responses[0].has_list_services_response()) << responses[0].DebugString();
  EXPECT_THAT(Names(responses[0]),
              IsSupersetOf({"chat.v1.ConnectionService", "chat.v1.MessageService",
                            "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                            "grpc.reflection.v1alpha.ServerReflection"}));
  EXPECT_TRUE(responses[0].original_request().has_list_services());
}

TEST_F(ReflectionV1Test, FileContainingSymbolComesWithItsDependencies) {
  auto responses = Ask({Symbol("chat.v1.MessageService"), Symbol("chat.v1.MessageService.Send")});
  ASSERT_EQ(responses.size(), 2u);
  for (const auto& response : responses) {
    ASSERT_TRUE(response.has_file_descriptor_response()) << response.DebugString();
    auto files = Files(response);
    ASSERT_FALSE(files.empty());
    EXPECT_EQ(files[0].name(), "chat/v1/chat.proto");
    EXPECT_EQ(files[0].package(), "chat.v1");
    std::set<std::string> names;
    for (const auto& f : files) names.insert(f.name());
    EXPECT_EQ(names.size(), files.size()) << "a file sent twice";
    EXPECT_THAT(names, IsSupersetOf({"google/rpc/status.proto", "google/protobuf/duration.proto",
                                     "google/protobuf/any.proto"}));
    // Transitively closed: a client can build a pool from this answer alone.
    for (const auto& f : files) {
      for (const auto& dep : f.dependency()) EXPECT_THAT(names, Contains(dep)) << f.name();
    }
    bool has_service = false;
    for (const auto& s : files[0].service()) has_service |= s.name() == "MessageService";
    EXPECT_TRUE(has_service);
  }
}

TEST_F(ReflectionV1Test, FileByFilename) {
  ServerReflectionRequest request;
  request.set_file_by_filename("google/rpc/status.proto");
  auto responses = Ask({request});
  ASSERT_EQ(responses.size(), 1u);
  auto files = Files(responses[0]);
  ASSERT_GE(files.size(), 2u) << responses[0].DebugString();
  EXPECT_EQ(files[0].name(), "google/rpc/status.proto");
  EXPECT_EQ(files[1].name(), "google/protobuf/any.proto");
}

TEST_F(ReflectionV1Test, UnknownNamesAreNotFoundAndTheStreamGoesOn) {
  ServerReflectionRequest file, extension, numbers;
  file.set_file_by_filename("no/such.proto");
  extension.mutable_file_containing_extension()->set_containing_type("chat.v1.Nope");
  extension.mutable_file_containing_extension()->set_extension_number(100);
  numbers.set_all_extension_numbers_of_type("chat.v1.Nope");
  auto responses = Ask({Symbol("chat.v1.NoSuchService"), file, extension, numbers, ListServices()});
  ASSERT_EQ(responses.size(), 5u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(responses[i].has_error_response()) << responses[i].DebugString();
    EXPECT_EQ(responses[i].error_response().error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_FALSE(responses[i].error_response().error_message().empty());
  }
  EXPECT_EQ(responses[0].original_request().file_containing_symbol(), "chat.v1.NoSuchService");
  EXPECT_THAT(Names(responses[4]), Contains("chat.v1.ConnectionService"));
}

TEST_F(ReflectionV1Test, ExtensionsOfAKnownType) {
  ServerReflectionRequest numbers, extension;
  numbers.set_all_extension_numbers_of_type("chat.v1.SendRequest");
  extension.mutable_file_containing_extension()->set_containing_type("chat.v1.SendRequest");
  extension.mutable_file_containing_extension()->set_extension_number(1000);
  auto responses = Ask({numbers, extension});
  ASSERT_EQ(responses.size(), 2u);
  ASSERT_TRUE(responses[0].has_all_extension_numbers_response()) << responses[0].DebugString();
  EXPECT_EQ(responses[0].all_extension_numbers_response().base_type_name(), "chat.v1.SendRequest");
  EXPECT_EQ(responses[0].all_extension_numbers_response().extension_number_size(), 0);
  ASSERT_TRUE(responses[1].has_error_response());
  EXPECT_EQ(responses[1].error_response().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ReflectionV1Test, V1AlphaStillAnswersTheSame) {
  auto v1 = Ask({ListServices()});
  auto v1alpha = Ask({ListServices()},
                     "/grpc.reflection.v1alpha.ServerReflection/"
                     "ServerReflectionInfo");
  ASSERT_EQ(v1.size(), 1u);
  ASSERT_EQ(v1alpha.size(), 1u);
  auto a = Names(v1[0]), b = Names(v1alpha[0]);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace chat::testing

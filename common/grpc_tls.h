#ifndef CHAT_COMMON_GRPC_TLS_H_
#define CHAT_COMMON_GRPC_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace chat {

// TLS of a gRPC server, as PEM file paths. Empty cert and key: plaintext.
struct GrpcServerTls {
  std::string cert_file;       // certificate chain, leaf first
  std::string key_file;        // private key of the leaf
  std::string client_ca_file;  // set: clients must present a certificate signed by it (mTLS)
};

// TLS of a gRPC client channel. Empty ca_file: plaintext.
struct GrpcClientTls {
  std::string ca_file;    // the server's certificate must chain to one of these
  std::string cert_file;  // set with key_file: our certificate, for servers requiring one
  std::string key_file;
  std::string server_name;  // set: the name checked in the server's certificate
};

// What a channel is opened with; the default is plaintext.
struct ChannelSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: plaintext
  std::string server_name;                                // empty: the target's host
};

// Reads and checks the files (PEM parses, the key belongs to the certificate)
// so that a mistake stops the process at start rather than failing every
// handshake later. Errors name the file and what is wrong with it.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> LoadServerCredentials(
    const GrpcServerTls& tls);
absl::StatusOr<ChannelSecurity> LoadChannelSecurity(const GrpcClientTls& tls);

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_TLS_H_

// Mutual TLS between the services (--tls_cert/--tls_key/--tls_client_ca on
// connection-service and message-service, --grpc_ca/--grpc_cert/--grpc_key on
// their clients: the edge and message-service): a CA, server and client
// certificates made with the openssl CLI, the three real binaries, a chat
// exchange through them, and gRPC clients of this test that are refused
// (plaintext, no client certificate, a certificate of another CA) or served
// (the right one). Bad TLS files stop each binary at start, saying why.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "chat/v1/chat.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/e2e/e2e_util.h"
#include "tests/grpc/grpc_test_util.h"
#include "tests/support/process.h"

namespace chat::testing {
namespace {

using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One CA with a server certificate (127.0.0.1, localhost) and a client
// certificate, plus a second CA with its own client certificate; all P-256,
// valid for a day, in a fresh directory.
class Pki {
 public:
  absl::Status Make() {
    std::string dir_template =
        (std::filesystem::temp_directory_path() / "chat-grpc-tls-XXXXXX").string();
    if (mkdtemp(dir_template.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = dir_template;
    if (std::system("openssl version >/dev/null 2>&1") != 0) {
      return absl::FailedPreconditionError(
          "the openssl command is missing (scripts/install-deps.sh installs it)");
    }
    std::ofstream(Path("server.ext"))
        << "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
           "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
    std::ofstream(Path("client.ext"))
        << "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
           "extendedKeyUsage=clientAuth\n";
    for (const char* ca : {"ca", "other-ca"}) {
      if (auto s = Run(absl::StrCat(
              "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
              "-subj /CN=",
              ca, " -keyout ", ca, ".key -out ", ca,
              ".crt -addext basicConstraints=critical,CA:TRUE "
              "-addext keyUsage=critical,keyCertSign,cRLSign"));
          !s.ok()) {
        return s;
      }
    }
    if (auto s = Sign("server", "ca", "server.ext"); !s.ok()) return s;
    if (auto s = Sign("client", "ca", "client.ext"); !s.ok()) return s;
    if (auto s = Sign("stranger", "other-ca", "client.ext"); !s.ok()) return s;
    std::ofstream(Path("garbage.pem")) << "-----BEGIN CERTIFICATE-----\nnot base64\n";
    return absl::OkStatus();
  }
  ~Pki() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  std::string Pem(const std::string& file) const { return ReadAll(Path(file)); }

 private:
  absl::Status Run(const std::string& command) {
    const std::string full = absl::StrCat("cd '", dir_, "' && ", command, " >>openssl.log 2>&1");
    if (std::system(full.c_str()) != 0) {
      return absl::InternalError(
          absl::StrCat("failed: ", command, "\n", ReadAll(Path("openssl.log"))));
    }
    return absl::OkStatus();
  }
  absl::Status Sign(const std::string& name, const std::string& ca, const std::string& ext) {
    if (auto s = Run(absl::StrCat(
            "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=chat-",
            name, " -keyout ", name, ".key -out ", name, ".csr"));
        !s.ok()) {
      return s;
    }
    return Run(absl::StrCat("openssl x509 -req -days 1 -in ", name, ".csr -CA ", ca, ".crt -CAkey ",
                            ca, ".key -set_serial ", ++serial_, " -extfile ", ext, " -out ", name,
                            ".crt"));
  }

  std::string dir_;
  int serial_ = 1000;
};

class GrpcTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status made = pki_.Make();
    ASSERT_TRUE(made.ok()) << made;
  }

  std::vector<std::string> ServerFlags() const {
    return {"--tls_cert=" + pki_.Path("server.crt"), "--tls_key=" + pki_.Path("server.key"),
            "--tls_client_ca=" + pki_.Path("ca.crt")};
  }
  std::vector<std::string> ClientFlags() const {
    return {"--grpc_ca=" + pki_.Path("ca.crt"), "--grpc_cert=" + pki_.Path("client.crt"),
            "--grpc_key=" + pki_.Path("client.key")};
  }

  // A TLS channel trusting our CA, presenting `client` (its .crt/.key) unless empty.
  std::shared_ptr<grpc::Channel> TlsChannel(int port, const std::string& client,
                                            const std::string& ca = "ca.crt") const {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = pki_.Pem(ca);
    if (!client.empty()) {
      options.pem_cert_chain = pki_.Pem(client + ".crt");
      options.pem_private_key = pki_.Pem(client + ".key");
    }
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::SslCredentials(options));
  }

  static grpc::Status ListUsers(const std::shared_ptr<grpc::Channel>& channel,
                                chat::v1::ListUsersResponse* response) {
    auto stub = chat::v1::ConnectionService::NewStub(channel);
    auto ctx = Ctx(std::chrono::seconds(5));
    chat::v1::ListUsersRequest request;
    return stub->ListUsers(ctx.get(), request, response);
  }

  // Runs `argv` to its exit; returns the exit code and (in *log) its stderr.
  static int RunToExit(const std::vector<std::string>& argv, const std::string& log_path,
                       std::string* log) {
    std::error_code ignored;
    std::filesystem::remove(log_path, ignored);
    ChildProcess process;
    EXPECT_TRUE(process.Start(argv, {}, log_path).ok());
    auto status = process.Wait(std::chrono::seconds(15));
    EXPECT_TRUE(status.ok()) << absl::StrJoin(argv, " ") << ": did not exit";
    *log = ReadAll(log_path);
    if (!status.ok() || !WIFEXITED(*status)) return -1;
    return WEXITSTATUS(*status);
  }

  Pki pki_;
};

TEST_F(GrpcTlsTest, MutualTlsClusterChatsAndRefusesOtherClients) {
  ClusterOptions options;
  options.connection_flags = ServerFlags();
  options.message_flags = ServerFlags();
  for (const auto& flag : ClientFlags()) options.message_flags.push_back(flag);
  options.edge_flags = ClientFlags();
  Cluster cluster("grpc-mtls", options);
  const absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started << "\nconnection-service:\n"
                            << ReadAll(cluster.LogPath("connection-service"))
                            << "\nmessage-service:\n"
                            << ReadAll(cluster.LogPath("message-service")) << "\nedge:\n"
                            << ReadAll(cluster.LogPath("edge1"));

  // The edge registered and both links carry messages: a whole exchange,
  // which also needs message-service's own mTLS channel to connection-service
  // (the recipient's lookup).
  {
    auto a = Connect(cluster.edge_port(), "mtls-alice");
    auto b = Connect(cluster.edge_port(), "mtls-bob");
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(
        a->SendText(
             R"({"action":"send","send_to":"mtls-bob","message":"over mTLS","request_id":1})")
            .ok());
    auto sent = a->ReadAction("sent");
    ASSERT_TRUE(sent.ok()) << sent.status();
    auto got = b->ReadAction("send");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Str(*got, "message"), "over mTLS");
    EXPECT_EQ(Str(*got, "sent_by"), "mtls-alice");
  }

  for (const int port : {cluster.connection_port(), cluster.message_port()}) {
    SCOPED_TRACE(absl::StrCat("port ", port));
    std::string error;
    // Plaintext on a TLS port: the handshake never completes.
    auto plain =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    EXPECT_EQ(HealthCheck(plain, "", &error), -1);
    EXPECT_THAT(error, HasSubstr("code 14")) << "UNAVAILABLE expected";
    // TLS without a client certificate: --tls_client_ca requires one.
    error.clear();
    EXPECT_EQ(HealthCheck(TlsChannel(port, ""), "", &error), -1);
    EXPECT_THAT(error, HasSubstr("code 14"));
    // A client certificate signed by another CA.
    error.clear();
    EXPECT_EQ(HealthCheck(TlsChannel(port, "stranger"), "", &error), -1);
    EXPECT_THAT(error, HasSubstr("code 14"));
    // Our client trusting another CA refuses the server's certificate.
    error.clear();
    EXPECT_EQ(HealthCheck(TlsChannel(port, "client", "other-ca.crt"), "", &error), -1);
    EXPECT_THAT(error, HasSubstr("code 14"));
    // The right certificate.
    error.clear();
    EXPECT_EQ(HealthCheck(TlsChannel(port, "client"), "", &error), 1) << error;
  }

  // A real RPC over mTLS: the users the exchange made.
  chat::v1::ListUsersResponse users;
  grpc::Status status = ListUsers(TlsChannel(cluster.connection_port(), "client"), &users);
  ASSERT_TRUE(status.ok()) << Show(status);
  std::vector<std::string> names;
  for (const auto& u : users.users()) names.push_back(u.name());
  EXPECT_THAT(names, ::testing::IsSupersetOf({"mtls-alice", "mtls-bob"}));
  status = ListUsers(TlsChannel(cluster.connection_port(), "stranger"), &users);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << Show(status);
}

// TLS without --tls_client_ca: any TLS client is served, plaintext is not;
// the certificate's name can be overridden (--grpc_server_name) for clients
// that reach the server by another address.
TEST_F(GrpcTlsTest, ServerTlsWithoutClientCertificates) {
  ClusterOptions options;
  options.connection_flags = {"--tls_cert=" + pki_.Path("server.crt"),
                              "--tls_key=" + pki_.Path("server.key")};
  options.message_flags = options.connection_flags;
  options.message_flags.push_back("--grpc_ca=" + pki_.Path("ca.crt"));
  options.message_flags.push_back("--grpc_server_name=localhost");
  options.edge_flags = {"--grpc_ca=" + pki_.Path("ca.crt"), "--grpc_server_name=localhost"};
  Cluster cluster("grpc-tls", options);
  const absl::Status started = cluster.Start();
  ASSERT_TRUE(started.ok()) << started << "\nedge:\n" << ReadAll(cluster.LogPath("edge1"));
  auto a = Connect(cluster.edge_port(), "tls-alice");
  auto b = Connect(cluster.edge_port(), "tls-bob");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(
      a->SendText(R"({"action":"send","send_to":"tls-bob","message":"over TLS","request_id":1})")
          .ok());
  ASSERT_TRUE(a->ReadAction("sent").ok());
  ASSERT_TRUE(b->ReadAction("send").ok());

  std::string error;
  EXPECT_EQ(HealthCheck(TlsChannel(cluster.connection_port(), ""), "", &error), 1) << error;
  error.clear();
  auto plain = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster.connection_port()),
                                   grpc::InsecureChannelCredentials());
  EXPECT_EQ(HealthCheck(plain, "", &error), -1);
}

// An edge whose --grpc_server_name is not in the services' certificate never
// gets its links up: it does not become ready.
TEST_F(GrpcTlsTest, WrongServerNameIsRefused) {
  ClusterOptions options;
  options.connection_flags = {"--tls_cert=" + pki_.Path("server.crt"),
                              "--tls_key=" + pki_.Path("server.key")};
  options.message_flags = options.connection_flags;
  options.message_flags.push_back("--grpc_ca=" + pki_.Path("ca.crt"));
  options.edge_flags = {"--grpc_ca=" + pki_.Path("ca.crt"), "--grpc_server_name=not-this.example"};
  Cluster cluster("grpc-tls-name", options);
  ASSERT_TRUE(cluster.StartConnectionService().ok());
  ASSERT_TRUE(cluster.StartMessageService().ok());
  ASSERT_TRUE(cluster.StartEdge(0).ok());
  EXPECT_FALSE(cluster.WaitEdgeReady(0, std::chrono::seconds(3)).ok());
}

TEST_F(GrpcTlsTest, BadTlsFilesStopEachBinaryAtStart) {
  const std::string bin = CHAT_BINARY_DIR;
  const std::string logs = bin + "/test-logs/grpc-tls-bad.";
  const std::string store = "--store=sqlite:" + pki_.Path("bad-start.db");
  struct Case {
    std::string binary;
    std::vector<std::string> flags;
    std::string expected;  // in the error
  };
  const std::vector<Case> cases = {
      {"connection-service/connection-service",
       {"--tls_cert=" + pki_.Path("missing.crt"), "--tls_key=" + pki_.Path("server.key")},
       "missing.crt"},
      {"connection-service/connection-service",
       {"--tls_cert=" + pki_.Path("server.crt"), "--tls_key=" + pki_.Path("client.key")},
       "is not the key of certificate"},
      {"connection-service/connection-service",
       {"--tls_cert=" + pki_.Path("server.crt")},
       "both a certificate and its key"},
      {"message-service/message-service",
       {"--tls_cert=" + pki_.Path("server.crt"), "--tls_key=" + pki_.Path("server.key"),
        "--tls_client_ca=" + pki_.Path("garbage.pem")},
       "garbage.pem"},
      {"message-service/message-service", {"--grpc_ca=" + pki_.Path("nope.crt")}, "nope.crt"},
      {"message-service/message-service",
       {"--grpc_ca=" + pki_.Path("ca.crt"), "--grpc_cert=" + pki_.Path("client.crt")},
       "both the certificate and key"},
      {"edge/edge", {"--grpc_ca=" + pki_.Path("garbage.pem")}, "garbage.pem"},
      {"edge/edge",
       {"--grpc_ca=" + pki_.Path("ca.crt"), "--grpc_cert=" + pki_.Path("client.crt"),
        "--grpc_key=" + pki_.Path("server.key")},
       "is not the key of certificate"},
      {"edge/edge", {"--grpc_cert=" + pki_.Path("client.crt")}, "needs TLS"},
  };
  int i = 0;
  for (const Case& c : cases) {
    std::vector<std::string> argv = {bin + "/" + c.binary, "--listen=127.0.0.1:0"};
    if (c.binary != "edge/edge") {
      argv.push_back(store);
      argv.push_back("--metrics_listen=");
    }
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    std::string log;
    const int code = RunToExit(argv, absl::StrCat(logs, i++, ".log"), &log);
    EXPECT_GT(code, 0) << absl::StrJoin(argv, " ") << "\n" << log;
    EXPECT_THAT(log, HasSubstr(c.expected)) << absl::StrJoin(argv, " ");
    EXPECT_THAT(log, HasSubstr("TLS")) << absl::StrJoin(argv, " ");
  }
}

}  // namespace
}  // namespace chat::testing

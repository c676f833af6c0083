// TLS on the edge (--tls_cert/--tls_key): wss:// and https:// served by the
// real binaries with a self-signed certificate minted here, the client trusting
// only that certificate; plaintext on the TLS port is not served; a TLS
// handshake that never comes is cut by --handshake_timeout_s; bad flags stop
// the edge at start with a message saying why.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "boost/asio/ip/tcp.hpp"
#include "tests/e2e/e2e_util.h"
#include "tests/support/process.h"

namespace chat::testing {
namespace {

struct CertFiles {
  std::string cert;
  std::string key;
};

void AddExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A self-signed P-256 certificate for 127.0.0.1 and localhost, valid for a
// day, and its key, as PEM files in `dir`: what `openssl req -x509` makes,
// without needing the tool.
CertFiles MakeSelfSigned(const std::string& dir, const std::string& name, long serial) {
  CertFiles files{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  EXPECT_TRUE(key != nullptr && cert != nullptr);
  X509_set_version(cert, 2);  // v3
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, subject);
  AddExtension(cert, NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(cert, NID_subject_key_identifier, "hash");
  AddExtension(cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  EXPECT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* f = std::fopen(files.cert.c_str(), "w");
  EXPECT_TRUE(f != nullptr && PEM_write_X509(f, cert) == 1);
  if (f != nullptr) std::fclose(f);
  f = std::fopen(files.key.c_str(), "w");
  EXPECT_TRUE(f != nullptr &&
              PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  if (f != nullptr) std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return files;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(absl::StrCat(BinaryDir(), "/test-logs/tls-", getpid()));
    std::filesystem::create_directories(*dir_);
    edge_ = new CertFiles(MakeSelfSigned(*dir_, "localhost", 1));
    other_ = new CertFiles(MakeSelfSigned(*dir_, "other", 2));
  }
  static void TearDownTestSuite() {
    std::error_code ignored;
    std::filesystem::remove_all(*dir_, ignored);
    delete dir_;
    delete edge_;
    delete other_;
  }

  static ClusterOptions TlsCluster(std::vector<std::string> extra_flags = {}) {
    ClusterOptions options;
    options.edge_flags = {"--tls_cert=" + edge_->cert, "--tls_key=" + edge_->key};
    options.edge_flags.insert(options.edge_flags.end(), extra_flags.begin(), extra_flags.end());
    options.edge_tls_ca = edge_->cert;
    return options;
  }

  static std::unique_ptr<WsClient> ConnectTls(int port, const std::string& name) {
    HandshakeOptions options;
    options.tls_ca_file = edge_->cert;
    return Connect(port, name, options);
  }

  // Two users over wss:// exchange a message.
  static void ExpectExchange(int port, const std::string& tag) {
    auto a = ConnectTls(port, "a-" + tag);
    auto b = ConnectTls(port, "b-" + tag);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(Str(b->hello(), "user"), "b-" + tag);
    ASSERT_TRUE(a->SendText(absl::StrCat(R"({"action":"send","send_to":"b-)", tag,
                                         R"(","message":"over tls","request_id":7})"))
                    .ok());
    auto sent = a->ReadAction("sent");
    if (!sent.ok()) {
      auto other = a->Read(1s);  // whatever came instead, if anything
      FAIL() << sent.status() << "; instead: "
             << (other.ok() ? other->payload : other.status().ToString());
    }
    auto got = b->ReadAction("send");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Str(*got, "message"), "over tls");
    EXPECT_EQ(Str(*got, "sent_by"), "a-" + tag);
  }

  // The edge's count of live WebSocket connections, from /readyz over https.
  static int LiveConnections(int port) {
    auto ready = HttpsGet(port, "/readyz", edge_->cert);
    if (!ready.ok() || ready->status != 200) return -1;
    return static_cast<int>(Parse(ready->body).at("connections").as_int64());
  }

  // Runs the edge alone with `flags`; returns its wait status and stderr.
  static std::pair<int, std::string> RunEdgeExpectingExit(const std::string& name,
                                                          std::vector<std::string> flags) {
    const std::string log = absl::StrCat(*dir_, "/", name, ".log");
    std::vector<std::string> argv = {BinaryDir() + "/edge/edge", "--listen=127.0.0.1:0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    ChildProcess edge;
    EXPECT_TRUE(edge.Start(argv, {}, log).ok());
    auto status = edge.Wait(10s);
    EXPECT_TRUE(status.ok()) << "the edge kept running with " << absl::StrJoin(flags, " ");
    return {status.ok() ? *status : 0, ReadFile(log)};
  }

  static std::string* dir_;
  static CertFiles* edge_;
  static CertFiles* other_;
};

std::string* TlsTest::dir_ = nullptr;
CertFiles* TlsTest::edge_ = nullptr;
CertFiles* TlsTest::other_ = nullptr;

TEST_F(TlsTest, WssChatHttpsEndpointsAndGracefulClose) {
  Cluster cluster("tls", TlsCluster());
  ASSERT_TRUE(cluster.Start().ok());  // readiness itself was probed over https
  const int port = cluster.edge_port();

  auto health = HttpsGet(port, "/healthz", edge_->cert);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  auto config = HttpsGet(port, "/config.json", edge_->cert);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->status, 200);
  EXPECT_EQ(Str(Parse(config->body), "auth"), "name");

  ExpectExchange(port, "first");

  // The client closes: the close handshake and close_notify complete and the
  // edge forgets the connection.
  auto alice = ConnectTls(port, "alice");
  ASSERT_TRUE(alice);
  EXPECT_TRUE(Eventually([&] { return LiveConnections(port) == 1; })) << LiveConnections(port);
  alice->Close();
  EXPECT_TRUE(Eventually([&] { return LiveConnections(port) == 0; })) << LiveConnections(port);

  // A peer that vanishes (TCP gone mid-session, no close frame, no
  // close_notify) does not leak its session either.
  {
    namespace net = boost::asio;
    namespace websocket = boost::beast::websocket;
    auto context = ClientTlsContext(edge_->cert);
    ASSERT_TRUE(context.ok());
    net::io_context ioc;
    websocket::stream<boost::beast::ssl_stream<boost::beast::tcp_stream>> ws(ioc, **context);
    auto& tcp = boost::beast::get_lowest_layer(ws);
    tcp.expires_after(5s);
    tcp.socket().connect({net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)});
    ws.next_layer().handshake(net::ssl::stream_base::client);
    ws.handshake(absl::StrCat("127.0.0.1:", port), "/?name=ghost");
    EXPECT_TRUE(Eventually([&] { return LiveConnections(port) == 1; })) << LiveConnections(port);
    tcp.socket().close();
  }
  EXPECT_TRUE(Eventually([&] { return LiveConnections(port) == 0; })) << LiveConnections(port);

  // The edge closes (SIGTERM): every wss:// client gets 1001 through the
  // close handshake, and the edge exits cleanly within its drain.
  auto bob = ConnectTls(port, "bob");
  ASSERT_TRUE(bob);
  auto status = cluster.Stop(cluster.edge(0), SIGTERM);
  auto code = bob->ReadUntilClosed();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1001);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
}

TEST_F(TlsTest, PlaintextOnTheTlsPortIsNotServed) {
  Cluster cluster("tls-plain", TlsCluster());
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();

  auto raw = RawRequest(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_FALSE(absl::StrContains(*raw, "HTTP/1.1")) << *raw;  // at most a TLS alert
  auto http = HttpGet(port, "/healthz");
  EXPECT_FALSE(http.ok() && http->status == 200);
  WsClient plain;
  HandshakeOptions ws;
  ws.target = "/?name=mallory";
  ws.expect_hello = false;
  EXPECT_FALSE(plain.Connect(port, ws).ok());

  // A client that does not trust the edge's certificate refuses it.
  WsClient untrusting;
  HandshakeOptions other;
  other.target = "/?name=carol";
  other.tls_ca_file = other_->cert;
  absl::Status refused = untrusting.Connect(port, other);
  EXPECT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.message(), "TLS handshake")) << refused;

  // Meanwhile the edge keeps serving everyone else.
  ExpectExchange(port, "after-plain");
  auto health = HttpsGet(port, "/healthz", edge_->cert);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_TRUE(Eventually([&] { return LiveConnections(port) == 0; })) << LiveConnections(port);
}

TEST_F(TlsTest, SilentClientIsCutByTheHandshakeTimeout) {
  Cluster cluster("tls-slow", TlsCluster({"--handshake_timeout_s=1"}));
  ASSERT_TRUE(cluster.Start().ok());
  // TCP connected, no ClientHello ever: the edge closes within the timeout.
  const auto start = std::chrono::steady_clock::now();
  auto raw = RawRequest(cluster.edge_port(), "", 5s);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_TRUE(raw->empty()) << *raw;
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 4s) << "the silent TLS connection was not cut by --handshake_timeout_s";
  ExpectExchange(cluster.edge_port(), "slow");
}

TEST_F(TlsTest, BadTlsFlagsStopTheEdgeAtStart) {
  auto [only_cert, only_cert_log] =
      RunEdgeExpectingExit("only-cert", {"--tls_cert=" + edge_->cert});
  EXPECT_TRUE(WIFEXITED(only_cert) && WEXITSTATUS(only_cert) != 0) << only_cert;
  EXPECT_TRUE(absl::StrContains(only_cert_log, "--tls_cert and --tls_key go together"))
      << only_cert_log;

  auto [only_key, only_key_log] = RunEdgeExpectingExit("only-key", {"--tls_key=" + edge_->key});
  EXPECT_TRUE(WIFEXITED(only_key) && WEXITSTATUS(only_key) != 0) << only_key;
  EXPECT_TRUE(absl::StrContains(only_key_log, "--tls_cert and --tls_key go together"))
      << only_key_log;

  auto [missing, missing_log] = RunEdgeExpectingExit(
      "missing", {"--tls_cert=" + edge_->cert, "--tls_key=" + *dir_ + "/nonexistent.key"});
  EXPECT_TRUE(WIFEXITED(missing) && WEXITSTATUS(missing) != 0) << missing;
  EXPECT_TRUE(absl::StrContains(missing_log, "cannot read --tls_key")) << missing_log;

  auto [not_pem, not_pem_log] = RunEdgeExpectingExit(
      "not-pem", {"--tls_cert=" + *dir_ + "/only-cert.log", "--tls_key=" + edge_->key});
  EXPECT_TRUE(WIFEXITED(not_pem) && WEXITSTATUS(not_pem) != 0) << not_pem;
  EXPECT_TRUE(absl::StrContains(not_pem_log, "cannot load --tls_cert")) << not_pem_log;

  auto [mismatch, mismatch_log] =
      RunEdgeExpectingExit("mismatch", {"--tls_cert=" + edge_->cert, "--tls_key=" + other_->key});
  EXPECT_TRUE(WIFEXITED(mismatch) && WEXITSTATUS(mismatch) != 0) << mismatch;
  EXPECT_TRUE(absl::StrContains(mismatch_log, "does not match --tls_cert")) << mismatch_log;
}

}  // namespace
}  // namespace chat::testing

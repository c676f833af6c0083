#include "tests/support/jwt_mint.h"

#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace chat::testing {

std::string Base64Url(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (bytes.size() - i == 1) {
    const uint32_t n = at(i) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
  } else if (bytes.size() - i == 2) {
    const uint32_t n = at(i) << 16 | at(i + 1) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
  }
  return out;
}

namespace {

std::string ToPem(EVP_PKEY* key, bool private_key) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (private_key) {
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  } else {
    PEM_write_bio_PUBKEY(bio, key);
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  return pem;
}

std::string BnParam(EVP_PKEY* key, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, name, &bn), 1) << name;
  std::string out(pad > 0 ? pad : BN_num_bytes(bn), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return Base64Url(out);
}

}  // namespace

TestKey MakeRsa(int bits) {
  TestKey k;
  k.pkey.reset(EVP_RSA_gen(static_cast<unsigned>(bits)));
  k.private_pem = ToPem(k.pkey.get(), true);
  k.public_pem = ToPem(k.pkey.get(), false);
  k.jwk_body = absl::StrCat(R"("kty":"RSA","n":")", BnParam(k.pkey.get(), OSSL_PKEY_PARAM_RSA_N),
                            R"(","e":")", BnParam(k.pkey.get(), OSSL_PKEY_PARAM_RSA_E), R"(")");
  return k;
}

TestKey MakeEc() {
  TestKey k;
  k.pkey.reset(EVP_EC_gen("P-256"));
  k.private_pem = ToPem(k.pkey.get(), true);
  k.public_pem = ToPem(k.pkey.get(), false);
  k.jwk_body = absl::StrCat(R"("kty":"EC","crv":"P-256","x":")",
                            BnParam(k.pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32), R"(","y":")",
                            BnParam(k.pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32), R"(")");
  return k;
}

const TestKey& Rsa1() {
  static const TestKey* k = new TestKey(MakeRsa());
  return *k;
}
const TestKey& Rsa2() {
  static const TestKey* k = new TestKey(MakeRsa());
  return *k;
}
const TestKey& Ec1() {
  static const TestKey* k = new TestKey(MakeEc());
  return *k;
}

std::string Jwk(const TestKey& key, const std::string& kid, const std::string& extra) {
  std::string out = absl::StrCat("{", key.jwk_body);
  if (!kid.empty()) absl::StrAppend(&out, R"(,"kid":")", kid, R"(")");
  absl::StrAppend(&out, extra, "}");
  return out;
}

std::string Jwks(std::initializer_list<std::string> keys) {
  std::string out = R"({"keys":[)";
  bool first = true;
  for (const auto& k : keys) {
    if (!first) out += ",";
    first = false;
    out += k;
  }
  return out + "]}";
}

std::string Sign(jwt_alg_t alg, std::string_view key, std::string_view payload_json,
                 std::string_view kid) {
  jwt_t* jwt = nullptr;
  EXPECT_EQ(jwt_new(&jwt), 0);
  EXPECT_EQ(jwt_add_grants_json(jwt, std::string(payload_json).c_str()), 0) << payload_json;
  if (!kid.empty()) {
    EXPECT_EQ(jwt_add_header(jwt, "kid", std::string(kid).c_str()), 0);
  }
  EXPECT_EQ(jwt_set_alg(jwt, alg, reinterpret_cast<const unsigned char*>(key.data()),
                        static_cast<int>(key.size())),
            0);
  char* encoded = jwt_encode_str(jwt);
  EXPECT_NE(encoded, nullptr);
  std::string token = encoded == nullptr ? "" : encoded;
  free(encoded);
  jwt_free(jwt);
  return token;
}

std::string Forge(std::string_view header, std::string_view payload, std::string_view hmac_key) {
  std::string input = absl::StrCat(Base64Url(header), ".", Base64Url(payload));
  std::string mac;
  if (!hmac_key.empty()) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), hmac_key.data(), static_cast<int>(hmac_key.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), out, &len);
    mac.assign(reinterpret_cast<char*>(out), len);
  }
  return absl::StrCat(input, ".", Base64Url(mac));
}

std::string TempFile(std::string_view contents) {
  char path[] = "/tmp/jwks_test_XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
  close(fd);
  return path;
}

TinyHttpServer::TinyHttpServer() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(listen(fd_, 16), 0);
  socklen_t len = sizeof addr;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Run(); });
}

TinyHttpServer::~TinyHttpServer() {
  stop_ = true;
  thread_.join();
  close(fd_);
}

void TinyHttpServer::Serve(int status, std::string body) {
  absl::MutexLock lock(&mu_);
  status_ = status;
  body_ = std::move(body);
}

int TinyHttpServer::requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}

std::string TinyHttpServer::url(const char* path) const {
  return absl::StrCat("http://127.0.0.1:", port_, path);
}

void TinyHttpServer::Run() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;  // 20 ms: how soon the destructor is noticed
    const int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = read(conn, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string response;
    {
      absl::MutexLock lock(&mu_);
      ++requests_;
      response =
          absl::StrCat("HTTP/1.0 ", status_, " X\r\nContent-Type: application/json\r\n",
                       "Content-Length: ", body_.size(), "\r\nConnection: close\r\n\r\n", body_);
    }
    size_t sent = 0;
    while (sent < response.size()) {
      const ssize_t n = write(conn, response.data() + sent, response.size() - sent);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    close(conn);
  }
}

}  // namespace chat::testing

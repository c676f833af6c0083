#ifndef CHAT_TESTS_SUPPORT_JWT_MINT_H_
#define CHAT_TESTS_SUPPORT_JWT_MINT_H_

// Keys, JWKS documents and JWTs made the way an identity provider would make
// them, plus a tiny HTTP server to publish a JWKS from: shared by the JWT
// unit test and the JWT end-to-end test. Independent of the edge's code (its
// own base64url), so a token is never minted by the code that verifies it.

#include <jwt.h>
#include <openssl/evp.h>

#include <atomic>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace chat::testing {

// RFC 4648 §5 base64url without padding.
std::string Base64Url(std::string_view bytes);

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct TestKey {
  Pkey pkey;
  std::string private_pem;
  std::string public_pem;
  std::string jwk_body;  // JWK members without kid
};

TestKey MakeRsa(int bits = 2048);
TestKey MakeEc();  // P-256
// Generating RSA keys is slow: these are made once per test binary.
const TestKey& Rsa1();
const TestKey& Rsa2();
const TestKey& Ec1();

// One JWK (`extra` is appended inside the object, e.g. R"(,"use":"sig")").
std::string Jwk(const TestKey& key, const std::string& kid, const std::string& extra = "");
// {"keys":[...]}
std::string Jwks(std::initializer_list<std::string> keys);

// Signs `payload_json` with libjwt, as a real issuer library would. `key` is
// the HMAC secret or the private key PEM.
std::string Sign(jwt_alg_t alg, std::string_view key, std::string_view payload_json,
                 std::string_view kid = "");
// A token assembled by hand (attacks libjwt would refuse to produce), HMAC'd
// with `hmac_key` when given, else with an empty signature.
std::string Forge(std::string_view header, std::string_view payload, std::string_view hmac_key);

// A file under /tmp holding `contents`; the caller removes it.
std::string TempFile(std::string_view contents);

// A one-connection-at-a-time HTTP/1.0 server on 127.0.0.1:0 answering every
// request with the configured status and body.
class TinyHttpServer {
 public:
  TinyHttpServer();
  ~TinyHttpServer();
  TinyHttpServer(const TinyHttpServer&) = delete;
  TinyHttpServer& operator=(const TinyHttpServer&) = delete;

  void Serve(int status, std::string body);
  int requests();
  std::string url(const char* path = "/.well-known/jwks.json") const;

 private:
  void Run();

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  std::string body_ ABSL_GUARDED_BY(mu_);
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_JWT_MINT_H_

#include "edge/jwt_verifier.h"

#include <jwt.h>

#include <atomic>
#include <cstdio>
#include <limits>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "edge/base64url.h"
#include "edge/jwks.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/jwt_mint.h"

namespace chat::edge {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kNowS = 1764050000;
constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-test";

class FakeClock : public Clock {
 public:
  int64_t NowMs() const override { return now_ms_.load(); }
  void AdvanceS(int64_t s) { now_ms_ += s * 1000; }

 private:
  std::atomic<int64_t> now_ms_{kNowS * 1000};
};

// Keys, JWKS documents, signed and forged tokens: tests/support/jwt_mint.h.
using ::chat::testing::Ec1;
using ::chat::testing::Forge;
using ::chat::testing::Jwk;
using ::chat::testing::Jwks;
using ::chat::testing::MakeEc;
using ::chat::testing::MakeRsa;
using ::chat::testing::Rsa1;
using ::chat::testing::Rsa2;
using ::chat::testing::Sign;
using ::chat::testing::TempFile;
using ::chat::testing::TestKey;
using ::chat::testing::TinyHttpServer;

std::string Claims(const std::string& sub = "alice", const std::string& extra = "") {
  return absl::StrCat(R"({"sub":")", sub, R"(","exp":)", kNowS + 600, extra, "}");
}

void ExpectRejected(const absl::StatusOr<VerifiedToken>& result, std::string_view reason) {
  ASSERT_FALSE(result.ok()) << "expected rejection (" << reason << "), got user " << result->user;
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated) << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(reason));
}

// --- base64url and the unverified front half --------------------------------

TEST(Base64UrlTest, RoundTripsAndIsStrict) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "\xff\xfe\x00\x01"}) {
    auto decoded = Base64UrlDecode(Base64UrlEncode(s));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  // The test tokens' independent encoder agrees.
  for (const std::string& s : {std::string(), std::string("f"), std::string("fo"),
                               std::string("foob"), std::string("\xfb\xff\x00\x01\xfe", 5)}) {
    EXPECT_EQ(::chat::testing::Base64Url(s), Base64UrlEncode(s));
  }
  EXPECT_FALSE(Base64UrlDecode("Zg==").ok());  // padding
  EXPECT_FALSE(Base64UrlDecode("Zm9v YmFy").ok());
  EXPECT_FALSE(Base64UrlDecode("Zm9+").ok());  // standard alphabet
  EXPECT_FALSE(Base64UrlDecode("Z").ok());     // impossible length
  EXPECT_FALSE(Base64UrlDecode("Zh").ok());    // non-zero trailing bits
}

TEST(ParseJwtUnverifiedTest, SplitsAndDecodes) {
  const std::string token = Forge(R"({"alg":"HS256","kid":"k1"})", R"({"sub":"bob"})", kSecret);
  auto parts = ParseJwtUnverified(token);
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ(parts->alg, "HS256");
  EXPECT_EQ(parts->kid, "k1");
  EXPECT_EQ(parts->payload.at("sub").as_string(), "bob");
  EXPECT_EQ(parts->signature.size(), 32u);
}

TEST(ParseJwtUnverifiedTest, RejectsMalformedTokens) {
  const std::string h = Base64UrlEncode(R"({"alg":"HS256"})");
  const std::string p = Base64UrlEncode(R"({"sub":"bob"})");
  const std::pair<std::string, std::string> cases[] = {
      {"", "three"},
      {h + "." + p, "three"},
      {h + "." + p + ".c2ln.x", "three"},
      {"." + p + ".c2ln", "header"},
      {h + "..c2ln", "payload"},
      {h + "=." + p + ".c2ln", "header"},
      {h + "." + p + ".c2ln=", "signature"},
      {Base64UrlEncode("[1]") + "." + p + ".", "not an object"},
      {Base64UrlEncode("{") + "." + p + ".", "not valid JSON"},
      {h + "." + Base64UrlEncode(R"("str")") + ".", "not an object"},
      {Base64UrlEncode(R"({"typ":"JWT"})") + "." + p + ".", "'alg'"},
      {Base64UrlEncode(R"({"alg":256})") + "." + p + ".", "'alg'"},
      {Base64UrlEncode(R"({"alg":"HS256","crit":["exp"]})") + "." + p + ".", "crit"},
      {Base64UrlEncode(R"({"alg":"HS256","kid":7})") + "." + p + ".", "kid"},
      {Base64UrlEncode("{\"alg\":\"HS\xff\"}") + "." + p + ".", "not valid JSON"},
      {h + "." + p + "." + std::string(kMaxJwtBytes, 'A'), "longer than 8192"},
  };
  for (const auto& [token, reason] : cases) {
    auto parts = ParseJwtUnverified(token);
    ASSERT_FALSE(parts.ok()) << token;
    EXPECT_EQ(parts.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parts.status().message()), HasSubstr(reason)) << token;
  }
}

// --- HS256 --------------------------------------------------------------------

class Hs256Test : public ::testing::Test {
 protected:
  std::unique_ptr<JwtVerifier> Make(JwtConfig config = {}) {
    if (config.hs256_secret.empty()) config.hs256_secret = kSecret;
    auto v = JwtVerifier::Create(std::move(config), &clock_);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *std::move(v) : nullptr;
  }
  FakeClock clock_;
};

TEST_F(Hs256Test, AcceptsAValidToken) {
  auto v = Make();
  auto result = v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims("alice")));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->user, "alice");
  EXPECT_EQ(result->expires_at_s, kNowS + 600);
}

TEST_F(Hs256Test, RejectsAWrongSecretAndTampering) {
  auto v = Make();
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, "another-secret-another-secret-xx", Claims())),
                 "signature");
  const std::string good = Sign(JWT_ALG_HS256, kSecret, Claims("alice"));
  const size_t dot1 = good.find('.'), dot2 = good.rfind('.');
  const std::string as_bob =
      absl::StrCat(good.substr(0, dot1 + 1), Base64UrlEncode(Claims("bob")), good.substr(dot2));
  ExpectRejected(v->Verify(as_bob), "signature");
  std::string flipped = good;
  flipped[dot2 + 3] = flipped[dot2 + 3] == 'A' ? 'B' : 'A';
  ExpectRejected(v->Verify(flipped), "signature");
  ExpectRejected(v->Verify(good.substr(0, dot2 + 1)), "no signature");
}

TEST_F(Hs256Test, RejectsAlgNone) {
  auto v = Make();
  ExpectRejected(v->Verify(Forge(R"({"alg":"none"})", Claims(), "")), "'none' is not accepted");
  ExpectRejected(v->Verify(Forge(R"({"alg":"none"})", Claims(), kSecret)), "not accepted");
  ExpectRejected(v->Verify(Forge(R"({"alg":"None"})", Claims(), "")), "not accepted");
}

TEST_F(Hs256Test, RejectsAlgorithmsNotConfigured) {
  auto v = Make();
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS512, kSecret, Claims())), "'HS512' is not accepted");
  ExpectRejected(v->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims())),
                 "RS256 tokens are not accepted");
  ExpectRejected(v->Verify(Sign(JWT_ALG_ES256, Ec1().private_pem, Claims())),
                 "ES256 tokens are not accepted");
}

TEST_F(Hs256Test, ChecksExpiryWithSkew) {
  auto v = Make();
  auto at = [&](int64_t exp) {
    return v->Verify(Sign(JWT_ALG_HS256, kSecret, absl::StrCat(R"({"sub":"a","exp":)", exp, "}")));
  };
  ExpectRejected(at(kNowS - 31), "expired");
  ExpectRejected(at(kNowS - 30), "expired");
  EXPECT_TRUE(at(kNowS - 29).ok());
  EXPECT_TRUE(at(kNowS + 1).ok());
  clock_.AdvanceS(3600);
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims())), "expired");
  ExpectRejected(v->Verify(Forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":"soon"})", kSecret)),
                 "'exp' must be a number");
  auto fractional = v->Verify(Forge(
      R"({"alg":"HS256"})", absl::StrCat(R"({"sub":"a","exp":)", kNowS + 9000, ".5}"), kSecret));
  ASSERT_TRUE(fractional.ok()) << fractional.status();
  EXPECT_EQ(fractional->expires_at_s, kNowS + 9000);
  // Beyond int64: libjwt's JSON parser (jansson) refuses the payload.
  EXPECT_FALSE(
      v->Verify(Forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":18446744073709551615})", kSecret))
          .ok());
  auto far = v->Verify(Forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":1e300})", kSecret));
  ASSERT_TRUE(far.ok()) << far.status();
  EXPECT_EQ(far->expires_at_s, std::numeric_limits<int64_t>::max());
  ExpectRejected(v->Verify(Forge(R"({"alg":"HS256"})", R"({"sub":"a","exp":-1e300})", kSecret)),
                 "expired");
}

TEST_F(Hs256Test, ChecksNotBeforeWithSkew) {
  auto v = Make();
  auto nbf = [&](int64_t t) {
    return v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims("a", absl::StrCat(R"(,"nbf":)", t))));
  };
  EXPECT_TRUE(nbf(kNowS - 100).ok());
  EXPECT_TRUE(nbf(kNowS + 30).ok());
  ExpectRejected(nbf(kNowS + 31), "not valid yet");
}

TEST_F(Hs256Test, RequiresExpUnlessConfiguredOtherwise) {
  const std::string no_exp = Sign(JWT_ALG_HS256, kSecret, R"({"sub":"alice"})");
  ExpectRejected(Make()->Verify(no_exp), "no 'exp'");
  JwtConfig config;
  config.require_exp = false;
  auto result = Make(config)->Verify(no_exp);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->expires_at_s, 0);
}

TEST_F(Hs256Test, ChecksIssuerAndAudience) {
  JwtConfig config;
  config.issuer = "https://idp.example";
  config.audience = "chat";
  auto v = Make(config);
  auto with = [&](const std::string& extra) {
    return v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims("alice", extra)));
  };
  EXPECT_TRUE(with(R"(,"iss":"https://idp.example","aud":"chat")").ok());
  EXPECT_TRUE(with(R"(,"iss":"https://idp.example","aud":["other","chat"])").ok());
  ExpectRejected(with(R"(,"iss":"https://evil.example","aud":"chat")"), "'iss'");
  ExpectRejected(with(R"(,"aud":"chat")"), "'iss'");
  ExpectRejected(with(R"(,"iss":["https://idp.example"],"aud":"chat")"), "'iss'");
  ExpectRejected(with(R"(,"iss":"https://idp.example","aud":"chat2")"), "audience");
  ExpectRejected(with(R"(,"iss":"https://idp.example","aud":["other"])"), "audience");
  ExpectRejected(with(R"(,"iss":"https://idp.example")"), "audience");
  ExpectRejected(with(R"(,"iss":"https://idp.example","aud":[["chat"]])"), "audience");
}

TEST_F(Hs256Test, ChecksTheUserClaim) {
  auto v = Make();
  ExpectRejected(
      v->Verify(Sign(JWT_ALG_HS256, kSecret, absl::StrCat(R"({"exp":)", kNowS + 60, "}"))),
      "no string 'sub'");
  ExpectRejected(v->Verify(Forge(R"({"alg":"HS256"})",
                                 absl::StrCat(R"({"sub":42,"exp":)", kNowS + 60, "}"), kSecret)),
                 "no string 'sub'");
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims(" alice"))),
                 "not a valid user name");
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims(""))), "not a valid user name");
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims("a\\u0007b"))),
                 "not a valid user name");
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims(std::string(65, 'x')))),
                 "not a valid user name");
  auto utf8 = v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims("Zoë Ünal")));
  ASSERT_TRUE(utf8.ok()) << utf8.status();
  EXPECT_EQ(utf8->user, "Zoë Ünal");
}

TEST_F(Hs256Test, CognitoAccessTokens) {
  JwtConfig config;
  config.user_claim = "username";
  config.client_id = "3n4b5urk1ft4fl3mg5e62d9ado";
  auto v = Make(config);
  const std::string cognito = absl::StrCat(
      R"({"sub":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","token_use":"access",)",
      R"("client_id":"3n4b5urk1ft4fl3mg5e62d9ado","username":"alice","exp":)", kNowS + 60, "}");
  auto result = v->Verify(Sign(JWT_ALG_HS256, kSecret, cognito));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->user, "alice");
  ExpectRejected(v->Verify(Sign(JWT_ALG_HS256, kSecret, Claims("alice"))), "'client_id'");
  ExpectRejected(
      v->Verify(Sign(JWT_ALG_HS256, kSecret,
                     absl::StrCat(R"({"client_id":"3n4b5urk1ft4fl3mg5e62d9ado",)",
                                  R"("cognito:username":"alice","exp":)", kNowS + 60, "}"))),
      "no string 'username'");
}

TEST_F(Hs256Test, RejectsOversizedTokens) {
  auto v = Make();
  const std::string big =
      Sign(JWT_ALG_HS256, kSecret,
           Claims("alice", absl::StrCat(R"(,"pad":")", std::string(8200, 'p'), R"(")")));
  ExpectRejected(v->Verify(big), "longer than 8192");
}

TEST_F(Hs256Test, VerifiesFromManyThreads) {
  auto v = Make();
  const std::string good = Sign(JWT_ALG_HS256, kSecret, Claims("alice"));
  const std::string bad = Sign(JWT_ALG_HS256, "another-secret-another-secret-xx", Claims());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (!v->Verify(good).ok() || v->Verify(bad).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(JwtVerifierCreateTest, RejectsBadConfigurations) {
  FakeClock clock;
  JwtConfig short_secret;
  short_secret.hs256_secret = "too-short";
  EXPECT_THAT(std::string(JwtVerifier::Create(short_secret, &clock).status().message()),
              HasSubstr("at least 32 bytes"));
  EXPECT_THAT(std::string(JwtVerifier::Create(JwtConfig{}, &clock).status().message()),
              HasSubstr("needs an HS256 secret or a JWKS"));
  JwtConfig both;
  both.jwks_file = "/x";
  both.jwks_url = "http://127.0.0.1:1/";
  EXPECT_FALSE(JwtVerifier::Create(both, &clock).ok());
  JwtConfig missing;
  missing.jwks_file = "/nonexistent/jwks.json";
  EXPECT_EQ(JwtVerifier::Create(missing, &clock).status().code(), absl::StatusCode::kNotFound);
  JwtConfig garbage;
  garbage.jwks_file = TempFile("not json");
  EXPECT_THAT(std::string(JwtVerifier::Create(garbage, &clock).status().message()),
              HasSubstr("not valid JSON"));
  std::remove(garbage.jwks_file.c_str());
  JwtConfig skew;
  skew.hs256_secret = kSecret;
  skew.clock_skew_s = -1;
  EXPECT_FALSE(JwtVerifier::Create(skew, &clock).ok());
  JwtConfig url_down;
  url_down.jwks_url = "http://127.0.0.1:1/jwks.json";
  url_down.jwks_fetch_timeout = absl::Seconds(2);
  EXPECT_EQ(JwtVerifier::Create(url_down, &clock).status().code(), absl::StatusCode::kUnavailable);
}

// --- RS256 / ES256 from a JWKS file -----------------------------------------

class JwksFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = TempFile(Jwks(
        {Jwk(Rsa1(), "r1", R"(,"use":"sig","alg":"RS256")"), Jwk(Ec1(), "e1"), Jwk(Rsa2(), "r2")}));
    JwtConfig config;
    config.jwks_file = path_;
    auto v = JwtVerifier::Create(config, &clock_);
    ASSERT_TRUE(v.ok()) << v.status();
    verifier_ = *std::move(v);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  FakeClock clock_;
  std::string path_;
  std::unique_ptr<JwtVerifier> verifier_;
};

TEST_F(JwksFileTest, AcceptsRs256AndEs256) {
  auto rs = verifier_->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims("alice"), "r1"));
  ASSERT_TRUE(rs.ok()) << rs.status();
  EXPECT_EQ(rs->user, "alice");
  auto rs2 = verifier_->Verify(Sign(JWT_ALG_RS256, Rsa2().private_pem, Claims("bob"), "r2"));
  ASSERT_TRUE(rs2.ok()) << rs2.status();
  EXPECT_EQ(rs2->user, "bob");
  auto es = verifier_->Verify(Sign(JWT_ALG_ES256, Ec1().private_pem, Claims("carol"), "e1"));
  ASSERT_TRUE(es.ok()) << es.status();
  EXPECT_EQ(es->user, "carol");
}

TEST_F(JwksFileTest, RejectsTheWrongKey) {
  ExpectRejected(verifier_->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "r2")),
                 "signature");
  ExpectRejected(verifier_->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "e1")),
                 "'e1' is not an RS256 key");
  ExpectRejected(verifier_->Verify(Sign(JWT_ALG_ES256, Ec1().private_pem, Claims(), "r1")),
                 "'r1' is not an ES256 key");
  ExpectRejected(verifier_->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "r9")),
                 "unknown key id 'r9'");
  // Two RSA keys: a token without kid is ambiguous.
  ExpectRejected(verifier_->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims())),
                 "has 2 RS256 keys");
  // One EC key: a token without kid may use it.
  EXPECT_TRUE(verifier_->Verify(Sign(JWT_ALG_ES256, Ec1().private_pem, Claims())).ok());
  const TestKey stranger = MakeEc();
  ExpectRejected(verifier_->Verify(Sign(JWT_ALG_ES256, stranger.private_pem, Claims(), "e1")),
                 "signature");
}

TEST_F(JwksFileTest, RejectsAlgorithmConfusion) {
  // The classic: HS256 "signed" with the RSA public key an attacker can download.
  const std::string forged =
      Forge(R"({"alg":"HS256","kid":"r1"})", Claims("admin"), Rsa1().public_pem);
  ExpectRejected(verifier_->Verify(forged), "HS256 tokens are not accepted");
  // Also when HS256 is configured: the secret is used, never the PEM.
  JwtConfig config;
  config.jwks_file = path_;
  config.hs256_secret = kSecret;
  auto both = JwtVerifier::Create(config, &clock_);
  ASSERT_TRUE(both.ok()) << both.status();
  ExpectRejected((*both)->Verify(forged), "signature");
  EXPECT_TRUE((*both)->Verify(Sign(JWT_ALG_HS256, kSecret, Claims())).ok());
  EXPECT_TRUE((*both)->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "r1")).ok());
}

TEST_F(JwksFileTest, RejectsAnAlgThatParsersDisagreeOn) {
  // Duplicate "alg": whichever our JSON parser keeps, libjwt must have checked
  // the same algorithm, else the HMAC-with-the-public-key forgery gets through.
  for (const char* header : {R"({"alg":"RS256","kid":"r1","alg":"HS256"})",
                             R"({"alg":"HS256","kid":"r1","alg":"RS256"})"}) {
    auto result = verifier_->Verify(Forge(header, Claims("admin"), Rsa1().public_pem));
    ASSERT_FALSE(result.ok()) << header;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnauthenticated);
  }
}

// --- JWKS parsing ----------------------------------------------------------------

TEST(ParseJwksTest, SkipsKeysItCannotUse) {
  const TestKey small = MakeRsa(1024);
  auto keys = ParseJwks(Jwks({
      R"({"kty":"oct","k":"c2VjcmV0","kid":"sym"})",
      Jwk(Rsa1(), "enc", R"(,"use":"enc")"),
      Jwk(Rsa1(), "rs512", R"(,"alg":"RS512")"),
      Jwk(small, "small"),
      R"({"kty":"EC","crv":"P-384","x":"AA","y":"AA","kid":"p384"})",
      Jwk(Rsa1(), "good"),
  }));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].kid, "good");
  EXPECT_EQ((*keys)[0].alg, "RS256");
  EXPECT_EQ((*keys)[0].pem, Rsa1().public_pem);
}

TEST(ParseJwksTest, ExportsTheSamePublicKeys) {
  auto keys = ParseJwks(Jwks({Jwk(Ec1(), "e1"), Jwk(Rsa2(), "")}));
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].pem, Ec1().public_pem);
  EXPECT_EQ((*keys)[0].alg, "ES256");
  EXPECT_EQ((*keys)[1].pem, Rsa2().public_pem);
  EXPECT_EQ((*keys)[1].kid, "");
}

TEST(ParseJwksTest, RejectsMalformedKeysAndDocuments) {
  const std::string x = Base64UrlEncode(std::string(32, '\x01'));
  const std::pair<std::string, std::string> cases[] = {
      {"[]", "'keys' array"},
      {R"({"keys":{}})", "'keys' array"},
      {"{", "not valid JSON"},
      {R"({"keys":[7]})", "not an object"},
      {R"({"keys":[{"kid":3,"kty":"RSA"}]})", "'kid'"},
      {R"({"keys":[{"kid":"a"}]})", "'kty'"},
      {R"({"keys":[{"kid":"a","kty":"RSA","n":"AQAB"}]})", "'e'"},
      {R"({"keys":[{"kid":"a","kty":"RSA","n":"AQ=AB","e":"AQAB"}]})", "'n'"},
      {absl::StrCat(R"({"keys":[{"kid":"a","kty":"EC","crv":"P-256","x":")", x, R"(","y":")", x,
                    R"("}]})"),
       "public key"},
      {R"({"keys":[{"kid":"a","kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]})", "32 bytes"},
      {absl::StrCat(R"({"keys":[)", std::string(kMaxJwksKeys, ' '),
                    [] {
                      std::string s;
                      for (size_t i = 0; i <= kMaxJwksKeys; ++i) s += i ? ",{}" : "{}";
                      return s;
                    }(),
                    "]}"),
       "more than"},
  };
  for (const auto& [doc, reason] : cases) {
    auto keys = ParseJwks(doc);
    ASSERT_FALSE(keys.ok()) << doc;
    EXPECT_THAT(std::string(keys.status().message()), HasSubstr(reason)) << doc;
  }
}

// --- refetching: unknown kids, rate limit, last good set ---------------------

class ScriptedFetcher {
 public:
  void Serve(absl::StatusOr<std::string> body) {
    absl::MutexLock lock(&mu_);
    body_ = std::move(body);
  }
  JwksFetcher fetcher() {
    return [this]() -> absl::StatusOr<std::string> {
      absl::MutexLock lock(&mu_);
      ++calls_;
      return body_;
    };
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  absl::StatusOr<std::string> body_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(RefreshingKeySourceTest, RefetchesOnUnknownKidAtMostOncePerInterval) {
  FakeClock clock;
  ScriptedFetcher idp;
  idp.Serve(Jwks({Jwk(Rsa1(), "r1")}));
  RefreshOptions options;
  options.refresh_interval = absl::ZeroDuration();
  options.min_refetch_interval = absl::Seconds(60);
  auto source = RefreshingKeySource::Create(idp.fetcher(), options, &clock);
  ASSERT_TRUE(source.ok()) << source.status();
  RefreshingKeySource* keys = source->get();
  JwtConfig config;
  auto v = JwtVerifier::Create(config, *std::move(source), &clock);
  ASSERT_TRUE(v.ok()) << v.status();
  const JwtVerifier& verifier = **v;
  EXPECT_EQ(idp.calls(), 1);

  // The IdP rotates to r2; our set still has r1 and the last fetch is recent.
  idp.Serve(Jwks({Jwk(Rsa1(), "r1"), Jwk(Rsa2(), "r2")}));
  const std::string r2_token = Sign(JWT_ALG_RS256, Rsa2().private_pem, Claims("bob"), "r2");
  ExpectRejected(verifier.Verify(r2_token), "unknown key id 'r2'");
  EXPECT_EQ(idp.calls(), 1) << "refetched within min_refetch_interval";

  clock.AdvanceS(60);
  auto result = verifier.Verify(r2_token);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->user, "bob");
  EXPECT_EQ(idp.calls(), 2);

  // Made-up kids do not make us hammer the IdP.
  for (int i = 0; i < 20; ++i) {
    ExpectRejected(verifier.Verify(
                       Sign(JWT_ALG_RS256, Rsa2().private_pem, Claims(), absl::StrCat("bogus", i))),
                   "unknown key id");
  }
  EXPECT_EQ(idp.calls(), 2);
  EXPECT_EQ(keys->fetch_count(), 2);

  // A failed refetch keeps the last good set.
  clock.AdvanceS(61);
  idp.Serve(absl::UnavailableError("IdP down"));
  ExpectRejected(verifier.Verify(Sign(JWT_ALG_RS256, Rsa2().private_pem, Claims(), "r3")),
                 "unknown key id");
  EXPECT_EQ(idp.calls(), 3);
  EXPECT_EQ(keys->last_fetch_status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(verifier.Verify(r2_token).ok());
  clock.AdvanceS(61);
  idp.Serve(std::string("{garbage"));
  verifier.Verify(Sign(JWT_ALG_RS256, Rsa2().private_pem, Claims(), "r4")).IgnoreError();
  EXPECT_EQ(keys->last_fetch_status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(verifier.Verify(r2_token).ok());
}

TEST(RefreshingKeySourceTest, UnknownKidsDoNotWaitForAFetchInProgress) {
  FakeClock clock;
  absl::Notification in_fetch, release;
  std::atomic<int> calls{0};
  RefreshOptions options;
  options.refresh_interval = absl::ZeroDuration();
  options.min_refetch_interval = absl::Seconds(60);
  auto source = RefreshingKeySource::Create(
      [&]() -> absl::StatusOr<std::string> {
        if (++calls > 1) {  // the refetch hangs, like a slow IdP
          in_fetch.Notify();
          release.WaitForNotification();
        }
        return Jwks({Jwk(Rsa1(), "r1")});
      },
      options, &clock);
  ASSERT_TRUE(source.ok()) << source.status();
  RefreshingKeySource* keys = source->get();
  clock.AdvanceS(61);
  std::thread slow([&] { keys->RefreshForUnknownKid(); });
  in_fetch.WaitForNotification();
  // Meanwhile other made-up kids are answered from the current set at once.
  for (int i = 0; i < 10; ++i) EXPECT_EQ(keys->RefreshForUnknownKid()->size(), 1u);
  EXPECT_EQ(calls.load(), 2);
  release.Notify();
  slow.join();
}

TEST(RefreshingKeySourceTest, FailsCreateWhenTheFirstFetchFails) {
  FakeClock clock;
  ScriptedFetcher idp;
  idp.Serve(absl::UnavailableError("down"));
  EXPECT_EQ(RefreshingKeySource::Create(idp.fetcher(), {}, &clock).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(RefreshingKeySourceTest, RefreshesInTheBackgroundAndStopsPromptly) {
  FakeClock clock;
  ScriptedFetcher idp;
  idp.Serve(Jwks({Jwk(Rsa1(), "r1")}));
  RefreshOptions options;
  options.refresh_interval = absl::Milliseconds(20);
  auto source = RefreshingKeySource::Create(idp.fetcher(), options, &clock);
  ASSERT_TRUE(source.ok()) << source.status();
  idp.Serve(Jwks({Jwk(Rsa2(), "r2")}));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((*source)->Keys()->empty() || (*source)->Keys()->front().kid != "r2") {
    ASSERT_LT(absl::Now(), deadline) << "background refresh never picked up r2";
    absl::SleepFor(absl::Milliseconds(5));
  }
  idp.Serve(absl::UnavailableError("down"));
  const int64_t before = (*source)->fetch_count();
  while ((*source)->fetch_count() < before + 2) {
    ASSERT_LT(absl::Now(), deadline) << "background refresh stopped";
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ((*source)->Keys()->front().kid, "r2") << "lost the last good set";
  options.refresh_interval = absl::Hours(1);
  auto slow = RefreshingKeySource::Create(idp.fetcher(), options, &clock);
  EXPECT_FALSE(slow.ok());
  idp.Serve(Jwks({Jwk(Rsa1(), "r1")}));
  slow = RefreshingKeySource::Create(idp.fetcher(), options, &clock);
  ASSERT_TRUE(slow.ok());
  const absl::Time start = absl::Now();
  slow->reset();  // must not wait out the hour
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// --- JWKS over HTTP ------------------------------------------------------------

TEST(JwksUrlTest, FetchesRotatesAndRateLimits) {
  TinyHttpServer idp;
  idp.Serve(200, Jwks({Jwk(Rsa1(), "r1"), Jwk(Ec1(), "e1")}));
  FakeClock clock;
  JwtConfig config;
  config.jwks_url = idp.url();
  config.jwks_refresh.refresh_interval = absl::ZeroDuration();
  auto v = JwtVerifier::Create(config, &clock);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(idp.requests(), 1);
  EXPECT_TRUE((*v)->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "r1")).ok());
  EXPECT_TRUE((*v)->Verify(Sign(JWT_ALG_ES256, Ec1().private_pem, Claims(), "e1")).ok());
  EXPECT_EQ(idp.requests(), 1);

  clock.AdvanceS(120);
  idp.Serve(200, Jwks({Jwk(Rsa2(), "r2")}));
  const std::string r2_token = Sign(JWT_ALG_RS256, Rsa2().private_pem, Claims("bob"), "r2");
  auto rotated = (*v)->Verify(r2_token);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->user, "bob");
  EXPECT_EQ(idp.requests(), 2);
  ExpectRejected((*v)->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "r1")),
                 "unknown key id 'r1'");
  EXPECT_EQ(idp.requests(), 2) << "unknown kid refetched within the rate limit";

  clock.AdvanceS(120);
  idp.Serve(500, "oops");
  ExpectRejected((*v)->Verify(Sign(JWT_ALG_RS256, Rsa1().private_pem, Claims(), "r1")),
                 "unknown key id");
  EXPECT_EQ(idp.requests(), 3);
  EXPECT_TRUE((*v)->Verify(r2_token).ok()) << "lost the last good key set";
}

TEST(FetchUrlTest, ReportsHttpErrorsAndOversizedBodies) {
  TinyHttpServer server;
  server.Serve(404, "nope");
  auto not_found = FetchUrl(server.url(), absl::Seconds(5));
  EXPECT_EQ(not_found.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(not_found.status().message()), HasSubstr("HTTP 404"));
  server.Serve(200, std::string(5000, 'x'));
  EXPECT_EQ(FetchUrl(server.url(), absl::Seconds(5), 1000).status().code(),
            absl::StatusCode::kResourceExhausted);
  auto ok = FetchUrl(server.url(), absl::Seconds(5));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 5000u);
  EXPECT_FALSE(FetchUrl("file:///etc/passwd", absl::Seconds(5)).ok());
}

}  // namespace
}  // namespace chat::edge

// docs/protocol.md §1 `jwt` mode against the real binaries: each of the three token
// carriers, HS256 with a shared secret, RS256/ES256 keys from a JWKS file and
// from a JWKS URL, Cognito access tokens, every refusal as the HTTP status a
// client sees, and token expiry on a live connection (1008) unless it was
// refreshed; honest traffic keeps flowing throughout.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/match.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/jwt_mint.h"

namespace chat::testing {
namespace {

constexpr char kSecret[] = "jwt-e2e-secret-0123456789abcdef-0123456789";
constexpr char kIssuer[] = "https://idp.chat.test";
constexpr char kAudience[] = "chat-e2e";
// A Cognito user pool and app client, as they appear in its access tokens.
constexpr char kCognitoIssuer[] = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab12Cd34E";
constexpr char kCognitoClient[] = "3n4b5urk1ft4fl3mg5e62d9ado";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
int64_t NowS() { return NowMs() / 1000; }

// The claims our HS256 cluster requires, for `user`, valid for `ttl_s`.
json::object Claims(const std::string& user, int64_t ttl_s = 600) {
  return {{"sub", user},         {"iss", kIssuer},          {"aud", kAudience},
          {"iat", NowS()},       {"exp", NowS() + ttl_s}};
}
std::string Hs256(const json::object& claims, const char* secret = kSecret) {
  return Sign(JWT_ALG_HS256, secret, json::serialize(claims));
}
std::string Hs256For(const std::string& user, int64_t ttl_s = 600) {
  return Hs256(Claims(user, ttl_s));
}

// A Cognito user-pool access token's claims (no `aud`; `client_id` and `username`).
json::object CognitoAccessClaims(const std::string& username, const std::string& client_id) {
  return {{"sub", "a1b2c3d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d"},
          {"token_use", "access"},
          {"scope", "aws.cognito.signin.user.admin"},
          {"auth_time", NowS() - 5},
          {"iss", kCognitoIssuer},
          {"exp", NowS() + 3600},
          {"iat", NowS() - 5},
          {"jti", "5f1c9f0e-1d2b-4c3a-9e8f-7a6b5c4d3e2f"},
          {"client_id", client_id},
          {"username", username}};
}

enum class Carrier { kSubprotocol, kQuery, kBearer };

HandshakeOptions WithToken(const std::string& token, Carrier carrier = Carrier::kSubprotocol) {
  HandshakeOptions options;
  options.target = "/";
  switch (carrier) {
    case Carrier::kSubprotocol:
      options.subprotocols = {"authorization", token};
      break;
    case Carrier::kQuery:
      options.target = "/?token=" + token;
      break;
    case Carrier::kBearer:
      options.headers = {{"Authorization", "Bearer " + token}};
      break;
  }
  return options;
}

// A client connected with `token`, whose hello names `user`; null (and a test
// failure) otherwise.
std::unique_ptr<WsClient> ConnectAs(int port, const std::string& user, const std::string& token,
                                    Carrier carrier = Carrier::kSubprotocol) {
  auto client = std::make_unique<WsClient>();
  absl::Status s = client->Connect(port, WithToken(token, carrier));
  EXPECT_TRUE(s.ok()) << "connecting as " << user << ": " << s;
  if (!s.ok()) return nullptr;
  EXPECT_EQ(Str(client->hello(), "user"), user);
  return client;
}

// A WebSocket upgrade the edge must refuse: what it answered instead.
HttpResult Upgrade(int port, const std::string& target,
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
  headers.insert(headers.end(), {{"Upgrade", "websocket"},
                                 {"Connection", "Upgrade"},
                                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                 {"Sec-WebSocket-Version", "13"}});
  auto result = HttpGet(port, target, headers);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : HttpResult{};
}

// Expects `token` (in the old app's subprotocol) to be refused with 401 and a
// body naming `reason`.
void ExpectUnauthorized(int port, const std::string& token, const std::string& reason) {
  HttpResult r = Upgrade(port, "/", {{"Sec-WebSocket-Protocol", "authorization, " + token}});
  EXPECT_EQ(r.status, 401) << "expected 401 (" << reason << "): " << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, reason)) << "expected '" << reason << "' in " << r.body;
  EXPECT_EQ(r.headers["www-authenticate"], R"(Bearer error="invalid_token")") << reason;
}

// `from` sends `to_user` a message; `to` receives it with sent_by = `from_user`.
void ExpectDelivered(WsClient& from, const std::string& from_user, WsClient& to,
                     const std::string& to_user, const std::string& text) {
  ASSERT_TRUE(from.SendJson({{"action", "send"},
                             {"send_to", to_user},
                             {"message", text},
                             {"request_id", text}})
                  .ok());
  auto sent = from.ReadAction("sent");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(Str(*sent, "request_id"), text);
  auto got = to.ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "message"), text);
  EXPECT_EQ(Str(*got, "sent_by"), from_user);
  EXPECT_EQ(Str(*got, "send_to"), to_user);
}

struct Closed {
  uint16_t code = 0;
  std::string reason;
  int64_t at_ms = 0;  // wall clock when the client saw it
};

// Reads until the server closes (frames before it are dropped).
absl::StatusOr<Closed> WaitClosed(WsClient& client, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("not closed in time");
    auto frame = client.Read(left);
    if (!frame.ok()) return frame.status();
    if (frame->closed) return Closed{frame->close_code, frame->close_reason, NowMs()};
  }
}

// A file removed when the test ends.
struct TempJwks {
  explicit TempJwks(const std::string& contents) : path(TempFile(contents)) {}
  ~TempJwks() { std::remove(path.c_str()); }
  std::string path;
};

ClusterOptions HsCluster(std::vector<std::string> extra = {}) {
  ClusterOptions options;
  options.edge_flags = {"--auth=jwt", absl::StrCat("--jwt_secret=", kSecret),
                        absl::StrCat("--jwt_issuer=", kIssuer),
                        absl::StrCat("--jwt_audience=", kAudience)};
  options.edge_flags.insert(options.edge_flags.end(), extra.begin(), extra.end());
  return options;
}

TEST(JwtE2eTest, Hs256TokenInEachCarrierNamesTheUser) {
  Cluster cluster("jwt-carriers", HsCluster());
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();

  // The web UI learns the mode here and then offers the subprotocol pair.
  auto config = HttpGet(port, "/config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(absl::StrContains(config->body, R"("auth":"jwt")")) << config->body;

  auto alice = ConnectAs(port, "alice", Hs256For("alice"), Carrier::kSubprotocol);
  auto bob = ConnectAs(port, "bob", Hs256For("bob"), Carrier::kQuery);
  auto carol = ConnectAs(port, "carol", Hs256For("carol"), Carrier::kBearer);
  ASSERT_TRUE(alice && bob && carol);
  // Browsers drop a socket whose offered subprotocol is not answered; the
  // token itself is never echoed back.
  EXPECT_EQ(alice->accepted_subprotocol(), "authorization");
  EXPECT_EQ(bob->accepted_subprotocol(), "");
  EXPECT_EQ(carol->accepted_subprotocol(), "");
  // Other subprotocols are declined, never a failure.
  HandshakeOptions other = WithToken(Hs256For("dan"), Carrier::kBearer);
  other.subprotocols = {"chat.v1"};
  WsClient dan;
  ASSERT_TRUE(dan.Connect(port, other).ok());
  EXPECT_EQ(Str(dan.hello(), "user"), "dan");
  EXPECT_EQ(dan.accepted_subprotocol(), "");

  ExpectDelivered(*alice, "alice", *bob, "bob", "hello bob");
  ExpectDelivered(*bob, "bob", *carol, "carol", "hello carol");
  ExpectDelivered(*carol, "carol", *alice, "alice", "hello alice");
  // The old app's sent_by is checked against the token's user.
  ExpectError(*alice, R"({"action":"send","send_to":"bob","message":"x","sent_by":"carol"})",
              "forbidden");
  ASSERT_TRUE(alice->SendText(R"({"action":"send","send_to":"bob","message":"mine",)"
                              R"("sent_by":"alice"})")
                  .ok());
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "sent_by"), "alice");
  EXPECT_EQ(Str(*got, "message"), "mine");
  // `users` lists the token identities.
  ASSERT_TRUE(carol->SendText(R"({"action":"users","request_id":1})").ok());
  auto users = carol->ReadAction("users");
  ASSERT_TRUE(users.ok()) << users.status();
  std::vector<std::string> names;
  for (const auto& c : users->at("contacts").as_array()) {
    names.emplace_back(c.as_object().at("name").as_string());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"alice", "bob", "carol", "dan"}));

  // A token meant never to expire (exp 9999-12-31T23:59:59Z) keeps its
  // connection: a far exp must not overflow into "already expired".
  json::object forever = Claims("eve");
  forever["exp"] = int64_t{253402300799};
  auto eve = ConnectAs(port, "eve", Hs256(forever), Carrier::kSubprotocol);
  ASSERT_TRUE(eve);
  ASSERT_TRUE(eve->SendText(R"({"action":"ping","request_id":"still-here"})").ok());
  auto pong = eve->ReadAction("pong");
  ASSERT_TRUE(pong.ok()) << pong.status();
  ExpectDelivered(*alice, "alice", *eve, "eve", "forever yours");
}

TEST(JwtE2eTest, NameQueryIsNotAnIdentityInJwtMode) {
  Cluster cluster("jwt-name", HsCluster());
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  // ?name= alone identifies nobody.
  HttpResult r = Upgrade(port, "/?name=alice");
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
  WsClient named;
  HandshakeOptions h;
  h.target = "/?name=alice";
  h.expect_hello = false;
  EXPECT_FALSE(named.Connect(port, h).ok());
  EXPECT_EQ(named.http_status(), 401) << named.http_body();
  // A ?name= that differs from the token's user: 403 (docs/protocol.md §1).
  const std::string alice_token = Hs256For("alice");
  r = Upgrade(port, "/?name=bob", {{"Sec-WebSocket-Protocol", "authorization, " + alice_token}});
  EXPECT_EQ(r.status, 403) << r.body;
  r = Upgrade(port, "/?name=bob&token=" + alice_token);
  EXPECT_EQ(r.status, 403) << r.body;
  // The same name (as old clients still send it) is accepted; the token decides.
  auto options = WithToken(alice_token);
  options.target = "/Prod?name=alice";
  WsClient alice;
  ASSERT_TRUE(alice.Connect(port, options).ok());
  EXPECT_EQ(Str(alice.hello(), "user"), "alice");
  EXPECT_EQ(alice.accepted_subprotocol(), "authorization");
}

TEST(JwtE2eTest, BadTokensAre401WhileHonestUsersKeepTalking) {
  // The honest pair sends in a burst; the rate limit is not what is tested here.
  Cluster cluster("jwt-refused", HsCluster({"--messages_per_second=1000", "--rate_burst=1000"}));
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();

  // No token in any carrier.
  HttpResult none = Upgrade(port, "/");
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer");
  EXPECT_TRUE(absl::StrContains(none.body, "a token is required")) << none.body;
  // The subprotocol without a token after it.
  EXPECT_EQ(Upgrade(port, "/", {{"Sec-WebSocket-Protocol", "authorization"}}).status, 401);
  EXPECT_EQ(Upgrade(port, "/", {{"Authorization", "Basic YWxpY2U6cHc="}}).status, 401);

  const std::string good = Hs256For("mallory");
  const size_t dot1 = good.find('.'), dot2 = good.rfind('.');
  const std::string as_alice = absl::StrCat(
      good.substr(0, dot1 + 1), Base64Url(json::serialize(Claims("alice"))), good.substr(dot2));
  json::object wrong_iss = Claims("mallory");
  wrong_iss["iss"] = "https://evil.example";
  json::object no_iss = Claims("mallory");
  no_iss.erase("iss");
  json::object wrong_aud = Claims("mallory");
  wrong_aud["aud"] = "another-app";
  json::object aud_list = Claims("mallory");
  aud_list["aud"] = json::array{"another-app", "yet-another"};
  json::object not_yet = Claims("mallory");
  not_yet["nbf"] = NowS() + 600;
  json::object no_exp = Claims("mallory");
  no_exp.erase("exp");
  const std::vector<std::pair<std::string, std::string>> refused = {
      {Hs256(Claims("mallory"), "another-secret-another-secret-0123"), "signature"},
      {as_alice, "signature"},
      {good.substr(0, dot2 + 1), "no signature"},
      {Hs256(Claims("mallory", -120)), "expired"},
      {Hs256(not_yet), "not valid yet"},
      {Hs256(no_exp), "no 'exp'"},
      {Hs256(wrong_iss), "'iss'"},
      {Hs256(no_iss), "'iss'"},
      {Hs256(wrong_aud), "audience"},
      {Hs256(aud_list), "audience"},
      {Forge(R"({"alg":"none","typ":"JWT"})", json::serialize(Claims("admin")), ""),
       "'none' is not accepted"},
      {Sign(JWT_ALG_HS512, kSecret, json::serialize(Claims("mallory"))), "'HS512' is not accepted"},
      {Sign(JWT_ALG_RS256, Rsa1().private_pem, json::serialize(Claims("mallory"))),
       "RS256 tokens are not accepted"},
      {Hs256For(" alice"), "not a valid user name"},
      {"not-a-jwt", "malformed"},
  };
  for (const auto& [token, reason] : refused) {
    SCOPED_TRACE(reason);
    ExpectUnauthorized(port, token, reason);
  }
  // Every carrier refuses the same way, and a client sees the 401.
  const std::string expired = Hs256(Claims("mallory", -120));
  for (Carrier carrier : {Carrier::kSubprotocol, Carrier::kQuery, Carrier::kBearer}) {
    WsClient client;
    HandshakeOptions options = WithToken(expired, carrier);
    options.expect_hello = false;
    EXPECT_FALSE(client.Connect(port, options).ok());
    EXPECT_EQ(client.http_status(), 401) << client.http_body();
  }
  // The first carrier found is the token: a bad one is not rescued by a good one.
  EXPECT_EQ(Upgrade(port, "/?token=" + good,
                    {{"Sec-WebSocket-Protocol", "authorization, " + expired}})
                .status,
            401);

  // The same refusals from two threads while two honest users exchange 200
  // messages: nothing of theirs is lost or reordered.
  auto alice = ConnectAs(port, "alice", Hs256For("alice"));
  auto bob = ConnectAs(port, "bob", Hs256For("bob"), Carrier::kBearer);
  ASSERT_TRUE(alice && bob);
  std::atomic<bool> stop{false};
  std::atomic<int> attempts{0}, admitted{0};
  std::vector<std::thread> attackers;
  struct Joiner {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Joiner() {
      stop = true;
      for (auto& t : threads) t.join();
    }
  } joiner{stop, attackers};
  for (int t = 0; t < 2; ++t) {
    attackers.emplace_back([&, t] {
      for (size_t i = t; !stop; i = (i + 1) % refused.size()) {
        HttpResult r = Upgrade(port, "/", {{"Sec-WebSocket-Protocol",
                                            "authorization, " + refused[i].first}});
        ++attempts;
        if (r.status != 401) ++admitted;
      }
    });
  }
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(alice->SendJson({{"action", "send"}, {"send_to", "bob"}, {"message", absl::StrCat(i)}})
                    .ok());
  }
  for (int i = 0; i < kMessages; ++i) {
    auto got = bob->ReadAction("send");
    ASSERT_TRUE(got.ok()) << "message " << i << ": " << got.status();
    EXPECT_EQ(Str(*got, "message"), absl::StrCat(i));
    EXPECT_EQ(Str(*got, "sent_by"), "alice");
  }
  // Keep the honest pair talking until the attackers have really been at it.
  ASSERT_TRUE(Eventually([&] { return attempts.load() >= 50; }));
  ExpectDelivered(*bob, "bob", *alice, "alice", "during the abuse");
  stop = true;
  for (auto& t : attackers) t.join();
  attackers.clear();
  EXPECT_EQ(admitted.load(), 0) << "of " << attempts.load();
  auto ready = HttpGet(port, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_TRUE(absl::StrContains(ready->body, R"("connections":2)")) << ready->body;
}

TEST(JwtE2eTest, ExpiredTokenClosesTheConnectionWith1008UnlessRefreshed) {
  Cluster cluster("jwt-expiry", HsCluster({"--jwt_clock_skew_s=0"}));
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  // Tokens that run out at `expiry` (2-3 s from now), and a witness whose token
  // lasts one second longer.
  const int64_t expiry = NowS() + 3;
  auto short_lived = [&](const std::string& user, int64_t exp) {
    json::object claims = Claims(user);
    claims["exp"] = exp;
    return Hs256(claims);
  };
  auto dave = ConnectAs(port, "dave", short_lived("dave", expiry));
  auto erin = ConnectAs(port, "erin", short_lived("erin", expiry), Carrier::kQuery);
  auto witness = ConnectAs(port, "witness", short_lived("witness", expiry + 1));
  auto h1 = ConnectAs(port, "honest-1", Hs256For("honest-1"));
  auto h2 = ConnectAs(port, "honest-2", Hs256For("honest-2"), Carrier::kBearer);
  ASSERT_TRUE(dave && erin && witness && h1 && h2);

  // erin refreshes with a new token for herself.
  const int64_t renewed = NowS() + 120;
  json::object fresh = Claims("erin");
  fresh["exp"] = renewed;
  ASSERT_TRUE(erin->SendJson({{"action", "refresh"}, {"token", Hs256(fresh)}, {"request_id", 7}})
                  .ok());
  auto refreshed = erin->ReadAction("refreshed");
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->at("request_id").as_int64(), 7);
  EXPECT_EQ(refreshed->at("expires_at").as_int64(), renewed);

  // dave tries to extend his connection with tokens that are not his, or not good.
  json::object erins = Claims("erin");
  json::object expired = Claims("dave", -60);
  json::object foreign_aud = Claims("dave");
  foreign_aud["aud"] = "another-app";
  for (const std::string& token :
       {Hs256(erins), Hs256(expired), Hs256(foreign_aud),
        Hs256(Claims("dave"), "another-secret-another-secret-0123"), std::string("garbage")}) {
    ASSERT_TRUE(dave->SendJson({{"action", "refresh"}, {"token", token}, {"request_id", "r"}}).ok());
    auto error = dave->ReadAction("error");
    ASSERT_TRUE(error.ok()) << error.status();
    EXPECT_EQ(Str(*error, "code"), "forbidden") << json::serialize(*error);
    EXPECT_EQ(Str(*error, "request_id"), "r");
  }
  ExpectError(*dave, R"({"action":"refresh","request_id":1})", "bad_request");
  // The abuse hurts nobody else.
  ExpectDelivered(*h1, "honest-1", *h2, "honest-2", "unaffected");

  // dave's connection ends at his token's exp, the refresh attempts notwithstanding.
  auto dave_closed = WaitClosed(*dave, 8s);
  ASSERT_TRUE(dave_closed.ok()) << dave_closed.status();
  EXPECT_EQ(dave_closed->code, 1008);
  EXPECT_EQ(dave_closed->reason, "token expired");
  EXPECT_GE(dave_closed->at_ms, expiry * 1000 - 100) << "closed before the token expired";
  // The witness ends one second after erin's first token expired...
  auto witness_closed = WaitClosed(*witness, 8s);
  ASSERT_TRUE(witness_closed.ok()) << witness_closed.status();
  EXPECT_EQ(witness_closed->code, 1008);
  EXPECT_GE(witness_closed->at_ms, (expiry + 1) * 1000 - 100);
  // ...and erin, refreshed, is still there and still served.
  ASSERT_TRUE(erin->SendText(R"({"action":"ping","request_id":"still"})").ok());
  auto pong = erin->ReadAction("pong");
  ASSERT_TRUE(pong.ok()) << pong.status();
  ExpectDelivered(*erin, "erin", *h1, "honest-1", "after my first token expired");
  ExpectDelivered(*h2, "honest-2", *erin, "erin", "welcome back");
  // A connection cannot be opened with the expired token any more.
  ExpectUnauthorized(port, short_lived("dave", expiry), "expired");
}

TEST(JwtE2eTest, Rs256AndEs256WithKeysFromAJwksFile) {
  TempJwks jwks(Jwks({Jwk(Rsa1(), "r1", R"(,"use":"sig","alg":"RS256")"), Jwk(Ec1(), "e1")}));
  ClusterOptions options;
  options.edge_flags = {"--auth=jwt", "--jwt_jwks_file=" + jwks.path};
  Cluster cluster("jwt-jwks-file", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  auto claims = [](const std::string& user) {
    return absl::StrCat(R"({"sub":")", user, R"(","exp":)", NowS() + 600, "}");
  };

  auto alice = ConnectAs(port, "alice", Sign(JWT_ALG_RS256, Rsa1().private_pem, claims("alice"), "r1"));
  auto bob = ConnectAs(port, "bob", Sign(JWT_ALG_ES256, Ec1().private_pem, claims("bob"), "e1"),
                       Carrier::kBearer);
  // One EC key in the set: a token without kid may use it.
  auto carol = ConnectAs(port, "carol", Sign(JWT_ALG_ES256, Ec1().private_pem, claims("carol")),
                         Carrier::kQuery);
  ASSERT_TRUE(alice && bob && carol);
  EXPECT_EQ(alice->accepted_subprotocol(), "authorization");
  ExpectDelivered(*alice, "alice", *bob, "bob", "signed with RS256");
  ExpectDelivered(*bob, "bob", *carol, "carol", "signed with ES256");

  ExpectUnauthorized(port, Sign(JWT_ALG_RS256, Rsa2().private_pem, claims("alice"), "r1"),
                     "signature");
  ExpectUnauthorized(port, Sign(JWT_ALG_ES256, MakeEc().private_pem, claims("bob"), "e1"),
                     "signature");
  ExpectUnauthorized(port, Sign(JWT_ALG_RS256, Rsa1().private_pem, claims("alice"), "r9"),
                     "unknown key id 'r9'");
  ExpectUnauthorized(port, Sign(JWT_ALG_ES256, Ec1().private_pem, claims("alice"), "r1"),
                     "'r1' is not an ES256 key");
  // Algorithm confusion: HS256 "signed" with the public key anyone can download.
  ExpectUnauthorized(port, Forge(R"({"alg":"HS256","kid":"r1"})", claims("admin"), Rsa1().public_pem),
                     "HS256 tokens are not accepted");
  ExpectUnauthorized(port, Sign(JWT_ALG_RS256, Rsa1().private_pem,
                                absl::StrCat(R"({"sub":"alice","exp":)", NowS() - 120, "}"), "r1"),
                     "expired");
  ExpectDelivered(*carol, "carol", *alice, "alice", "still talking");
}

TEST(JwtE2eTest, CognitoAccessTokensWithKeysFromAJwksUrl) {
  TinyHttpServer idp;
  idp.Serve(200, Jwks({Jwk(Rsa1(), "r1", R"(,"use":"sig","alg":"RS256")"), Jwk(Ec1(), "e1")}));
  ClusterOptions options;
  options.edge_flags = {"--auth=jwt",
                        "--jwt_jwks_url=" + idp.url(),
                        absl::StrCat("--jwt_issuer=", kCognitoIssuer),
                        absl::StrCat("--jwt_client_id=", kCognitoClient),
                        "--jwt_user_claim=username"};
  Cluster cluster("jwt-jwks-url", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  EXPECT_EQ(idp.requests(), 1) << "the edge fetches the JWKS once at start";
  auto token = [](jwt_alg_t alg, const TestKey& key, const json::object& claims, const char* kid) {
    return Sign(alg, key.private_pem, json::serialize(claims), kid);
  };

  // The user is `username`, not the `sub` UUID.
  auto alice = ConnectAs(port, "alice",
                         token(JWT_ALG_RS256, Rsa1(), CognitoAccessClaims("alice", kCognitoClient), "r1"));
  auto bob = ConnectAs(port, "bob",
                       token(JWT_ALG_ES256, Ec1(), CognitoAccessClaims("bob", kCognitoClient), "e1"),
                       Carrier::kBearer);
  ASSERT_TRUE(alice && bob);
  EXPECT_EQ(alice->accepted_subprotocol(), "authorization");
  ExpectDelivered(*alice, "alice", *bob, "bob", "from a Cognito user");
  ExpectDelivered(*bob, "bob", *alice, "alice", "and back");

  ExpectUnauthorized(port,
                     token(JWT_ALG_RS256, Rsa1(), CognitoAccessClaims("alice", "another-client"), "r1"),
                     "'client_id'");
  // A Cognito id token names the user in cognito:username and has no username.
  json::object id_token = CognitoAccessClaims("alice", kCognitoClient);
  id_token.erase("username");
  id_token["cognito:username"] = "alice";
  ExpectUnauthorized(port, token(JWT_ALG_RS256, Rsa1(), id_token, "r1"), "no string 'username'");
  json::object other_pool = CognitoAccessClaims("alice", kCognitoClient);
  other_pool["iss"] = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other";
  ExpectUnauthorized(port, token(JWT_ALG_RS256, Rsa1(), other_pool, "r1"), "'iss'");
  ExpectUnauthorized(port, token(JWT_ALG_RS256, Rsa2(), CognitoAccessClaims("alice", kCognitoClient), "r1"),
                     "signature");
  // Made-up key ids do not make the edge hammer the IdP: the set was just fetched.
  for (int i = 0; i < 5; ++i) {
    ExpectUnauthorized(port,
                       token(JWT_ALG_RS256, Rsa2(), CognitoAccessClaims("alice", kCognitoClient),
                             absl::StrCat("made-up-", i).c_str()),
                       "unknown key id");
  }
  EXPECT_EQ(idp.requests(), 1);
  ExpectDelivered(*alice, "alice", *bob, "bob", "unaffected");
}

}  // namespace
}  // namespace chat::testing

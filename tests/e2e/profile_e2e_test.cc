// The original app's deployment in `jwt` mode against the real binaries and a
// real Cognito-compatible identity provider (npm cognito-local, run from
// tests/cognito): a pool keyed by e-mail puts a UUID in the access token's
// `username`, and the name the app asks for (?name=) is the user's `name`
// attribute. The edge resolves it with Cognito's GetUser, caches it per
// token, answers 503 + Retry-After when the provider is down, and refuses
// (403) a second account that renamed itself to a name another account
// claimed. Also: a generic OIDC userinfo endpoint, and --on_token_expiry=keep
// with --max_connection_age_s.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "boost/json.hpp"
#include "edge/http_client.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/jwt_mint.h"

namespace chat::testing {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json::object Payload(const std::string& token) {
  const size_t a = token.find('.'), b = token.find('.', a + 1);
  std::string part = token.substr(a + 1, b - a - 1);
  for (char& c : part) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (part.size() % 4 != 0) part += '=';
  std::string bytes;
  absl::Base64Unescape(part, &bytes);
  return json::parse(bytes).as_object();
}

// cognito-local in a temporary directory of its own.
class CognitoLocal {
 public:
  absl::Status Start() {
    char dir[] = "/tmp/chat-cognito-XXXXXX";
    if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp");
    dir_ = dir;
    const std::string launcher = SourceDir() + "/tests/cognito/start.cjs";
    if (!std::filesystem::exists(SourceDir() + "/tests/cognito/node_modules/cognito-local")) {
      return absl::FailedPreconditionError(
          "cognito-local is not installed: run `npm ci` in tests/cognito (ctest's "
          "cognito_install does)");
    }
    absl::Status s = process_.Start(
        {"/bin/sh", "-c",
         absl::StrCat("cd '", dir_, "' && exec node --no-warnings '", launcher, "'")},
        {}, dir_ + "/cognito.log");
    if (!s.ok()) return s;
    auto port = process_.WaitListening(30s);
    if (!port.ok()) return port.status();
    port_ = *port;
    return absl::OkStatus();
  }
  ~CognitoLocal() {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Kill() {
    process_.Signal(SIGKILL);
    (void)process_.Wait(10s);
  }

  std::string endpoint() const { return absl::StrCat("http://127.0.0.1:", port_, "/"); }
  int port() const { return port_; }

  // One Cognito API call; the reply's JSON object (or a test failure).
  json::object Call(const std::string& target, const json::object& body, long want_status = 200) {
    edge::HttpCall call;
    call.method = "POST";
    call.url = endpoint();
    call.headers = {{"Content-Type", "application/x-amz-json-1.1"},
                    {"X-Amz-Target", "AWSCognitoIdentityProviderService." + target}};
    call.body = json::serialize(body);
    auto reply = edge::PerformHttp(call);
    EXPECT_TRUE(reply.ok()) << target << ": " << reply.status();
    if (!reply.ok()) return {};
    EXPECT_EQ(reply->status, want_status) << target << ": " << reply->body;
    boost::system::error_code ec;
    json::value v = json::parse(reply->body, ec);
    return !ec && v.is_object() ? v.as_object() : json::object{};
  }

 private:
  std::string dir_;
  ChildProcess process_;
  int port_ = 0;
};

constexpr char kPassword[] = "Correct-Horse-9";

// A user pool as the original app configures it: e-mail addresses as
// usernames (Cognito then makes the username a UUID) and a `name` attribute.
class CognitoPool {
 public:
  explicit CognitoPool(CognitoLocal* idp) : idp_(idp) {
    json::object pool = idp_->Call(
        "CreateUserPool", {{"PoolName", "chat"}, {"UsernameAttributes", json::array{"email"}}});
    pool_id_ = std::string(pool["UserPool"].as_object()["Id"].as_string());
    json::object client =
        idp_->Call("CreateUserPoolClient", {{"UserPoolId", pool_id_}, {"ClientName", "web"}});
    client_id_ = std::string(client["UserPoolClient"].as_object()["ClientId"].as_string());
  }

  void AddUser(const std::string& email, const std::string& name) {
    idp_->Call("AdminCreateUser",
               {{"UserPoolId", pool_id_},
                {"Username", email},
                {"MessageAction", "SUPPRESS"},
                {"UserAttributes", json::array{json::object{{"Name", "email"}, {"Value", email}},
                                               json::object{{"Name", "name"}, {"Value", name}}}}});
    idp_->Call("AdminSetUserPassword", {{"UserPoolId", pool_id_},
                                        {"Username", email},
                                        {"Password", kPassword},
                                        {"Permanent", true}});
  }
  // Signs in as the app does; returns the access token.
  std::string SignIn(const std::string& email) {
    json::object auth = idp_->Call(
        "InitiateAuth", {{"ClientId", client_id_},
                         {"AuthFlow", "USER_PASSWORD_AUTH"},
                         {"AuthParameters", {{"USERNAME", email}, {"PASSWORD", kPassword}}}});
    const json::value* result = auth.if_contains("AuthenticationResult");
    EXPECT_NE(result, nullptr) << json::serialize(auth);
    if (result == nullptr) return "";
    return std::string(result->as_object().at("AccessToken").as_string());
  }
  // What Cognito lets every user do by default: edit their own `name`.
  void Rename(const std::string& access_token, const std::string& name) {
    idp_->Call("UpdateUserAttributes",
               {{"AccessToken", access_token},
                {"UserAttributes", json::array{json::object{{"Name", "name"}, {"Value", name}}}}});
  }

  std::string jwks_url() const {
    return absl::StrCat(idp_->endpoint(), pool_id_, "/.well-known/jwks.json");
  }
  const std::string& client_id() const { return client_id_; }

  // Edge flags for the original app's deployment against this pool.
  std::vector<std::string> EdgeFlags(const std::string& issuer) const {
    return {"--auth=jwt",
            "--jwt_jwks_url=" + jwks_url(),
            "--jwt_issuer=" + issuer,
            "--jwt_client_id=" + client_id_,
            "--jwt_user_claim=username",
            "--jwt_profile=cognito",
            "--cognito_endpoint=" + idp_->endpoint(),
            "--jwt_profile_timeout_ms=2000",
            "--on_token_expiry=keep"};
  }

 private:
  CognitoLocal* idp_;
  std::string pool_id_, client_id_;
};

HandshakeOptions AppHandshake(const std::string& name, const std::string& token) {
  HandshakeOptions options;
  options.target = "/?name=" + name;
  options.subprotocols = {"authorization", token};
  return options;
}

// The refusal a client sees for this upgrade (status, headers, body).
HttpResult Refusal(int port, const std::string& name, const std::string& token) {
  auto result = HttpGet(port, "/?name=" + name,
                        {{"Upgrade", "websocket"},
                         {"Connection", "Upgrade"},
                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                         {"Sec-WebSocket-Version", "13"},
                         {"Sec-WebSocket-Protocol", "authorization, " + token}},
                        10s);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : HttpResult{};
}

std::unique_ptr<WsClient> ConnectApp(int port, const std::string& name, const std::string& token) {
  auto client = std::make_unique<WsClient>();
  absl::Status s = client->Connect(port, AppHandshake(name, token), 10s);
  EXPECT_TRUE(s.ok()) << "connecting as " << name << ": " << s << " " << client->http_body();
  if (!s.ok()) return nullptr;
  EXPECT_EQ(Str(client->hello(), "user"), name);
  EXPECT_EQ(client->accepted_subprotocol(), "authorization");
  return client;
}

void ExpectDelivered(WsClient& from, const std::string& from_user, WsClient& to,
                     const std::string& to_user, const std::string& text) {
  ASSERT_TRUE(from.SendJson({{"action", "send"}, {"send_to", to_user}, {"message", text}}).ok());
  auto got = to.ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "message"), text);
  EXPECT_EQ(Str(*got, "sent_by"), from_user);
}

class CognitoProfileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(idp_.Start().ok()) << "cognito-local did not start"; }
  CognitoLocal idp_;
};

TEST_F(CognitoProfileTest, TheOriginalAppsPoolBindsConnectionsToTheNameAttribute) {
  CognitoPool pool(&idp_);
  pool.AddUser("alice@example.com", "Alice");
  pool.AddUser("bob@example.com", "Bob");
  pool.AddUser("carol@example.com", "Carol");
  const std::string alice_token = pool.SignIn("alice@example.com");
  const std::string bob_token = pool.SignIn("bob@example.com");
  const std::string carol_token = pool.SignIn("carol@example.com");
  ASSERT_FALSE(alice_token.empty() || bob_token.empty() || carol_token.empty());
  // The access token names a UUID, not the name the app shows.
  json::object claims = Payload(alice_token);
  const std::string alice_uuid(claims["username"].as_string());
  ASSERT_NE(alice_uuid, "Alice");

  ClusterOptions options;
  options.edge_flags = pool.EdgeFlags(std::string(claims["iss"].as_string()));
  Cluster cluster("profile-cognito", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();

  auto alice = ConnectApp(port, "Alice", alice_token);
  auto bob = ConnectApp(port, "Bob", bob_token);
  ASSERT_TRUE(alice && bob);
  ExpectDelivered(*alice, "Alice", *bob, "Bob", "hi Bob");
  ExpectDelivered(*bob, "Bob", *alice, "Alice", "hi Alice");
  // Another name than the profile's is not the user's.
  HttpResult other = Refusal(port, "Bob", alice_token);
  EXPECT_EQ(other.status, 403) << other.body;
  EXPECT_TRUE(absl::StrContains(other.body, "('Alice')")) << other.body;
  // Without ?name= the token's own user claim applies, as before.
  WsClient plain;
  HandshakeOptions no_name;
  no_name.target = "/";
  no_name.subprotocols = {"authorization", alice_token};
  ASSERT_TRUE(plain.Connect(port, no_name).ok()) << plain.http_body();
  EXPECT_EQ(Str(plain.hello(), "user"), alice_uuid);

  // A new token of the same account renews the connection, though its user
  // claim is the UUID and the connection is "Alice"; Bob's token does not.
  ASSERT_TRUE(
      alice->SendJson({{"action", "refresh"}, {"token", pool.SignIn("alice@example.com")}}).ok());
  auto refreshed = alice->ReadAction("refreshed");
  EXPECT_TRUE(refreshed.ok()) << refreshed.status();
  ExpectError(*alice, json::serialize(json::object{{"action", "refresh"}, {"token", bob_token}}),
              "forbidden");

  // The app reconnects with the same token: the cached name is used. With
  // the provider gone, only a cached answer can admit it...
  idp_.Kill();
  auto alice_again = ConnectApp(port, "Alice", alice_token);
  ASSERT_TRUE(alice_again);
  ExpectDelivered(*alice_again, "Alice", *bob, "Bob", "still here");
  // ...while a token it has not seen cannot be resolved: 503, retry later,
  // never a guess.
  HttpResult down = Refusal(port, "Carol", carol_token);
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_FALSE(down.headers["retry-after"].empty());
  EXPECT_TRUE(absl::StrContains(down.body, "identity provider")) << down.body;
}

TEST_F(CognitoProfileTest, ASecondAccountRenamedToAClaimedNameIsRefused) {
  CognitoPool pool(&idp_);
  pool.AddUser("alice@example.com", "Alice");
  pool.AddUser("mallory@example.com", "Mallory");
  const std::string alice_token = pool.SignIn("alice@example.com");
  const std::string mallory_token = pool.SignIn("mallory@example.com");
  ClusterOptions options;
  options.edge_flags = pool.EdgeFlags(std::string(Payload(alice_token)["iss"].as_string()));
  Cluster cluster("profile-claims", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();

  auto alice = ConnectApp(port, "Alice", alice_token);  // claims "Alice"
  auto mallory = ConnectApp(port, "Mallory", mallory_token);
  ASSERT_TRUE(alice && mallory);

  // Mallory edits her own `name` (Cognito allows it by default) and signs
  // in again: her profile now says "Alice", but the name is Alice's.
  pool.Rename(mallory_token, "Alice");
  const std::string renamed_token = pool.SignIn("mallory@example.com");
  HttpResult stolen = Refusal(port, "Alice", renamed_token);
  EXPECT_EQ(stolen.status, 403) << stolen.body;
  EXPECT_TRUE(absl::StrContains(stolen.body, "belongs to another account")) << stolen.body;
  // Her old token's profile was read before the rename: still not Alice.
  EXPECT_EQ(Refusal(port, "Alice", mallory_token).status, 403);
  // Nothing she sends arrives as Alice; Alice herself keeps her name, also
  // on a new token.
  ExpectDelivered(*mallory, "Mallory", *alice, "Alice", "I am Mallory");
  auto alice_again = ConnectApp(port, "Alice", pool.SignIn("alice@example.com"));
  ASSERT_TRUE(alice_again);
  // Claims live in connection-service: a restarted edge knows them too.
  ASSERT_TRUE(cluster.Stop(cluster.edge(0), SIGTERM).ok());
  ASSERT_TRUE(cluster.StartEdge(0).ok());
  ASSERT_TRUE(cluster.WaitEdgeReady(0).ok());
  EXPECT_EQ(Refusal(cluster.edge_port(), "Alice", renamed_token).status, 403);
}

// Generic OpenID Connect: the name comes from a userinfo endpoint (here a
// fixed answer), whose `sub` must be the token's.
TEST(UserinfoProfileTest, NameFromUserinfoWhenItsSubjectMatches) {
  constexpr char kSecret[] = "profile-e2e-secret-0123456789abcdef-0123";
  TinyHttpServer userinfo;
  userinfo.Serve(200, R"({"sub":"u-1","name":"Dora","email":"dora@example.com"})");
  ClusterOptions options;
  options.edge_flags = {"--auth=jwt", absl::StrCat("--jwt_secret=", kSecret),
                        "--jwt_profile=userinfo", "--userinfo_url=" + userinfo.url("/userinfo"),
                        "--jwt_profile_timeout_ms=2000"};
  Cluster cluster("profile-userinfo", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  auto token = [&](const std::string& sub) {
    return Sign(JWT_ALG_HS256, kSecret,
                json::serialize(json::object{{"sub", sub}, {"exp", NowMs() / 1000 + 600}}));
  };
  const std::string dora = token("u-1");
  auto client = ConnectApp(port, "Dora", dora);
  ASSERT_TRUE(client);
  EXPECT_EQ(userinfo.requests(), 1);
  auto again = ConnectApp(port, "Dora", dora);  // cached: no second request
  ASSERT_TRUE(again);
  EXPECT_EQ(userinfo.requests(), 1);
  // An answer about another subject is not this user's profile.
  HttpResult foreign = Refusal(port, "Dora", token("u-2"));
  EXPECT_EQ(foreign.status, 401) << foreign.body;
  // The endpoint failing: 503 with Retry-After.
  userinfo.Serve(500, "oops");
  HttpResult failing = Refusal(port, "Dora", token("u-1-new"));
  EXPECT_EQ(failing.status, 503) << failing.body;
  EXPECT_FALSE(failing.headers["retry-after"].empty());
}

// --on_token_expiry=keep: the token is checked at the handshake only, as API
// Gateway does; --max_connection_age_s still ends every connection (1001).
TEST(TokenExpiryTest, KeptConnectionsOutliveTheirTokenUntilTheAgeLimit) {
  constexpr char kSecret[] = "expiry-e2e-secret-0123456789abcdef-01234";
  ClusterOptions options;
  options.edge_flags = {"--auth=jwt", absl::StrCat("--jwt_secret=", kSecret),
                        "--jwt_clock_skew_s=0", "--on_token_expiry=keep",
                        "--max_connection_age_s=5"};
  Cluster cluster("expiry-keep", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  const int64_t exp_s = NowMs() / 1000 + 2;
  auto token = [&](const std::string& user, int64_t exp) {
    return Sign(JWT_ALG_HS256, kSecret, json::serialize(json::object{{"sub", user}, {"exp", exp}}));
  };
  const int64_t opened_ms = NowMs();
  WsClient short_lived, witness;
  HandshakeOptions a, b;
  a.target = b.target = "/";
  a.subprotocols = {"authorization", token("keeper", exp_s)};
  b.subprotocols = {"authorization", token("witness", exp_s + 3600)};
  ASSERT_TRUE(short_lived.Connect(port, a).ok());
  ASSERT_TRUE(witness.Connect(port, b).ok());

  // Past the token's exp the connection is still open and working.
  const auto until_past_exp = std::chrono::milliseconds(exp_s * 1000 + 1500 - NowMs());
  absl::StatusOr<Frame> early = short_lived.Read(until_past_exp);
  ASSERT_FALSE(early.ok() && early->closed) << "closed at exp: " << early->close_code;
  ExpectDelivered(short_lived, "keeper", witness, "witness", "after my token expired");

  // At the age limit both close with 1001, the witness's good token or not.
  for (WsClient* client : {&short_lived, &witness}) {
    absl::StatusOr<Frame> frame;
    do {
      frame = client->Read(15s);
    } while (frame.ok() && !frame->closed);
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(frame->close_code, 1001);
    EXPECT_EQ(frame->close_reason, "connection age limit reached");
    EXPECT_GE(NowMs() - opened_ms, 5000 - 200);
  }
  // A new connection still needs a good token.
  HttpResult expired = Refusal(port, "keeper", token("keeper", exp_s));
  EXPECT_EQ(expired.status, 401) << expired.body;
}

// The age limit applies with --on_token_expiry=close too: a token good for
// an hour does not keep a connection past --max_connection_age_s.
TEST(TokenExpiryTest, TheAgeLimitAlsoEndsConnectionsWhoseTokenIsStillGood) {
  constexpr char kSecret[] = "expiry-e2e-secret-0123456789abcdef-01234";
  ClusterOptions options;
  options.edge_flags = {"--auth=jwt", absl::StrCat("--jwt_secret=", kSecret),
                        "--on_token_expiry=close", "--max_connection_age_s=2"};
  Cluster cluster("expiry-age", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int64_t opened_ms = NowMs();
  WsClient client;
  HandshakeOptions handshake;
  handshake.target = "/";
  handshake.subprotocols = {
      "authorization",
      Sign(JWT_ALG_HS256, kSecret,
           json::serialize(json::object{{"sub", "long-lived"}, {"exp", NowMs() / 1000 + 3600}}))};
  ASSERT_TRUE(client.Connect(cluster.edge_port(), handshake).ok());
  absl::StatusOr<Frame> frame;
  do {
    frame = client.Read(15s);
  } while (frame.ok() && !frame->closed);
  ASSERT_TRUE(frame.ok()) << frame.status();
  EXPECT_EQ(frame->close_code, 1001);
  EXPECT_EQ(frame->close_reason, "connection age limit reached");
  EXPECT_GE(NowMs() - opened_ms, 2000 - 200);
}

}  // namespace
}  // namespace chat::testing

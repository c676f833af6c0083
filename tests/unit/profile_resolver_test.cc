// The pieces behind jwt-mode profile resolution: the bounded WorkQueue, the
// Cognito GetUser and OIDC userinfo reply parsers, ProfileResolver's per-token
// cache and shared lookups, JwtIdentities' decisions, and connection-service's
// NameClaims.
#include "edge/profile_resolver.h"

#include <atomic>
#include <future>

#include "absl/synchronization/notification.h"
#include "connection-service/name_claims.h"
#include "edge/jwt_identities.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace chat::edge {
namespace {

using chat::testing::FakeClock;
using ::testing::HasSubstr;

TEST(WorkQueueTest, RefusesBeyondItsBacklogAndRunsWhatItTook) {
  absl::Notification release;
  std::atomic<int> ran{0};
  {
    WorkQueue queue("test", 1, 2);
    absl::Notification started;
    ASSERT_TRUE(queue.TryPost([&] {
      started.Notify();
      release.WaitForNotification();
      ++ran;
    }));
    started.WaitForNotification();  // the worker is busy; two may wait
    EXPECT_TRUE(queue.TryPost([&] { ++ran; }));
    EXPECT_TRUE(queue.TryPost([&] { ++ran; }));
    EXPECT_FALSE(queue.TryPost([&] { ++ran; }));
    EXPECT_EQ(queue.queued(), 2u);
    release.Notify();
  }  // the destructor runs what was queued, then joins
  EXPECT_EQ(ran.load(), 3);
}

constexpr char kSub[] = "e406c5fc-f9e1-4751-89ed-16a030863ea0";

TEST(ProfileParsersTest, CognitoGetUser) {
  const std::string ok = absl::StrCat(
      R"({"Username":"e406c5fc","UserAttributes":[{"Name":"email","Value":"a@example.com"},)",
      R"({"Name":"name","Value":"Alice"},{"Name":"sub","Value":")", kSub, R"("}]})");
  EXPECT_EQ(*NameFromGetUser(ok, 200, "name", kSub), "Alice");
  EXPECT_EQ(*NameFromGetUser(ok, 200, "email", kSub), "a@example.com");
  // Another account's profile (a confused provider) is never used.
  EXPECT_EQ(NameFromGetUser(ok, 200, "name", "someone-else").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(NameFromGetUser(ok, 200, "nickname", kSub).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(
      NameFromGetUser(R"({"UserAttributes":[{"Name":"name","Value":" Alice"}]})", 200, "name", "")
          .status()
          .code(),
      absl::StatusCode::kPermissionDenied);  // not a valid user name
  EXPECT_EQ(NameFromGetUser(
                R"({"__type":"NotAuthorizedException","message":"Access Token has been revoked"})",
                400, "name", kSub)
                .status()
                .code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(NameFromGetUser(R"({"__type":"TooManyRequestsException"})", 400, "name", kSub)
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(NameFromGetUser("<html>", 502, "name", kSub).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(NameFromGetUser("not json", 200, "name", kSub).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(ProfileParsersTest, OidcUserinfo) {
  EXPECT_EQ(*NameFromUserinfo(R"({"sub":"u1","name":"Dora"})", 200, "name", "u1"), "Dora");
  EXPECT_EQ(NameFromUserinfo(R"({"sub":"u2","name":"Dora"})", 200, "name", "u1").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(NameFromUserinfo(R"({"name":"Dora"})", 200, "name", "u1").status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(NameFromUserinfo("", 401, "name", "u1").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(NameFromUserinfo("", 503, "name", "u1").status().code(),
            absl::StatusCode::kUnavailable);
}

absl::StatusOr<std::string> ResolveNow(ProfileResolver& resolver, const std::string& token,
                                       int64_t exp_s) {
  std::promise<absl::StatusOr<std::string>> answer;
  resolver.Resolve(token, "sub", exp_s,
                   [&](absl::StatusOr<std::string> name) { answer.set_value(std::move(name)); });
  return answer.get_future().get();
}

TEST(ProfileResolverTest, CachesNamesPerTokenUntilExpiryAndNeverFailures) {
  FakeClock clock;
  std::atomic<int> calls{0};
  std::atomic<bool> fail{false};
  ProfileResolver resolver(
      [&](const std::string& token, const std::string&) -> absl::StatusOr<std::string> {
        ++calls;
        if (fail) return absl::UnavailableError("down");
        return "name-of-" + token;
      },
      &clock, 2, 16, 100);
  const int64_t exp_s = clock.NowMs() / 1000 + 60;
  EXPECT_EQ(*ResolveNow(resolver, "t1", exp_s), "name-of-t1");
  EXPECT_EQ(*ResolveNow(resolver, "t1", exp_s), "name-of-t1");
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(*ResolveNow(resolver, "t2", exp_s), "name-of-t2");
  EXPECT_EQ(calls.load(), 2);
  // Down: the cached token still resolves, a new one fails and is not cached.
  fail = true;
  EXPECT_EQ(*ResolveNow(resolver, "t1", exp_s), "name-of-t1");
  EXPECT_EQ(ResolveNow(resolver, "t3", exp_s).status().code(), absl::StatusCode::kUnavailable);
  fail = false;
  EXPECT_EQ(*ResolveNow(resolver, "t3", exp_s), "name-of-t3");
  EXPECT_EQ(calls.load(), 4);
  // Past the token's exp the cached name is gone.
  clock.Advance(61'000);
  fail = true;
  EXPECT_FALSE(ResolveNow(resolver, "t1", exp_s).ok());
  EXPECT_EQ(resolver.fetches(), calls.load());
}

TEST(ProfileResolverTest, ConcurrentLookupsOfOneTokenShareOneCall) {
  FakeClock clock;
  absl::Notification release;
  std::atomic<int> calls{0};
  ProfileResolver resolver(
      [&](const std::string&, const std::string&) -> absl::StatusOr<std::string> {
        ++calls;
        release.WaitForNotification();
        return "Alice";
      },
      &clock, 2, 16, 100);
  std::atomic<int> answers{0};
  for (int i = 0; i < 5; ++i) {
    resolver.Resolve("same", "sub", clock.NowMs() / 1000 + 60,
                     [&](absl::StatusOr<std::string> name) {
                       EXPECT_EQ(*name, "Alice");
                       ++answers;
                     });
  }
  release.Notify();
  EXPECT_EQ(*ResolveNow(resolver, "same", clock.NowMs() / 1000 + 60), "Alice");
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(answers.load(), 5);
}

TEST(ProfileResolverTest, AFullQueueIsRefusedAtOnce) {
  FakeClock clock;
  absl::Notification release;
  // Declared before the resolver: its destructor runs the queued callbacks.
  std::atomic<int> done{0};
  absl::StatusOr<std::string> third = std::string();
  bool answered = false;
  ProfileResolver resolver(
      [&](const std::string&, const std::string&) -> absl::StatusOr<std::string> {
        release.WaitForNotification();
        return "x";
      },
      &clock, 1, 1, 100);
  const int64_t exp_s = clock.NowMs() / 1000 + 60;
  auto count = [&](absl::StatusOr<std::string>) { ++done; };
  resolver.Resolve("a", "s", exp_s, count);  // running (or queued)
  resolver.Resolve("b", "s", exp_s, count);  // queued (or running)
  // The worker may not have taken "a" yet: keep offering until one is refused.
  for (int i = 0; i < 3 && !answered; ++i) {
    resolver.Resolve(absl::StrCat("c", i), "s", exp_s, [&](absl::StatusOr<std::string> name) {
      if (!name.ok()) {
        third = name;
        answered = true;
      }
    });
  }
  EXPECT_TRUE(answered);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(HttpStatusForRefusal(third.status()), 503);
  release.Notify();
}

// A verifier answering from a table, inline.
class TableVerifier : public TokenVerifier {
 public:
  void Verify(std::string token, std::function<void(absl::StatusOr<Identity>)> done) override {
    if (token == "alice") return done(Identity{"uuid-a", 0, "sub-a"});
    if (token == "mallory") return done(Identity{"uuid-m", 0, "sub-m"});
    if (token == "nosub") return done(Identity{"uuid-n", 0, ""});
    if (token == "busy") return done(absl::ResourceExhaustedError("queue full"));
    done(absl::UnauthenticatedError("bad signature"));
  }
  int64_t clock_skew_s() const override { return 0; }
};

class MapClaims : public NameClaims {
 public:
  void Claim(const std::string& name, const std::string& subject,
             std::function<void(absl::StatusOr<bool>)> done) override {
    if (down) return done(absl::UnavailableError("connection-service down"));
    done(owners.try_emplace(name, subject).first->second == subject);
  }
  std::map<std::string, std::string> owners;
  bool down = false;
};

absl::StatusOr<Identity> Resolve(JwtIdentities& identities, const std::string& token,
                                 std::optional<std::string> name) {
  absl::StatusOr<Identity> out = absl::InternalError("no answer");
  std::promise<void> done;
  identities.Resolve(token, std::move(name), [&](absl::StatusOr<Identity> identity) {
    out = std::move(identity);
    done.set_value();
  });
  done.get_future().wait();
  return out;
}

TEST(JwtIdentitiesTest, ProfileNamesAreClaimedBySubject) {
  FakeClock clock;
  TableVerifier tokens;
  MapClaims claims;
  std::map<std::string, std::string> profile = {{"alice", "Alice"}, {"mallory", "Alice"}};
  ProfileResolver profiles(
      [&](const std::string& token, const std::string&) -> absl::StatusOr<std::string> {
        return profile.at(token);
      },
      &clock, 1, 8, 100);
  JwtIdentities identities(&tokens, &profiles, &claims);

  auto alice = Resolve(identities, "alice", "Alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->user, "Alice");
  EXPECT_EQ(alice->subject, "sub-a");
  // Mallory's profile says Alice too: the name is sub-a's.
  auto mallory = Resolve(identities, "mallory", "Alice");
  EXPECT_EQ(mallory.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(mallory.status().message()), HasSubstr("belongs to another account"));
  // A name that is neither the token's user nor the profile's.
  EXPECT_EQ(Resolve(identities, "alice", "Bob").status().code(),
            absl::StatusCode::kPermissionDenied);
  // The token's own user needs no profile, but is claimed as well.
  auto plain = Resolve(identities, "mallory", std::nullopt);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->user, "uuid-m");
  EXPECT_EQ(claims.owners.at("uuid-m"), "sub-m");
  EXPECT_EQ(Resolve(identities, "nosub", "Alice").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Resolve(identities, "forged", "Alice").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(HttpStatusForRefusal(Resolve(identities, "busy", "Alice").status()), 503);
  EXPECT_EQ(Resolve(identities, "alice", "").status().code(),
            absl::StatusCode::kPermissionDenied);  // ?name= that is not a user name
  claims.down = true;
  EXPECT_EQ(HttpStatusForRefusal(Resolve(identities, "alice", "Alice").status()), 503);
}

TEST(JwtIdentitiesTest, WithoutProfilesANameMustBeTheTokensUser) {
  TableVerifier tokens;
  JwtIdentities identities(&tokens, nullptr, nullptr);
  EXPECT_EQ(Resolve(identities, "alice", "uuid-a")->user, "uuid-a");
  EXPECT_EQ(Resolve(identities, "alice", "Alice").status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(NameClaimsTest, TheFirstSubjectOwnsTheName) {
  FakeClock clock;
  chat::connection::NameClaims claims(std::make_unique<chat::connection::MemoryNameOwners>(),
                                      &clock);
  EXPECT_TRUE(*claims.Claim("Alice", "sub-a"));
  EXPECT_TRUE(*claims.Claim("Alice", "sub-a"));
  EXPECT_FALSE(*claims.Claim("Alice", "sub-m"));
  EXPECT_TRUE(*claims.Claim("Mallory", "sub-m"));
  EXPECT_EQ(claims.Claim(" bad", "sub-m").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(claims.Claim("Bob", "").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace chat::edge

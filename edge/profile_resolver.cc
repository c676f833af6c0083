#include "edge/profile_resolver.h"

#include <openssl/evp.h>

#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "common/names.h"
#include "edge/http_client.h"

namespace chat::edge {
namespace json = boost::json;
namespace {

constexpr size_t kMaxProfileBytes = 64 * 1024;

absl::StatusOr<json::object> ParseObject(std::string_view text, const char* what) {
  boost::system::error_code ec;
  json::value value = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !value.is_object()) {
    return absl::UnavailableError(
        absl::StrCat(what, " answered something that is not a JSON object"));
  }
  return std::move(value.get_object());
}

// The profile's name, checked like any user name.
absl::StatusOr<std::string> UsableName(const json::value* value, const std::string& attribute) {
  if (value == nullptr || !value->is_string() || value->get_string().empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the profile at the identity provider has no '", attribute, "'"));
  }
  const std::string name(value->get_string());
  if (absl::Status s = ValidateUserName(name); !s.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the profile's '", attribute, "' is not a valid user name: ", s.message()));
  }
  return name;
}

std::string Sha256(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

}  // namespace

absl::StatusOr<std::string> NameFromGetUser(std::string_view body, long http_status,
                                            const std::string& name_attribute,
                                            const std::string& subject) {
  if (http_status == 400) {
    // Cognito's errors: {"__type":"NotAuthorizedException","message":"..."}
    // (the type may carry a "namespace#" prefix).
    auto error = ParseObject(body, "the identity provider");
    std::string type, message;
    if (error.ok()) {
      for (const char* key : {"__type", "code"}) {
        if (const json::value* t = error->if_contains(key); t != nullptr && t->is_string()) {
          type = std::string(t->get_string());
          break;
        }
      }
      if (const json::value* m = error->if_contains("message"); m != nullptr && m->is_string()) {
        message = std::string(m->get_string()).substr(0, 200);
      }
    }
    if (const size_t hash = type.rfind('#'); hash != std::string::npos)
      type = type.substr(hash + 1);
    if (type == "NotAuthorizedException" || type == "UserNotFoundException" ||
        type == "UserNotConfirmedException" || type == "PasswordResetRequiredException") {
      return absl::UnauthenticatedError(absl::StrCat("the identity provider refused the token (",
                                                     type, message.empty() ? "" : ": ", message,
                                                     ")"));
    }
    return absl::UnavailableError(absl::StrCat("the identity provider answered HTTP 400 ",
                                               type.empty() ? "(no error type)" : type));
  }
  if (http_status != 200) {
    return absl::UnavailableError(
        absl::StrCat("the identity provider answered HTTP ", http_status));
  }
  auto reply = ParseObject(body, "the identity provider");
  if (!reply.ok()) return reply.status();
  const json::value* attributes = reply->if_contains("UserAttributes");
  if (attributes == nullptr || !attributes->is_array()) {
    return absl::UnavailableError("the identity provider's GetUser reply has no UserAttributes");
  }
  const json::value* name = nullptr;
  for (const json::value& a : attributes->get_array()) {
    const json::object* attribute = a.if_object();
    if (attribute == nullptr) continue;
    const json::value* n = attribute->if_contains("Name");
    const json::value* v = attribute->if_contains("Value");
    if (n == nullptr || !n->is_string() || v == nullptr) continue;
    if (n->get_string() == name_attribute) name = v;
    if (n->get_string() == "sub" && !subject.empty() &&
        !(v->is_string() && v->get_string() == subject)) {
      return absl::UnauthenticatedError("the identity provider's profile is another account's");
    }
  }
  return UsableName(name, name_attribute);
}

absl::StatusOr<std::string> NameFromUserinfo(std::string_view body, long http_status,
                                             const std::string& name_attribute,
                                             const std::string& subject) {
  if (http_status == 401 || http_status == 403) {
    return absl::UnauthenticatedError(
        absl::StrCat("the identity provider refused the token (HTTP ", http_status, ")"));
  }
  if (http_status != 200) {
    return absl::UnavailableError(
        absl::StrCat("the identity provider answered HTTP ", http_status));
  }
  auto reply = ParseObject(body, "the userinfo endpoint");
  if (!reply.ok()) return reply.status();
  const json::value* sub = reply->if_contains("sub");
  if (sub == nullptr || !sub->is_string()) {
    return absl::UnavailableError("the userinfo reply has no 'sub'");
  }
  if (!subject.empty() && sub->get_string() != subject) {
    return absl::UnauthenticatedError("the userinfo reply is another account's");
  }
  return UsableName(reply->if_contains(name_attribute), name_attribute);
}

ProfileFetcher MakeHttpProfileFetcher(const ProfileConfig& config) {
  return [config](const std::string& token,
                  const std::string& subject) -> absl::StatusOr<std::string> {
    HttpCall call;
    call.url = config.url;
    call.timeout = config.timeout;
    call.max_bytes = kMaxProfileBytes;
    if (config.kind == ProfileConfig::Kind::kCognito) {
      call.method = "POST";
      call.headers = {{"Content-Type", "application/x-amz-json-1.1"},
                      {"X-Amz-Target", "AWSCognitoIdentityProviderService.GetUser"}};
      call.body = json::serialize(json::object{{"AccessToken", token}});
    } else {
      call.headers = {{"Authorization", absl::StrCat("Bearer ", token)},
                      {"Accept", "application/json"}};
    }
    auto reply = PerformHttp(call);
    if (!reply.ok()) {
      return absl::UnavailableError(
          absl::StrCat("identity provider unreachable: ", reply.status().message()));
    }
    return config.kind == ProfileConfig::Kind::kCognito
               ? NameFromGetUser(reply->body, reply->status, config.name_attribute, subject)
               : NameFromUserinfo(reply->body, reply->status, config.name_attribute, subject);
  };
}

ProfileResolver::ProfileResolver(ProfileFetcher fetcher, const Clock* clock, int threads,
                                 size_t max_queued, size_t max_cached)
    : fetcher_(std::move(fetcher)),
      clock_(clock),
      max_cached_(std::max<size_t>(max_cached, 1)),
      queue_("profile", threads, max_queued) {}

int64_t ProfileResolver::fetches() const {
  absl::MutexLock lock(&mu_);
  return fetches_;
}

void ProfileResolver::MakeRoom() {
  if (cache_.size() < max_cached_) return;
  const int64_t now = clock_->NowMs();
  absl::erase_if(cache_,
                 [now](const auto& kv) { return kv.second.resolved && kv.second.until_ms <= now; });
  // Still full of live names: forget an arbitrary one (it costs one lookup).
  for (auto it = cache_.begin(); cache_.size() >= max_cached_ && it != cache_.end();) {
    if (it->second.resolved) {
      cache_.erase(it++);
    } else {
      ++it;
    }
  }
}

void ProfileResolver::Resolve(const std::string& token, const std::string& subject,
                              int64_t expires_at_s, Done done) {
  const int64_t now = clock_->NowMs();
  const int64_t until_ms = expires_at_s > 0
                               ? std::min<int64_t>(expires_at_s, INT64_MAX / 1000) * 1000
                               : now + kNoExpCacheMs;
  std::string key = Sha256(token);
  std::optional<std::string> cached;
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end() && it->second.resolved && it->second.until_ms <= now) {
      cache_.erase(it);
      it = cache_.end();
    }
    if (it != cache_.end() && !it->second.resolved) {
      it->second.waiters.push_back(std::move(done));  // one call for all of them
      return;
    }
    if (it != cache_.end()) {
      cached = it->second.name;
    } else {
      MakeRoom();
      cache_[key].waiters.push_back(std::move(done));
      ++fetches_;
    }
  }
  if (cached.has_value()) {
    done(*std::move(cached));
    return;
  }
  const bool queued = queue_.TryPost(
      [this, key, token, subject, until_ms] { Finish(key, until_ms, fetcher_(token, subject)); });
  if (!queued) {
    {
      absl::MutexLock lock(&mu_);
      --fetches_;
    }
    Finish(key, 0, absl::ResourceExhaustedError("too many profile lookups waiting"));
  }
}

void ProfileResolver::Finish(const std::string& key, int64_t until_ms,
                             absl::StatusOr<std::string> name) {
  std::vector<Done> waiters;
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it == cache_.end()) return;
    waiters = std::move(it->second.waiters);
    it->second.waiters.clear();
    if (name.ok() && until_ms > clock_->NowMs()) {
      it->second.resolved = true;
      it->second.name = *name;
      it->second.until_ms = until_ms;
    } else {
      cache_.erase(it);
    }
  }
  for (auto& waiter : waiters) waiter(name);
}

}  // namespace chat::edge

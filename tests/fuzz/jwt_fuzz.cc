// The JWT front half (split, base64url, JSON) on arbitrary bytes, then the
// whole of Verify with an HS256 key, so libjwt sees what gets past us.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "edge/base64url.h"
#include "edge/jwt_verifier.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

class FixedClock : public chat::Clock {
 public:
  int64_t NowMs() const override { return 1764050000000; }
};

const chat::edge::JwtVerifier& Verifier() {
  static const chat::edge::JwtVerifier* verifier = [] {
    static FixedClock clock;
    chat::edge::JwtConfig config;
    config.hs256_secret = "fuzz-secret-fuzz-secret-fuzz-secret";
    auto v = chat::edge::JwtVerifier::Create(config, &clock);
    FUZZ_CHECK(v.ok());
    return v->release();
  }();
  return *verifier;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parts = chat::edge::ParseJwtUnverified(text);
  if (parts.ok()) {
    FUZZ_CHECK(size <= chat::edge::kMaxJwtBytes);
    FUZZ_CHECK(!parts->header.contains("crit"));
  }
  // Strict base64url: one accepted encoding per byte string.
  if (auto bytes = chat::edge::Base64UrlDecode(text); bytes.ok()) {
    FUZZ_CHECK(chat::edge::Base64UrlEncode(*bytes) == text);
  }
  auto verified = Verifier().Verify(text);
  if (verified.ok()) {
    // Only a token signed with the secret gets here; the fuzzer cannot forge one.
    FUZZ_CHECK(parts.ok() && parts->alg == "HS256");
  } else {
    FUZZ_CHECK(verified.status().code() == absl::StatusCode::kUnauthenticated);
  }
  return 0;
}

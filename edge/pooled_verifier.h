#ifndef CHAT_EDGE_POOLED_VERIFIER_H_
#define CHAT_EDGE_POOLED_VERIFIER_H_

#include <memory>

#include "boost/asio/post.hpp"
#include "boost/asio/thread_pool.hpp"
#include "edge/backends.h"
#include "edge/jwt_verifier.h"

namespace chat::edge {

// Runs JWT verification off the I/O threads: a signature check costs tens of
// microseconds and an unknown key id may wait for a JWKS fetch.
class PooledJwtVerifier final : public TokenVerifier {
 public:
  PooledJwtVerifier(std::unique_ptr<JwtVerifier> verifier, int64_t clock_skew_s, int threads = 1)
      : verifier_(std::move(verifier)), clock_skew_s_(clock_skew_s), pool_(threads) {}
  ~PooledJwtVerifier() override { pool_.join(); }

  void Verify(std::string token, std::function<void(absl::StatusOr<Identity>)> done) override {
    boost::asio::post(pool_, [this, token = std::move(token), done = std::move(done)] {
      absl::StatusOr<VerifiedToken> verified = verifier_->Verify(token);
      if (!verified.ok()) {
        done(verified.status());
        return;
      }
      done(Identity{std::move(verified->user), verified->expires_at_s});
    });
  }
  int64_t clock_skew_s() const override { return clock_skew_s_; }

 private:
  std::unique_ptr<JwtVerifier> verifier_;
  const int64_t clock_skew_s_;
  boost::asio::thread_pool pool_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_POOLED_VERIFIER_H_

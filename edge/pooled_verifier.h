#ifndef CHAT_EDGE_POOLED_VERIFIER_H_
#define CHAT_EDGE_POOLED_VERIFIER_H_

#include <memory>

#include "absl/status/status.h"
#include "edge/backends.h"
#include "edge/jwt_verifier.h"
#include "edge/work_queue.h"

namespace chat::edge {

// Runs JWT verification off the I/O threads: a signature check costs tens of
// microseconds and an unknown key id may wait for a JWKS fetch. Several
// threads, so one slow check (a JWKS fetch) does not stall the rest; a bounded
// backlog, so a flood of well-formed bad tokens is refused at once
// (ResourceExhausted: HTTP 503 with Retry-After) instead of queueing ahead of
// honest handshakes without limit.
class PooledJwtVerifier final : public TokenVerifier {
 public:
  PooledJwtVerifier(std::unique_ptr<JwtVerifier> verifier, int64_t clock_skew_s, int threads = 2,
                    size_t max_queued = 256)
      : verifier_(std::move(verifier)),
        clock_skew_s_(clock_skew_s),
        queue_("jwt-verify", threads, max_queued) {}

  void Verify(std::string token, std::function<void(absl::StatusOr<Identity>)> done) override {
    auto shared_done =
        std::make_shared<std::function<void(absl::StatusOr<Identity>)>>(std::move(done));
    const bool queued = queue_.TryPost([this, token = std::move(token), shared_done] {
      absl::StatusOr<VerifiedToken> verified = verifier_->Verify(token);
      if (!verified.ok()) {
        (*shared_done)(verified.status());
        return;
      }
      (*shared_done)(Identity{std::move(verified->user), verified->expires_at_s,
                              std::move(verified->subject)});
    });
    if (!queued) {
      (*shared_done)(absl::ResourceExhaustedError("too many tokens waiting for verification"));
    }
  }
  int64_t clock_skew_s() const override { return clock_skew_s_; }

 private:
  std::unique_ptr<JwtVerifier> verifier_;
  const int64_t clock_skew_s_;
  WorkQueue queue_;  // last: its workers are joined before verifier_ goes
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_POOLED_VERIFIER_H_

#include "edge/session_record.h"

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/log_format.h"
#include "spdlog/spdlog.h"

namespace chat::edge {

namespace {

// A user name in a log line: quoted and escaped, so that names with spaces,
// quotes or '=' cannot blur the key=value fields.
std::string Quoted(std::string_view text) {
  std::string out;
  AppendJsonString(text, out);
  return out;
}

std::string Address(const boost::asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  return address.is_v6() ? absl::StrCat("[", address.to_string(), "]:", endpoint.port())
                         : absl::StrCat(address.to_string(), ":", endpoint.port());
}

}  // namespace

void SessionRecord::Opened(EdgeContext& context, const ConnectionLogic& logic,
                           const boost::asio::ip::tcp::endpoint& remote,
                           std::weak_ptr<LocalConnection> self) {
  opened_at_ = std::chrono::steady_clock::now();
  remote_ = remote;
  spdlog::info("ws open {} user={} remote={}", logic.connection_id(), Quoted(logic.user()),
               Address(remote_));
  context.metrics->ConnectionOpened();
  context.hub->Add(logic.connection_id(), std::move(self));
}

void SessionRecord::Closed(const EdgeContext& context, const ConnectionLogic& logic, uint16_t code,
                           uint64_t frames_in, uint64_t frames_out) const {
  context.metrics->ConnectionClosed(code);
  const auto lived = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - opened_at_);
  spdlog::info("ws close {} user={} remote={} code={} duration_ms={} frames_in={} frames_out={}",
               logic.connection_id(), Quoted(logic.user()), Address(remote_), code, lived.count(),
               frames_in, frames_out);
}

void SessionRecord::Release(EdgeContext& context, ConnectionLogic& logic) {
  if (context.stopped) return;
  logic.OnClosed();
  context.hub->Remove(logic.connection_id());
  context.directory->Unregister(logic.connection_id());
  context.live_connections.fetch_sub(1);
  context.per_user->Release(logic.user());
}

}  // namespace chat::edge

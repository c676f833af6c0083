#include "message-service/router.h"

#include "absl/strings/str_cat.h"
#include "common/names.h"

namespace chat::message {

Router::Router(const RoutingTable* table, IdGenerator* ids, const Clock* clock,
               size_t max_message_bytes)
    : table_(table), ids_(ids), clock_(clock), max_message_bytes_(max_message_bytes) {}

RoutedMessage Router::Route(const SendInput& input) const {
  RoutedMessage out;
  auto bad = [&](std::string why) {
    out.outcome = SendOutcome::kBadRequest;
    out.error = std::move(why);
    return out;
  };
  if (absl::Status s = ValidateUserName(input.send_to); !s.ok()) {
    return bad(absl::StrCat("send_to: ", s.message()));
  }
  if (absl::Status s = ValidateUserName(input.sent_by); !s.ok()) {
    return bad(absl::StrCat("sent_by: ", s.message()));
  }
  if (input.message.size() > max_message_bytes_) {
    return bad(absl::StrCat("message is longer than ", max_message_bytes_, " bytes"));
  }
  if (!IsValidUtf8(input.message)) return bad("message is not valid UTF-8");

  LookupResult lookup = table_->Lookup(input.send_to);
  switch (lookup.status) {
    case LookupStatus::kNotReady:
      out.outcome = SendOutcome::kUnavailable;
      out.error = "routing table not loaded yet (connection-service unreachable)";
      return out;
    case LookupStatus::kUnknownUser:
      out.outcome = SendOutcome::kUnknownUser;
      out.error = absl::StrCat("no user named '", input.send_to, "'");
      return out;
    case LookupStatus::kOffline:
      out.outcome = SendOutcome::kRecipientOffline;
      out.error = absl::StrCat("'", input.send_to, "' is offline and messages are not stored");
      return out;
    case LookupStatus::kOnline:
      break;
  }
  out.outcome = SendOutcome::kOk;
  out.ts_ms = clock_->NowMs();
  out.id = ids_->Next(out.ts_ms);
  for (auto& route : lookup.routes) {
    EdgeGroup* group = nullptr;
    for (auto& g : out.edges) {
      if (g.edge_id == route.edge_id) group = &g;
    }
    if (group == nullptr) group = &out.edges.emplace_back(EdgeGroup{route.edge_id, {}});
    group->connection_ids.push_back(std::move(route.connection_id));
  }
  return out;
}

}  // namespace chat::message

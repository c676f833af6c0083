// Client frames: ParseRequest on arbitrary bytes must never crash, and every
// frame the server would send back must be one valid JSON object (old clients
// JSON.parse every frame; browsers drop text frames that are not UTF-8).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "absl/status/status.h"
#include "boost/json/parse.hpp"
#include "common/names.h"
#include "edge/protocol.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace chat::edge;  // NOLINT: a fuzz target, not a library

void CheckFrame(const std::string& frame) {
  FUZZ_CHECK(chat::IsValidUtf8(frame));
  boost::system::error_code ec;
  boost::json::value v =
      boost::json::parse(boost::json::string_view(frame.data(), frame.size()), ec);
  FUZZ_CHECK(!ec);
  FUZZ_CHECK(v.is_object());
  FUZZ_CHECK(v.get_object().contains("action"));
}

std::string Reply(const Request& request) {
  return std::visit(
      [&](const auto& action) -> std::string {
        using T = std::decay_t<decltype(action)>;
        if constexpr (std::is_same_v<T, SendAction>) {
          CheckFrame(EncodeDelivery({"01JD7X", "c", 1, 1, action.sent_by.value_or("me"),
                                     action.send_to, action.message, 1764050000123}));
          return EncodeSent(request.request_id,
                            {absl::OkStatus(), "01JD7X", 1764050000123, 2, "c", 1, 1, false});
        } else if constexpr (std::is_same_v<T, UsersAction>) {
          FUZZ_CHECK(action.limit >= 0 && action.limit <= kMaxUsersLimit);
          return EncodeUsers({{action.after, true}, {"bob", false}}, action.after,
                             request.request_id);
        } else if constexpr (std::is_same_v<T, WatchAction>) {
          FUZZ_CHECK(action.users.size() <= kMaxWatchUsers);
          for (const std::string& user : action.users) {
            CheckFrame(EncodePresence(user, true, 1764050000456));
          }
          return EncodeWatching(action.users, request.request_id);
        } else {
          return EncodePong(1764050000123, request.request_id);
        }
      },
      request.action);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = ParseRequest(text);
  if (const auto* request = std::get_if<Request>(&parsed)) {
    CheckFrame(Reply(*request));
  } else {
    const auto& error = std::get<RequestError>(parsed);
    CheckFrame(EncodeError(error.code, error.message, error.request_id));
  }
  return 0;
}

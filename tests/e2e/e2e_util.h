#ifndef CHAT_TESTS_E2E_E2E_UTIL_H_
#define CHAT_TESTS_E2E_E2E_UTIL_H_

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/cluster.h"
#include "tests/support/ws_client.h"

namespace chat::testing {

namespace json = boost::json;

inline std::string Str(const json::object& obj, const char* key) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || !v->is_string()) return "<missing>";
  return std::string(v->get_string());
}

// A connected client named `name`, or a test failure saying why not.
inline std::unique_ptr<WsClient> Connect(int port, const std::string& name,
                                         HandshakeOptions options = {}) {
  auto client = std::make_unique<WsClient>();
  options.target = absl::StrCat("/?name=", name);
  absl::Status s = client->Connect(port, options);
  EXPECT_TRUE(s.ok()) << "connecting as " << name << ": " << s;
  return s.ok() ? std::move(client) : nullptr;
}

inline json::object Parse(const std::string& text) { return json::parse(text).as_object(); }

// Sends and expects an error frame with `code`; returns it.
inline json::object ExpectError(WsClient& client, const std::string& frame,
                                const std::string& code) {
  EXPECT_TRUE(client.SendText(frame).ok());
  auto error = client.ReadAction("error");
  EXPECT_TRUE(error.ok()) << "expected error '" << code << "' after " << frame << ", got "
                          << error.status();
  if (!error.ok()) return {};
  EXPECT_EQ(Str(*error, "code"), code) << "after " << frame << ": " << json::serialize(*error);
  return *error;
}

}  // namespace chat::testing

#endif  // CHAT_TESTS_E2E_E2E_UTIL_H_

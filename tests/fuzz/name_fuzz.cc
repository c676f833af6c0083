// The handshake's `?name=`: decoding and validation on arbitrary request
// targets. A name that is accepted must be one ValidateUserName accepts.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/names.h"
#include "edge/name_decode.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto user = chat::edge::UserFromTarget(text);
  if (user.ok()) {
    FUZZ_CHECK(chat::ValidateUserName(*user).ok());
    FUZZ_CHECK(chat::edge::FindQueryParam(text, "name").has_value());
  }
  auto decoded = chat::edge::DecodeFormValue(text);
  if (decoded.ok()) FUZZ_CHECK(decoded->size() <= text.size());
  return 0;
}

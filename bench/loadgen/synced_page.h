// Reads one `synced` reply without a JSON library: what the sync workload
// checks (each message's useq and text, the reply's useq, more and epoch).
// Strings are returned raw (escapes not undone); the loadgen's own messages
// contain none.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace bench {

struct SyncedPage {
  struct Message {
    int64_t useq = -1;
    std::string_view text;  // the "message" field
  };
  std::string_view action;
  std::vector<Message> messages;
  int64_t useq = -1;  // the reply's own: the last useq included
  bool more = false;
  bool reset = false;
  std::string_view epoch;
};

// False when `json` is not one well-formed object (the page is then not counted).
bool ParseSyncedPage(std::string_view json, SyncedPage* page);

}  // namespace bench

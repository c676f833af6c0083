// A single-threaded epoll WebSocket client for many connections: masked
// frames out, fragmented and large frames in, pings answered, writes coalesced
// per loop round. Deliberately minimal so the client is never the bottleneck.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "options.h"

namespace bench {

int64_t NowNs();  // CLOCK_MONOTONIC: the same clock in every process on the machine

enum class ConnState : uint8_t { kIdle, kConnecting, kHandshake, kAwaitHello, kOpen, kClosed };

struct Conn {
  uint32_t id = 0;
  int32_t tag = -1;  // owner's index (dm: pair number)
  bool is_receiver = false;
  bool opened = false;  // reached kOpen at some point
  ConnState state = ConnState::kIdle;
  bool dirty = false;
  uint8_t frag_op = 0;
  int fd = -1;
  int64_t t_start = 0;  // connect() was called
  std::string name;
  std::string out;
  size_t out_off = 0;
  std::string in;    // bytes not yet parsed
  std::string frag;  // payload of an unfinished fragmented message
};

// Finds "key": "<value>" in a flat JSON object; value is returned raw (not unescaped).
bool FindStringField(std::string_view json, std::string_view key, std::string_view* value);

class Engine {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    virtual void OnOpen(Conn& c, int64_t now) = 0;
    virtual void OnMessage(Conn& c, std::string_view payload, int64_t now) = 0;
    // The connection failed or closed; `why` is a short category ("close:1008").
    virtual void OnClosed(Conn& c, const std::string& why, int64_t now) = 0;
    virtual void OnControl(std::string_view line) = 0;
  };

  Engine(const Options& opts, Handler* handler);
  ~Engine();

  Conn& Add(std::string name);
  // Connects to target source_index % targets, from source address source_index % source_addrs.
  void Start(Conn& c, uint32_t source_index);
  void SendText(Conn& c, std::string_view payload);
  void Close(Conn& c);  // sends a close frame and drops the socket
  void WatchControl(int fd);
  // One round: flush pending writes, wait until an event or `deadline` (ns), handle, flush.
  void Poll(int64_t deadline);

  std::deque<Conn>& conns() { return conns_; }
  uint64_t pings() const { return pings_; }

 private:
  void SendFrame(Conn& c, uint8_t opcode, std::string_view payload);
  void Flush(Conn& c);
  void FlushDirty();
  void OnReadable(Conn& c, int64_t now);
  void OnWritable(Conn& c, int64_t now);
  // Returns bytes consumed; stops when a frame is incomplete or the connection closed.
  size_t ParseFrames(Conn& c, const char* data, size_t size, int64_t now);
  void Deliver(Conn& c, std::string_view payload, int64_t now);
  void Fail(Conn& c, const std::string& why, int64_t now);
  void ReadControl();

  const Options& opts_;
  Handler* handler_;
  int epfd_ = -1;
  int ctl_fd_ = -1;
  std::string ctl_buf_;
  std::deque<Conn> conns_;
  std::vector<Conn*> dirty_;
  std::vector<Conn*> flushing_;
  std::vector<char> scratch_;
  struct Endpoint {
    std::string request_head;  // "GET /path?name="
    std::string request_tail;  // " HTTP/1.1 ... \r\n\r\n"
    uint32_t addr = 0;         // network order
    uint16_t port = 0;         // network order
  };
  std::vector<Endpoint> endpoints_;
  uint32_t rng_ = 2463534242u;
  uint64_t pings_ = 0;
};

}  // namespace bench

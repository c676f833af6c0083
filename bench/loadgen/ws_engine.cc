#include "ws_engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

namespace bench {
namespace {

constexpr uint32_t kControlId = 0xffffffffu;
constexpr size_t kScratchBytes = 256 * 1024;

bool IsSpace(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

}  // namespace

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool FindStringField(std::string_view json, std::string_view key, std::string_view* value) {
  size_t pos = 0;
  while (true) {
    pos = json.find(key, pos);
    if (pos == std::string_view::npos) return false;
    size_t end = pos + key.size();
    if (pos == 0 || json[pos - 1] != '"' || end >= json.size() || json[end] != '"') {
      pos = end;
      continue;
    }
    size_t i = end + 1;
    while (i < json.size() && IsSpace(json[i])) ++i;
    if (i >= json.size() || json[i] != ':') {
      pos = end;
      continue;
    }
    ++i;
    while (i < json.size() && IsSpace(json[i])) ++i;
    if (i >= json.size() || json[i] != '"') return false;
    size_t start = ++i;
    while (i < json.size() && json[i] != '"') i += json[i] == '\\' ? 2 : 1;
    if (i >= json.size()) return false;
    *value = json.substr(start, i - start);
    return true;
  }
}

Engine::Engine(const Options& opts, Handler* handler)
    : opts_(opts), handler_(handler), scratch_(kScratchBytes) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  for (const Options::Target& t : opts_.targets) {
    Endpoint e;
    e.request_head =
        "GET " + t.path + (t.path.find('?') == std::string::npos ? "?name=" : "&name=");
    e.request_tail = " HTTP/1.1\r\nHost: " + t.host + ":" + std::to_string(t.port) +
                     "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n";
    inet_pton(AF_INET, t.host.c_str(), &e.addr);
    e.port = htons(static_cast<uint16_t>(t.port));
    endpoints_.push_back(std::move(e));
  }
}

Engine::~Engine() {
  for (Conn& c : conns_) {
    if (c.fd >= 0) close(c.fd);
  }
  if (epfd_ >= 0) close(epfd_);
}

Conn& Engine::Add(std::string name) {
  conns_.emplace_back();
  Conn& c = conns_.back();
  c.id = static_cast<uint32_t>(conns_.size() - 1);
  c.name = std::move(name);
  return c;
}

void Engine::WatchControl(int fd) {
  ctl_fd_ = fd;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kControlId;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

void Engine::Start(Conn& c, uint32_t source_index) {
  int64_t now = NowNs();
  c.t_start = now;
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    Fail(c, std::string("socket:") + strerrorname_np(errno), now);
    return;
  }
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const Endpoint& e = endpoints_[source_index % endpoints_.size()];
  if (opts_.source_addrs > 0 && (ntohl(e.addr) >> 24) == 127) {
    // Many source addresses multiply the ephemeral ports available; binding
    // without a port defers the port choice to connect(), per 4-tuple.
    setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl((127u << 24) | (2 + source_index % opts_.source_addrs));
    if (bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      Fail(c, std::string("bind:") + strerrorname_np(errno), now);
      return;
    }
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = e.port;
  dst.sin_addr.s_addr = e.addr;
  if (connect(c.fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0 && errno != EINPROGRESS) {
    Fail(c, std::string("connect:") + strerrorname_np(errno), now);
    return;
  }
  c.state = ConnState::kConnecting;
  c.out = e.request_head + c.name + e.request_tail;
  c.out_off = 0;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u32 = c.id;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
}

void Engine::SendText(Conn& c, std::string_view payload) { SendFrame(c, 0x1, payload); }

void Engine::SendFrame(Conn& c, uint8_t opcode, std::string_view payload) {
  if (c.state == ConnState::kClosed) return;
  size_t n = payload.size();
  char header[14];
  size_t h = 0;
  header[h++] = static_cast<char>(0x80 | opcode);
  if (n < 126) {
    header[h++] = static_cast<char>(0x80 | n);
  } else if (n <= 0xffff) {
    header[h++] = static_cast<char>(0x80 | 126);
    header[h++] = static_cast<char>(n >> 8);
    header[h++] = static_cast<char>(n);
  } else {
    header[h++] = static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) header[h++] = static_cast<char>(uint64_t{n} >> (8 * i));
  }
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 17;
  rng_ ^= rng_ << 5;
  unsigned char mask[4];
  std::memcpy(mask, &rng_, 4);
  std::memcpy(header + h, mask, 4);
  h += 4;
  size_t base = c.out.size();
  c.out.append(header, h);
  c.out.resize(base + h + n);
  char* dst = &c.out[base + h];
  for (size_t i = 0; i < n; ++i) dst[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(&c);
  }
}

void Engine::Flush(Conn& c) {
  if (c.fd < 0 || c.state == ConnState::kConnecting) return;
  while (c.out_off < c.out.size()) {
    ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) Fail(c, std::string("send:") + strerrorname_np(errno), NowNs());
      return;  // EPOLLOUT (edge-triggered) will resume the write
    }
    c.out_off += static_cast<size_t>(n);
  }
  c.out.clear();
  c.out_off = 0;
}

void Engine::Close(Conn& c) {
  if (c.state == ConnState::kClosed || c.fd < 0) return;
  if (c.state == ConnState::kOpen || c.state == ConnState::kAwaitHello) {
    SendFrame(c, 0x8, std::string_view("\x03\xe8", 2));
    Flush(c);
  }
  close(c.fd);
  c.fd = -1;
  c.state = ConnState::kClosed;
  std::string().swap(c.in);
  std::string().swap(c.out);
}

void Engine::Fail(Conn& c, const std::string& why, int64_t now) {
  if (c.state == ConnState::kClosed) return;
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.state = ConnState::kClosed;
  handler_->OnClosed(c, why, now);
}

void Engine::Poll(int64_t deadline) {
  FlushDirty();
  int64_t wait = deadline - NowNs();
  if (wait < 0) wait = 0;
  timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
  epoll_event events[512];
  int n = epoll_pwait2(epfd_, events, 512, &ts, nullptr);
  if (n <= 0) return;
  int64_t now = NowNs();
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u32 == kControlId) {
      ReadControl();
      continue;
    }
    Conn& c = conns_[events[i].data.u32];
    if (c.state == ConnState::kClosed) continue;
    if (events[i].events & (EPOLLOUT | EPOLLERR)) OnWritable(c, now);
    if (c.state != ConnState::kClosed && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
      OnReadable(c, now);
  }
  FlushDirty();
}

void Engine::FlushDirty() {
  // A failing flush may call back into the handler, which may queue more writes.
  flushing_.swap(dirty_);
  for (Conn* c : flushing_) {
    c->dirty = false;
    Flush(*c);
  }
  flushing_.clear();
}

void Engine::ReadControl() {
  char buf[512];
  ssize_t n = read(ctl_fd_, buf, sizeof buf);
  if (n <= 0) {
    handler_->OnControl("EOF");
    epoll_ctl(epfd_, EPOLL_CTL_DEL, ctl_fd_, nullptr);
    return;
  }
  ctl_buf_.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = ctl_buf_.find('\n')) != std::string::npos) {
    std::string line = ctl_buf_.substr(0, nl);
    ctl_buf_.erase(0, nl + 1);
    handler_->OnControl(line);
  }
}

void Engine::OnWritable(Conn& c, int64_t now) {
  if (c.state == ConnState::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      Fail(c, std::string("connect:") + strerrorname_np(err), now);
      return;
    }
    c.state = ConnState::kHandshake;
  }
  Flush(c);
}

void Engine::OnReadable(Conn& c, int64_t now) {
  while (c.state != ConnState::kClosed) {
    ssize_t n = recv(c.fd, scratch_.data(), scratch_.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) Fail(c, std::string("recv:") + strerrorname_np(errno), now);
      return;
    }
    if (n == 0) {
      Fail(c, c.state == ConnState::kOpen ? "eof" : "eof_before_open", now);
      return;
    }
    const char* data = scratch_.data();
    size_t size = static_cast<size_t>(n);
    if (c.state == ConnState::kHandshake || c.state == ConnState::kConnecting) {
      c.in.append(data, size);
      size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (c.in.size() > 16384) Fail(c, "http:oversized_response", now);
        continue;
      }
      if (c.in.compare(0, 12, "HTTP/1.1 101") != 0) {
        Fail(c, "http:" + c.in.substr(9, 3), now);
        return;
      }
      std::string rest = c.in.substr(end + 4);
      std::string().swap(c.in);
      if (opts_.wait_hello) {
        c.state = ConnState::kAwaitHello;
      } else {
        c.state = ConnState::kOpen;
        c.opened = true;
        handler_->OnOpen(c, now);
      }
      if (rest.empty()) continue;
      size_t used = ParseFrames(c, rest.data(), rest.size(), now);
      if (c.state != ConnState::kClosed) c.in.assign(rest, used, std::string::npos);
      continue;
    }
    if (c.in.empty()) {
      size_t used = ParseFrames(c, data, size, now);
      if (c.state != ConnState::kClosed && used < size) c.in.assign(data + used, size - used);
    } else {
      c.in.append(data, size);
      size_t used = ParseFrames(c, c.in.data(), c.in.size(), now);
      if (c.state != ConnState::kClosed) c.in.erase(0, used);
    }
    if (size < scratch_.size()) return;  // drained; edge-triggered epoll re-arms
  }
}

size_t Engine::ParseFrames(Conn& c, const char* data, size_t size, int64_t now) {
  size_t pos = 0;
  while (c.state != ConnState::kClosed && size - pos >= 2) {
    auto b0 = static_cast<unsigned char>(data[pos]);
    auto b1 = static_cast<unsigned char>(data[pos + 1]);
    size_t h = 2;
    uint64_t len = b1 & 0x7f;
    if (len == 126) {
      if (size - pos < 4) break;
      len = (uint64_t{static_cast<unsigned char>(data[pos + 2])} << 8) |
            static_cast<unsigned char>(data[pos + 3]);
      h = 4;
    } else if (len == 127) {
      if (size - pos < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(data[pos + 2 + i]);
      h = 10;
    }
    bool masked = b1 & 0x80;
    if (masked) h += 4;
    if (size - pos < h + len) break;
    std::string unmasked;
    std::string_view payload(data + pos + h, len);
    if (masked) {  // servers must not mask, but tolerate it
      const char* key = data + pos + h - 4;
      unmasked.assign(payload);
      for (size_t i = 0; i < unmasked.size(); ++i) unmasked[i] ^= key[i & 3];
      payload = unmasked;
    }
    pos += h + len;
    bool fin = b0 & 0x80;
    uint8_t op = b0 & 0x0f;
    switch (op) {
      case 0x9:
        ++pings_;
        SendFrame(c, 0xA, payload);
        break;
      case 0xA:
        break;
      case 0x8: {
        int code = len >= 2 ? (static_cast<unsigned char>(payload[0]) << 8) |
                                  static_cast<unsigned char>(payload[1])
                            : 1005;
        SendFrame(c, 0x8, payload.substr(0, 2));
        Flush(c);
        Fail(c, "close:" + std::to_string(code), now);
        break;
      }
      case 0x0:
        c.frag.append(payload);
        if (fin) {
          std::string whole;
          whole.swap(c.frag);
          Deliver(c, whole, now);
        }
        break;
      case 0x1:
      case 0x2:
        if (fin) {
          Deliver(c, payload, now);
        } else {
          c.frag.assign(payload);
          c.frag_op = op;
        }
        break;
      default:
        Fail(c, "bad_opcode", now);
        break;
    }
  }
  return pos;
}

void Engine::Deliver(Conn& c, std::string_view payload, int64_t now) {
  if (c.state == ConnState::kAwaitHello) {
    std::string_view action;
    if (FindStringField(payload, "action", &action) && action == "hello") {
      c.state = ConnState::kOpen;
      c.opened = true;
      handler_->OnOpen(c, now);
      return;
    }
  }
  handler_->OnMessage(c, payload, now);
}

}  // namespace bench

// Nanoseconds per call of the edge's JSON work on the message path: parsing a
// `send` frame, encoding the delivery once per edge, and encoding the
// sender's `sent`. Three rounds, so noise shows; run it on an idle core:
//   taskset -c 1 build/bench/protocol_bench
#include <chrono>
#include <cstdio>
#include <string>
#include <variant>

#include "edge/protocol.h"

int main() {
  using chat::edge::EncodeDelivery;
  using chat::edge::EncodeSent;
  using chat::edge::ParseRequest;
  const std::string frame = R"({"action":"send","send_to":"bob-000123","message":")" +
                            std::string(64, 'x') +
                            R"(","request_id":"r-12345","idempotency_key":"k-1234567890"})";
  chat::edge::MessageObject m;
  m.sent_by = "alice-000123";
  m.send_to = "bob-000123";
  m.message = std::string(64, 'x');
  m.id = "01J8ZQ4K5N6P7Q8R9S0T1V2W3X";
  m.ts_ms = 1764633600000;
  m.conversation = "YWxpY2UtMDAwMTIzAGJvYi0wMDAxMjM";
  m.seq = 12345;
  m.useq = 67890;
  chat::edge::SendResult sent;
  sent.status = absl::OkStatus();
  sent.id = m.id;
  sent.ts_ms = m.ts_ms;
  sent.delivered = 1;
  sent.conversation = m.conversation;
  sent.seq = 12345;
  sent.useq = 67891;
  const chat::edge::RequestId id = boost::json::value("r-12345");

  constexpr int kCalls = 300000;
  size_t sink = 0;
  using Clock = std::chrono::steady_clock;
  auto ns = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::nano>(b - a).count() / kCalls;
  };
  for (int round = 0; round < 3; ++round) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kCalls; ++i) sink += ParseRequest(frame).index();
    const auto t1 = Clock::now();
    for (int i = 0; i < kCalls; ++i) sink += EncodeDelivery(m).size();
    const auto t2 = Clock::now();
    for (int i = 0; i < kCalls; ++i) sink += EncodeSent(id, sent).size();
    const auto t3 = Clock::now();
    std::printf("parse send %.0f ns, encode delivery %.0f ns, encode sent %.0f ns\n", ns(t0, t1),
                ns(t1, t2), ns(t2, t3));
  }
  return sink == 0 ? 1 : 0;
}

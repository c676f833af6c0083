#include "edge/read_buffer.h"

#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/websocket.hpp"
#include "gtest/gtest.h"

namespace chat::edge {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using ServerStream = websocket::stream<tcp::socket>;

// A real Beast WebSocket pair on loopback: the server side reads with
// ReadBuffer exactly as WsSession does (async_read); the client, on its own
// thread, writes whatever frames a test wants.
class ReadBufferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tcp::acceptor acceptor(ioc_, {net::ip::make_address("127.0.0.1"), 0});
    const auto endpoint = acceptor.local_endpoint();
    client_thread_ = std::thread([this, endpoint] {
      client_.next_layer().connect(endpoint);
      client_.handshake("127.0.0.1", "/");
      client_ready_ = true;
    });
    server_.emplace(acceptor.accept());
    server_->accept();
    client_thread_.join();
    ASSERT_TRUE(client_ready_);
    buffer_.emplace(*server_);
  }

  // Runs one async_read to completion and returns the message.
  std::string ReadMessage() {
    bool done = false;
    beast::error_code result;
    server_->async_read(*buffer_, [&](beast::error_code ec, size_t) {
      result = ec;
      done = true;
    });
    while (!done) ioc_.run_one();
    ioc_.restart();
    EXPECT_FALSE(result) << result.message();
    std::string message = beast::buffers_to_string(buffer_->cdata());
    buffer_->consume(buffer_->size());
    return message;
  }

  void ClientWrites(std::function<void(websocket::stream<tcp::socket>&)> write) {
    std::thread([&] { write(client_); }).join();
  }

  net::io_context ioc_;
  net::io_context client_ioc_;
  websocket::stream<tcp::socket> client_{client_ioc_};
  std::optional<ServerStream> server_;
  std::optional<ReadBuffer<ServerStream>> buffer_;
  std::thread client_thread_;
  bool client_ready_ = false;
};

TEST_F(ReadBufferTest, AWaitingReadHoldsOnlyTheFirstChunk) {
  bool done = false;
  server_->async_read(*buffer_, [&](beast::error_code, size_t) { done = true; });
  for (int i = 0; i < 10; ++i) ioc_.poll();
  ASSERT_FALSE(done);
  EXPECT_LE(buffer_->capacity(), ReadBuffer<ServerStream>::kFirstChunk);
  ClientWrites([](auto& ws) { ws.write(net::buffer(std::string("wake up"))); });
  while (!done) ioc_.run_one();
  EXPECT_EQ(beast::buffers_to_string(buffer_->cdata()), "wake up");
}

TEST_F(ReadBufferTest, MessagesOfEverySizeArriveWhole) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{1536},
                      size_t{5000}, size_t{300000}}) {
    std::string sent(size, 'x');
    for (size_t i = 0; i < size; ++i) sent[i] = static_cast<char>('a' + i % 26);
    ClientWrites([&](auto& ws) { ws.write(net::buffer(sent)); });
    EXPECT_EQ(ReadMessage(), sent) << size;
    EXPECT_LE(buffer_->capacity(), ReadBuffer<ServerStream>::kKeepBytes) << size;
  }
}

TEST_F(ReadBufferTest, SeveralQueuedMessagesAreReadOneByOne) {
  ClientWrites([](auto& ws) {
    for (int i = 0; i < 50; ++i) ws.write(net::buffer(std::string(100 + i, 'a' + i % 26)));
  });
  for (int i = 0; i < 50; ++i) EXPECT_EQ(ReadMessage(), std::string(100 + i, 'a' + i % 26));
}

TEST_F(ReadBufferTest, FragmentedMessageStartingWithAnEmptyFragment) {
  const std::string tail(3000, 'z');
  ClientWrites([&](auto& ws) {
    ws.write_some(false, net::buffer(std::string()));
    ws.write_some(false, net::buffer(std::string()));
    ws.write_some(true, net::buffer(tail));
  });
  EXPECT_EQ(ReadMessage(), tail);
  ClientWrites([](auto& ws) {
    ws.write_some(false, net::buffer(std::string("ab")));
    ws.write_some(true, net::buffer(std::string(2000, 'c')));
  });
  EXPECT_EQ(ReadMessage(), "ab" + std::string(2000, 'c'));
}

}  // namespace
}  // namespace chat::edge

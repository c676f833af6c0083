#ifndef CHAT_EDGE_TRANSPORT_H_
#define CHAT_EDGE_TRANSPORT_H_

#include <type_traits>
#include <utility>

#include "boost/asio/ip/tcp.hpp"

#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/ssl/ssl_stream.hpp"

namespace chat::edge {

// The two byte streams a session runs over. HttpSession and WsSession are
// templates over them, instantiated for exactly these two in their .cc files.
using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

template <class Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

// What a WebSocket runs on once the HTTP part is over. A plain connection
// drops tcp_stream (its two timers and their state, ~0.5 KiB per connection)
// for the bare socket: the WebSocket's own timeouts take over. A TLS stream
// cannot be taken apart, so it stays as it is.
template <class Stream>
struct WsLayerOf {
  using type = Stream;
  static Stream&& From(Stream&& stream) { return std::move(stream); }
};
template <>
struct WsLayerOf<PlainStream> {
  using type = boost::asio::ip::tcp::socket;
  static type From(PlainStream&& stream) { return stream.release_socket(); }
};
template <class Stream>
using WsLayer = typename WsLayerOf<Stream>::type;

inline boost::asio::ip::tcp::socket& RawSocket(boost::asio::ip::tcp::socket& socket) {
  return socket;
}
inline boost::asio::ip::tcp::socket& RawSocket(boost::beast::tcp_stream& stream) {
  return stream.socket();
}

}  // namespace chat::edge

#endif  // CHAT_EDGE_TRANSPORT_H_

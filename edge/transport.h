#ifndef CHAT_EDGE_TRANSPORT_H_
#define CHAT_EDGE_TRANSPORT_H_

#include <type_traits>
#include <utility>

#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/ssl/ssl_stream.hpp"

namespace chat::edge {

// The two byte streams a session runs over. HttpSession is a template over
// them, instantiated for exactly these two in its .cc file; WsSession (Beast's
// WebSocket) serves TlsStream only.
//
// A plain connection keeps the strand it was accepted on, in its type, from
// the accept to the end: PlainWsSession takes the socket as it is. (With an
// any_io_executor socket in between, the session had to release the
// descriptor and assign it to a socket of its own type: an epoll_ctl to
// remove it, one to add it again, a getsockname and an ioctl per connect.)
using PlainStrand = boost::asio::strand<boost::asio::io_context::executor_type>;
using PlainSocket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, PlainStrand>;
using PlainStream = boost::beast::basic_stream<boost::asio::ip::tcp, PlainStrand>;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

template <class Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

// What a Beast WebSocket runs on once the HTTP part is over: the stream
// itself (only TLS connections use Beast's websocket::stream; plain ones hand
// their bare socket to PlainWsSession, plain_ws_session.h).
template <class Stream>
struct WsLayerOf {
  using type = Stream;
  static Stream&& From(Stream&& stream) { return std::move(stream); }
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

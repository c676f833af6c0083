#ifndef CHAT_EDGE_TRANSPORT_H_
#define CHAT_EDGE_TRANSPORT_H_

#include <type_traits>

#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/ssl/ssl_stream.hpp"

namespace chat::edge {

// The two byte streams a session runs over. HttpSession and WsSession are
// templates over them, instantiated for exactly these two in their .cc files.
using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

template <class Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

}  // namespace chat::edge

#endif  // CHAT_EDGE_TRANSPORT_H_

#ifndef CHAT_EDGE_READ_BUFFER_H_
#define CHAT_EDGE_READ_BUFFER_H_

#include <cstddef>

#include "boost/beast/core/flat_buffer.hpp"

namespace chat::edge {

// The dynamic buffer a WebSocket message is read into. Beast's async_read
// reserves room for its first chunk before any byte arrives: with a plain
// flat_buffer that is 1536 bytes held by every idle connection for as long as
// it stays silent. Between messages this buffer tells Beast it can take only
// kFirstChunk bytes, so a silent connection holds that little; once a message
// is under way (the stream says so) it allows the full size and Beast reads
// the rest in the usual large steps.
//
// `Stream` is the websocket stream (anything with is_message_done()).
template <typename Stream>
class ReadBuffer {
 public:
  using const_buffers_type = boost::beast::flat_buffer::const_buffers_type;
  using mutable_buffers_type = boost::beast::flat_buffer::mutable_buffers_type;

  static constexpr size_t kFirstChunk = 64;
  // Capacity kept between messages; a larger message's buffer is given back.
  static constexpr size_t kKeepBytes = 512;

  explicit ReadBuffer(const Stream& stream) : stream_(stream) {}

  size_t size() const { return buffer_.size(); }
  size_t max_size() const {
    if (buffer_.size() == 0 && stream_.is_message_done()) return kFirstChunk;
    return buffer_.max_size();
  }
  size_t capacity() const { return buffer_.capacity(); }
  const_buffers_type data() const { return buffer_.data(); }
  const_buffers_type cdata() const { return buffer_.cdata(); }
  mutable_buffers_type prepare(size_t n) { return buffer_.prepare(n); }
  void commit(size_t n) { buffer_.commit(n); }

  // Called with the whole message once it is handled.
  void consume(size_t n) {
    buffer_.consume(n);
    if (buffer_.size() == 0 && buffer_.capacity() > kKeepBytes) buffer_.shrink_to_fit();
  }

 private:
  const Stream& stream_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_READ_BUFFER_H_

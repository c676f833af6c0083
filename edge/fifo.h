#ifndef CHAT_EDGE_FIFO_H_
#define CHAT_EDGE_FIFO_H_

#include <cstddef>
#include <utility>
#include <vector>

namespace chat::edge {

// A first-in first-out queue on one vector. Unlike std::deque (which
// allocates a map and a 512-byte block as soon as it exists) an empty Fifo
// owns no heap, which matters with tens of thousands of idle connections.
// The bound is the owner's business (WsSession counts bytes).
template <typename T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  T& back() { return items_.back(); }

  void push_back(T item) { items_.push_back(std::move(item)); }

  void pop_front() {
    items_[head_] = T();
    ++head_;
    if (head_ == items_.size()) {
      Reset();
    } else if (head_ >= kCompactAt && head_ * 2 >= items_.size()) {
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  void pop_back() {
    items_.pop_back();
    if (head_ == items_.size()) Reset();
  }

 private:
  static constexpr size_t kCompactAt = 32;

  // Emptied: a burst's capacity is given back, a few slots are kept.
  void Reset() {
    items_.clear();
    head_ = 0;
    if (items_.capacity() > kCompactAt) std::vector<T>().swap(items_);
  }

  std::vector<T> items_;
  size_t head_ = 0;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_FIFO_H_

#include "synced_page.h"

#include <charconv>

namespace bench {
namespace {

// Recursive descent over just enough JSON: objects, arrays, strings, numbers
// and literals; values that the page does not need are skipped.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  bool Page(SyncedPage* page) {
    if (!Object([&](std::string_view key) {
          if (key == "action") return String(&page->action);
          if (key == "epoch") return String(&page->epoch);
          if (key == "useq") return Int(&page->useq);
          if (key == "more") return Bool(&page->more);
          if (key == "reset") return Bool(&page->reset);
          if (key == "messages") return Messages(&page->messages);
          return Skip(0);
        }))
      return false;
    Space();
    return i_ == s_.size();
  }

 private:
  static constexpr int kMaxDepth = 32;

  void Space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool Eat(char ch) {
    Space();
    if (i_ >= s_.size() || s_[i_] != ch) return false;
    ++i_;
    return true;
  }

  // Calls field(key) with the reader at each value; field must consume it.
  template <typename Field>
  bool Object(Field field) {
    if (!Eat('{')) return false;
    if (Eat('}')) return true;
    do {
      std::string_view key;
      if (!String(&key) || !Eat(':') || !field(key)) return false;
    } while (Eat(','));
    return Eat('}');
  }

  bool Messages(std::vector<SyncedPage::Message>* out) {
    if (!Eat('[')) return false;
    if (Eat(']')) return true;
    do {
      SyncedPage::Message m;
      if (!Object([&](std::string_view key) {
            if (key == "useq") return Int(&m.useq);
            if (key == "message") return String(&m.text);
            return Skip(1);
          }))
        return false;
      out->push_back(m);
    } while (Eat(','));
    return Eat(']');
  }

  bool String(std::string_view* out) {
    if (!Eat('"')) return false;
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] != '"') i_ += s_[i_] == '\\' ? 2 : 1;
    if (i_ >= s_.size()) return false;
    *out = s_.substr(start, i_ - start);
    ++i_;
    return true;
  }

  bool Int(int64_t* out) {
    Space();
    auto [end, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), *out);
    if (ec != std::errc()) return false;
    i_ = static_cast<size_t>(end - s_.data());
    return true;
  }

  bool Bool(bool* out) {
    Space();
    if (s_.substr(i_, 4) == "true") {
      *out = true;
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "false") {
      *out = false;
      i_ += 5;
      return true;
    }
    return false;
  }

  bool Skip(int depth) {
    if (depth > kMaxDepth) return false;
    Space();
    if (i_ >= s_.size()) return false;
    char ch = s_[i_];
    if (ch == '"') {
      std::string_view ignored;
      return String(&ignored);
    }
    if (ch == '{') return Object([&](std::string_view) { return Skip(depth + 1); });
    if (ch == '[') {
      ++i_;
      if (Eat(']')) return true;
      do {
        if (!Skip(depth + 1)) return false;
      } while (Eat(','));
      return Eat(']');
    }
    // Number or literal: up to the next delimiter.
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}' && s_[i_] != ']' && s_[i_] != ' ' &&
           s_[i_] != '\n')
      ++i_;
    return i_ > start;
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

bool ParseSyncedPage(std::string_view json, SyncedPage* page) {
  *page = SyncedPage();
  return Reader(json).Page(page);
}

}  // namespace bench

#ifndef CHAT_COMMON_CQ_TAG_H_
#define CHAT_COMMON_CQ_TAG_H_

namespace chat {

// What a tag on a completion queue we drive ourselves points to: the thread
// that drives the queue calls Done with the event's ok.
class CqTag {
 public:
  virtual void Done(bool ok) = 0;

 protected:
  ~CqTag() = default;
};

}  // namespace chat

#endif  // CHAT_COMMON_CQ_TAG_H_

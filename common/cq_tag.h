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

// The tag of one kind of event of an object that has several (a stream's
// start, read, write, finish): Done calls the object's member function.
template <typename T>
class MemberTag final : public CqTag {
 public:
  MemberTag(T* self, void (T::*fn)(bool)) : self_(self), fn_(fn) {}
  void Done(bool ok) override { (self_->*fn_)(ok); }

 private:
  T* const self_;
  void (T::*const fn_)(bool);
};

}  // namespace chat

#endif  // CHAT_COMMON_CQ_TAG_H_

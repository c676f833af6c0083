#include <memory>
#include <string>
#include <vector>

#include "chat/v1/chat.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "message-service/edge_links.h"

namespace chat::message {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records each EdgeDown as the link would put it on the wire.
class RecordingWriter : public DownWriter {
 public:
  void StartDownWrite(const chat::v1::EdgeDown* message) override { written.push_back(*message); }
  std::vector<chat::v1::EdgeDown> written;
};

// A short description of one written EdgeDown: "d:<ids> r:<seqs>".
std::string Describe(const chat::v1::EdgeDown& down) {
  std::string s = "d:";
  for (const auto& d : down.deliveries()) s += d.id() + ",";
  s += " r:";
  for (const auto& r : down.results()) s += std::to_string(r.seq()) + ",";
  return s;
}

std::vector<std::string> Written(const RecordingWriter& w) {
  std::vector<std::string> out;
  for (const auto& down : w.written) out.push_back(Describe(down));
  return out;
}

chat::v1::Delivery MakeDelivery(const std::string& id, size_t message_bytes = 10) {
  chat::v1::Delivery d;
  d.set_id(id);
  d.set_message(std::string(message_bytes, 'x'));
  d.add_connection_ids("e1-1");
  return d;
}

chat::v1::EdgeSendResult MakeResult(uint64_t seq) {
  chat::v1::EdgeSendResult r;
  r.set_seq(seq);
  return r;
}

TEST(OutboxTest, GreetWritesOneMessageWithTheEpochOnly) {
  RecordingWriter writer;
  Outbox outbox(&writer, 1 << 20);
  outbox.Greet("e1");
  ASSERT_EQ(writer.written.size(), 1u);
  EXPECT_EQ(writer.written[0].deliveries_size() + writer.written[0].results_size(), 0);
  EXPECT_EQ(writer.written[0].epoch(), "e1");
  outbox.OnWriteDone();
  EXPECT_EQ(writer.written.size(), 1u) << "nothing queued: nothing more to write";
}

TEST(OutboxTest, TheFirstItemGoesOutAtOnce) {
  RecordingWriter writer;
  Outbox outbox(&writer, 1 << 20);
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m1")));
  EXPECT_THAT(Written(writer), ElementsAre("d:m1, r:")) << "batching must never wait for more";
}

TEST(OutboxTest, ItemsQueuedDuringAWriteGoOutTogether) {
  RecordingWriter writer;
  Outbox outbox(&writer, 1 << 20);
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m1")));  // in flight
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m2")));
  outbox.AddResult(MakeResult(7));
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m3")));
  outbox.AddResult(MakeResult(8));
  EXPECT_THAT(Written(writer), ElementsAre("d:m1, r:")) << "one write in flight at a time";

  outbox.OnWriteDone();
  EXPECT_THAT(Written(writer), ElementsAre("d:m1, r:", "d:m2,m3, r:7,8,"))
      << "everything queued meanwhile goes in one EdgeDown, in order";
  outbox.OnWriteDone();
  EXPECT_EQ(writer.written.size(), 2u);
}

// The store worker's links: what one wake-up produces goes in one EdgeDown,
// written when the worker flushes, and the writer is asked once per flush.
class BatchingWriter : public RecordingWriter {
 public:
  bool FlushLater() override {
    ++asked;
    return true;
  }
  int asked = 0;
};

TEST(OutboxTest, AWriterThatFlushesLaterGetsAWakeUpsItemsInOneWrite) {
  BatchingWriter writer;
  Outbox outbox(&writer, 1 << 20);
  outbox.Greet("e1");
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m1")));
  outbox.AddResult(MakeResult(7));
  EXPECT_TRUE(writer.written.empty()) << "nothing is written before the flush";
  EXPECT_EQ(writer.asked, 1) << "asked once, however many items";
  outbox.Flush();
  EXPECT_THAT(Written(writer), ElementsAre("d:m1, r:7,"));
  EXPECT_EQ(writer.written[0].epoch(), "e1");

  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m2")));  // while the write is in flight
  EXPECT_EQ(writer.asked, 1) << "a write in flight: the write-done asks";
  outbox.OnWriteDone();
  EXPECT_EQ(writer.asked, 2);
  outbox.Flush();
  EXPECT_THAT(Written(writer), ElementsAre("d:m1, r:7,", "d:m2, r:"));
  outbox.OnWriteDone();
  EXPECT_EQ(writer.asked, 2) << "nothing waiting: no flush asked";
  outbox.Flush();
  EXPECT_EQ(writer.written.size(), 2u);
}

TEST(OutboxTest, AGreetingQueuedBehindAWriteIsNotLost) {
  RecordingWriter writer;
  Outbox outbox(&writer, 1 << 20);
  outbox.AddResult(MakeResult(1));
  outbox.Greet("e1");
  outbox.OnWriteDone();
  EXPECT_EQ(writer.written.size(), 2u);
}

TEST(OutboxTest, DeliveriesBeyondTheByteBoundAreRefused) {
  RecordingWriter writer;
  const size_t one = MakeDelivery("m0", 100).ByteSizeLong();
  Outbox outbox(&writer, 3 * one);
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m0", 100)));  // in flight, not pending
  EXPECT_TRUE(outbox.AddDelivery(MakeDelivery("m1", 100)));
  EXPECT_TRUE(outbox.AddDelivery(MakeDelivery("m2", 100)));
  EXPECT_TRUE(outbox.AddDelivery(MakeDelivery("m3", 100)));
  EXPECT_FALSE(outbox.AddDelivery(MakeDelivery("m4", 100)))
      << "a 4th pending delivery exceeds the bound of 3";
  EXPECT_FALSE(outbox.AddDelivery(MakeDelivery("big", 4 * one)));
  outbox.AddResult(MakeResult(9));  // results are never refused

  outbox.OnWriteDone();
  EXPECT_THAT(Written(writer), ElementsAre("d:m0, r:", "d:m1,m2,m3, r:9,"))
      << "refused deliveries must not be written";
  EXPECT_TRUE(outbox.AddDelivery(MakeDelivery("m5", 100)))
      << "once the batch is on its way there is room again";
}

TEST(OutboxTest, ADeliveryLargerThanTheWholeBoundIsRefusedEvenWhenIdle) {
  RecordingWriter writer;
  Outbox outbox(&writer, 50);
  EXPECT_FALSE(outbox.AddDelivery(MakeDelivery("huge", 100)));
  EXPECT_THAT(writer.written, IsEmpty());
}

TEST(OutboxTest, NothingIsAcceptedOrWrittenAfterDetach) {
  RecordingWriter writer;
  Outbox outbox(&writer, 1 << 20);
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m1")));
  ASSERT_TRUE(outbox.AddDelivery(MakeDelivery("m2")));
  outbox.Detach();
  EXPECT_FALSE(outbox.AddDelivery(MakeDelivery("m3")));
  outbox.AddResult(MakeResult(1));
  outbox.OnWriteDone();
  outbox.Greet("e1");
  EXPECT_THAT(Written(writer), ElementsAre("d:m1, r:"));
}

}  // namespace
}  // namespace chat::message

#include "message-service/dispatcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace chat::message {

void Dispatcher::Attach(const std::shared_ptr<Outbox>& link, const std::string& edge_id,
                        const google::protobuf::RepeatedPtrField<chat::v1::Attach>& attaches,
                        store::MessageStore* store) {
  std::vector<chat::v1::Attached> answers(attaches.size());
  std::vector<int> routed;         // indexes of the attaches that need marks
  std::vector<std::string> users;  // their users, in the same order
  for (int i = 0; i < attaches.size(); ++i) {
    const chat::v1::Attach& attach = attaches[i];
    chat::v1::Attached& answer = answers[i];
    answer.set_connection_id(attach.connection_id());
    answer.set_epoch(epoch_);
    auto [it, added] = connections_.try_emplace(attach.connection_id(), attach.user());
    if (!added && it->second != attach.user()) {
      // The same id for another user can only be a confused edge: keep the first.
      answer.set_error("connection id already attached for another user");
      continue;
    }
    UserState& state = users_[attach.user()];
    if (attach.after_useq() < 0) erased_.erase(attach.user());  // a new connection: a new user
    if (added) {
      state.conns.push_back({attach.connection_id(), link, edge_id});
    } else {
      // Attached again, after the edge's link came back: its old link may not
      // have been seen ending yet (a half-open stream). Deliveries follow the
      // new link, and the old link's end no longer detaches the connection.
      for (Conn& c : state.conns) {
        if (c.connection_id == attach.connection_id()) {
          c.link = link;
          c.edge_id = edge_id;
        }
      }
    }
    routed.push_back(i);
    users.push_back(attach.user());
  }
  std::vector<absl::StatusOr<store::UserMarks>> marks;
  marks.reserve(users.size());
  absl::StatusOr<std::vector<store::UserMarks>> all = store->KnowAndReadMarks(users);
  if (all.ok()) {
    for (store::UserMarks& m : *all) marks.emplace_back(m);
  } else if (absl::IsInvalidArgument(all.status())) {
    // A name the store refuses: the others are answered without it.
    for (const std::string& user : users) {
      absl::Status known = store->KnowUser(user);
      marks.push_back(known.ok() ? store->Marks(user) : absl::StatusOr<store::UserMarks>(known));
    }
  } else {
    // The store is down or slow: one attempt for all of them, not one each.
    marks.assign(users.size(), all.status());
  }
  for (size_t k = 0; k < routed.size(); ++k) {
    chat::v1::Attached& answer = answers[routed[k]];
    if (!marks[k].ok()) {
      answer.set_error(absl::StrCat("message store unavailable: ", marks[k].status().message()));
      continue;
    }
    // Always the store's mark too: another replica may have moved it since
    // this one loaded it (the user's reports went there meanwhile).
    UserState& state = users_[users[k]];
    state.marks_loaded = true;
    state.mark = std::max(state.mark, marks[k]->reached_useq);
    state.persisted_mark = std::max(state.persisted_mark, marks[k]->reached_useq);
    Advance(&state);  // reached reports merged so far count
    answer.set_last_useq(marks[k]->last_useq);
    answer.set_reached_useq(state.mark);
  }
  for (chat::v1::Attached& answer : answers) link->AddAttached(std::move(answer));
}

void Dispatcher::Detach(const Outbox* link, const std::string& connection_id) {
  auto it = connections_.find(connection_id);
  if (it == connections_.end()) return;
  const std::string user = it->second;
  auto u = users_.find(user);
  if (u != users_.end()) {
    auto& conns = u->second.conns;
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [&](const Conn& c) {
                                 return c.connection_id == connection_id && c.link.get() == link;
                               }),
                conns.end());
  }
  connections_.erase(it);
  ForgetIfIdle(user);
}

void Dispatcher::DetachLink(const Outbox* link) {
  std::vector<std::string> gone;
  for (auto& [user, state] : users_) {
    auto& conns = state.conns;
    for (const Conn& c : conns) {
      if (c.link.get() == link) {
        connections_.erase(c.connection_id);
        gone.push_back(user);
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [&](const Conn& c) { return c.link.get() == link; }),
                conns.end());
  }
  for (const std::string& user : gone) ForgetIfIdle(user);
}

void Dispatcher::ForgetIfIdle(const std::string& user) {
  auto it = users_.find(user);
  if (it == users_.end()) return;
  const UserState& s = it->second;
  if (s.conns.empty() && s.above.empty() && s.mark == s.persisted_mark && !dirty_.contains(user)) {
    users_.erase(it);
  }
}

Dispatcher::UserState* Dispatcher::LoadMarks(const std::string& user, store::MessageStore* store) {
  UserState& state = users_[user];
  if (state.marks_loaded) return &state;
  absl::StatusOr<store::UserMarks> marks = store->Marks(user);
  if (!marks.ok()) return nullptr;
  state.marks_loaded = true;
  state.mark = std::max(state.mark, marks->reached_useq);
  state.persisted_mark = marks->reached_useq;
  return &state;
}

int Dispatcher::Fan(
    const std::vector<Conn>& conns, const std::string& skip, const std::string& user,
    const store::Message& message, int64_t useq, int64_t edge_received_us,
    google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection) {
  int handed = 0;
  std::vector<bool> done(conns.size(), false);
  for (size_t i = 0; i < conns.size(); ++i) {
    if (done[i] || conns[i].connection_id == skip) continue;
    chat::v1::Delivery delivery;
    delivery.set_id(message.id);
    delivery.set_ts_ms(message.ts_ms);
    delivery.set_sent_by(message.sent_by);
    delivery.set_send_to(message.send_to);
    delivery.set_message(message.text);
    delivery.set_conversation(message.conversation);
    delivery.set_seq(message.seq);
    delivery.set_useq(useq);
    delivery.set_user(user);
    delivery.set_edge_received_us(edge_received_us);
    delivery.set_server(message.server);
    delivery.set_type(message.type);
    delivery.set_metadata(message.metadata);
    // Every connection of this user on the same edge shares one payload.
    for (size_t j = i; j < conns.size(); ++j) {
      if (done[j] || conns[j].connection_id == skip || conns[j].link != conns[i].link) continue;
      done[j] = true;
      delivery.add_connection_ids(conns[j].connection_id);
    }
    const int n = delivery.connection_ids_size();
    std::vector<std::string> ids;
    if (per_connection != nullptr)
      ids.assign(delivery.connection_ids().begin(), delivery.connection_ids().end());
    const bool ok = conns[i].link->AddDelivery(std::move(delivery));
    if (ok) handed += n;
    for (auto& id : ids) {
      auto* c = per_connection->Add();
      c->set_connection_id(std::move(id));
      c->set_edge_id(conns[i].edge_id);
      c->set_delivered(ok);
    }
  }
  return handed;
}

int Dispatcher::Deliver(
    const store::Committed& committed, const std::string& from_connection_id,
    int64_t edge_received_us,
    google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection) {
  const store::Message& m = committed.for_sender;
  if (committed.duplicate) return 0;
  if (!erased_.empty()) {  // both names are in use again: their streams start afresh
    erased_.erase(m.sent_by);
    erased_.erase(m.send_to);
  }
  // The sender's own copy reached the sender when it was committed. An
  // edge's send is reported by the edge, with the sender's other reached
  // ranges, to the sender's replica (this one may only be the
  // conversation's); the public API's sends are marked here.
  if (from_connection_id.empty()) Reached(m.sent_by, m.useq, m.useq);
  if (m.sent_by == m.send_to) {
    auto it = users_.find(m.send_to);
    if (it == users_.end()) return 0;
    return Fan(it->second.conns, "", m.send_to, m, m.useq, edge_received_us, per_connection);
  }
  int delivered = 0;
  if (auto it = users_.find(m.send_to); it != users_.end()) {
    delivered = Fan(it->second.conns, "", m.send_to, m, committed.recipient_useq, edge_received_us,
                    per_connection);
  }
  if (auto it = users_.find(m.sent_by); it != users_.end()) {
    // Copies for the sender's other connections (edges pass them to version 2
    // connections only).
    Fan(it->second.conns, from_connection_id, m.sent_by, m, m.useq, 0, nullptr);
  }
  return delivered;
}

void Dispatcher::Reached(const std::string& user, int64_t from, int64_t to) {
  if (from <= 0 || to < from || erased_.contains(user)) return;
  UserState& state = users_[user];
  if (to <= state.mark) return;
  auto& above = state.above;
  // Merge [from, to] into the ranges beyond the mark.
  auto it = above.lower_bound(from);
  if (it != above.begin()) {
    auto prev = std::prev(it);
    if (prev->second + 1 >= from) {
      from = prev->first;
      to = std::max(to, prev->second);
      it = above.erase(prev);
    }
  }
  while (it != above.end() && it->first <= to + 1) {
    to = std::max(to, it->second);
    it = above.erase(it);
  }
  above.emplace(from, to);
  dirty_.insert(user);
}

void Dispatcher::EraseUser(const std::string& user) {
  dirty_.erase(user);
  holes_.erase(user);
  read_.erase(user);
  erased_.insert(user);
  auto it = users_.find(user);
  if (it == users_.end()) return;
  UserState& state = it->second;
  state.marks_loaded = false;
  state.mark = 0;
  state.persisted_mark = 0;
  state.above.clear();
  ForgetIfIdle(user);
}

void Dispatcher::NoteRead(const std::string& user) {
  dirty_.insert(user);
  read_.insert(user);
}

void Dispatcher::Advance(UserState* state) {
  auto& above = state->above;
  while (!above.empty() && above.begin()->first <= state->mark + 1) {
    state->mark = std::max(state->mark, above.begin()->second);
    above.erase(above.begin());
  }
}

void Dispatcher::FillReadHoles(const std::string& user, UserState* state,
                               store::MessageStore* store) {
  absl::StatusOr<store::SyncPage> first = store->Unread(user, state->mark, 1, 1 << 20);
  if (!first.ok()) return;
  int64_t upto;
  if (first->messages.empty()) {
    absl::StatusOr<store::UserMarks> marks = store->Marks(user);
    if (!marks.ok()) return;
    upto = marks->last_useq;
  } else {
    upto = first->messages.front().useq - 1;
  }
  if (upto > state->mark) {
    Reached(user, state->mark + 1, upto);
    Advance(state);
  }
}

void Dispatcher::ResolveHole(const std::string& user, UserState* state, store::MessageStore* store,
                             int64_t now_ms) {
  if (now_ms < state->next_resolve_ms) return;
  absl::StatusOr<store::UserMarks> marks = store->Marks(user);
  if (!marks.ok()) return;
  state->mark = std::max(state->mark, marks->reached_useq);
  state->persisted_mark = std::max(state->persisted_mark, marks->reached_useq);
  Advance(state);
  if (!state->above.empty()) {
    // The user's own messages in the held range reached them at commit,
    // wherever that was. A few pages at most: the range is what reports
    // left open, normally the last moments.
    const int64_t end = state->above.rbegin()->second;
    int64_t since = state->mark;
    for (int page = 0; page < 4 && since < end; ++page) {
      absl::StatusOr<store::SyncPage> got = store->Sync(user, since, 500, 1 << 20);
      if (!got.ok() || got->messages.empty()) break;
      for (const store::Message& m : got->messages) {
        if (m.useq > end) break;
        if (m.sent_by == user) Reached(user, m.useq, m.useq);
      }
      since = got->useq;
      if (!got->more) break;
    }
    Advance(state);
  }
  if (!state->above.empty()) FillReadHoles(user, state, store);
  const bool progress = state->mark > state->resolved_mark;
  state->resolved_mark = state->mark;
  if (state->above.empty() || progress) {
    state->resolve_backoff_ms = 0;
    state->next_resolve_ms = 0;
  } else {
    // Held by a message to the user that reached nobody yet: its report
    // will move the mark. Until then, look less often (up to a minute), so
    // that users who are away cost little.
    state->resolve_backoff_ms =
        std::min<int64_t>(60'000, std::max<int64_t>(kHoleSweepMs, 2 * state->resolve_backoff_ms));
    state->next_resolve_ms = now_ms + state->resolve_backoff_ms;
  }
}

std::vector<std::pair<std::string, int64_t>> Dispatcher::TakeMovedMarks(
    store::MessageStore* store) {
  taken_users_.clear();
  taken_marks_.clear();
  const int64_t now = clock_->NowMs();
  const bool sweep = !holes_.empty() && now >= next_sweep_ms_;
  if (dirty_.empty() && !sweep) return {};
  std::vector<std::string>& users = taken_users_;
  users.assign(dirty_.begin(), dirty_.end());
  absl::flat_hash_set<std::string> holed;
  if (sweep) {
    next_sweep_ms_ = now + kHoleSweepMs;
    holed.swap(holes_);
    for (const std::string& user : holed) {
      if (!dirty_.contains(user)) users.push_back(user);
    }
  }
  dirty_.clear();
  absl::flat_hash_set<std::string> read;
  read.swap(read_);
  // Every mark that moved goes to the store in one transaction.
  for (const std::string& user : users) {
    UserState* state = LoadMarks(user, store);
    if (state == nullptr) {
      dirty_.insert(user);  // the store is away: try again after the next batch
      if (read.contains(user)) read_.insert(user);
      continue;
    }
    Advance(state);
    // The user read something: a hole may be messages read without being
    // received. (Not on every hole: most are deliveries whose write is
    // still being reported, and the look-up costs a query.)
    if (read.contains(user)) FillReadHoles(user, state, store);
    if (!state->above.empty() && holed.contains(user)) ResolveHole(user, state, store, now);
    if (!state->above.empty()) holes_.insert(user);
    if (state->mark > state->persisted_mark) taken_marks_.emplace_back(user, state->mark);
  }
  return taken_marks_;
}

void Dispatcher::MarksSaved(const absl::StatusOr<std::vector<store::MarkChange>>& changes) {
  if (!changes.ok()) {
    // Retried with the next batch (the marks are still ahead of persisted_mark).
    for (const auto& [user, mark] : taken_marks_) dirty_.insert(user);
  } else {
    for (const auto& [user, mark] : taken_marks_) {
      if (auto it = users_.find(user); it != users_.end()) {
        it->second.persisted_mark = std::max(it->second.persisted_mark, mark);
      }
    }
  }
  for (const std::string& user : taken_users_) ForgetIfIdle(user);
  taken_users_.clear();
  taken_marks_.clear();
  if (changes.ok()) SendReceipts(*changes);
}

void Dispatcher::FlushMarks(store::MessageStore* store) {
  std::vector<std::pair<std::string, int64_t>> moved = TakeMovedMarks(store);
  if (moved.empty()) {
    MarksSaved(std::vector<store::MarkChange>());
  } else {
    MarksSaved(store->AdvanceReachedMany(moved));
  }
}

void Dispatcher::SendReceipts(const std::vector<store::MarkChange>& changes) {
  const int64_t now = clock_->NowMs();
  for (const store::MarkChange& change : changes) {
    if (change.user == change.peer) continue;  // no receipts in a self-conversation
    for (const std::string* who : {&change.user, &change.peer}) {
      auto it = users_.find(*who);
      if (it == users_.end()) continue;
      const auto& conns = it->second.conns;
      std::vector<bool> done(conns.size(), false);
      for (size_t i = 0; i < conns.size(); ++i) {
        if (done[i]) continue;
        chat::v1::Receipt receipt;
        receipt.set_conversation(change.conversation);
        receipt.set_user(change.user);
        if (change.read_seq > 0) receipt.set_read_seq(change.read_seq);
        if (change.delivered_seq > 0) receipt.set_delivered_seq(change.delivered_seq);
        receipt.set_ts_ms(now);
        for (size_t j = i; j < conns.size(); ++j) {
          if (done[j] || conns[j].link != conns[i].link) continue;
          done[j] = true;
          receipt.add_connection_ids(conns[j].connection_id);
        }
        conns[i].link->AddReceipt(std::move(receipt));
      }
    }
  }
}

}  // namespace chat::message

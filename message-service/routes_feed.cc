#include "message-service/routes_feed.h"

#include "spdlog/spdlog.h"

namespace chat::message {

void ApplyRouteUpdate(const chat::v1::RouteUpdate& update, RoutingTable* table) {
  if (update.reset()) table->Reset();
  if (update.users_size() > 0) table->AddUsers({update.users().begin(), update.users().end()});
  for (const auto& change : update.changes()) {
    const auto& c = change.connection();
    switch (change.kind()) {
      case chat::v1::RouteChange::ADDED:
        table->Add(c.user(), {c.connection_id(), c.edge_id()});
        break;
      case chat::v1::RouteChange::REMOVED:
        table->Remove(c.user(), c.connection_id());
        break;
      case chat::v1::RouteChange::USER_CREATED:
        table->AddUsers({c.user()});
        break;
      default:
        break;
    }
  }
  if (update.snapshot_done()) table->MarkReady();
}

RoutesFeed::RoutesFeed(chat::v1::ConnectionService::Stub* stub, RoutingTable* table,
                       ServiceAuth auth)
    : auth_(std::move(auth)),
      reader_(
          [this, stub](grpc::ClientContext* ctx,
                       grpc::ClientReadReactor<chat::v1::RouteUpdate>* reactor) {
            auth_.Apply(ctx);
            stub->async()->WatchRoutes(ctx, &request_, reactor);
          },
          [table](const chat::v1::RouteUpdate& update) {
            if (update.snapshot_done()) {
              spdlog::info("routing table loaded");
            }
            ApplyRouteUpdate(update, table);
          },
          [](const grpc::Status& status) {
            spdlog::warn("WatchRoutes ended ({}: {}); reconnecting", static_cast<int>(status.error_code()),
                         status.error_message());
          }) {}

}  // namespace chat::message

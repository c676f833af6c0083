#ifndef CHAT_MESSAGE_SERVICE_ROUTES_FEED_H_
#define CHAT_MESSAGE_SERVICE_ROUTES_FEED_H_

#include "chat/v1/chat.grpc.pb.h"
#include "common/service_auth.h"
#include "common/stream_reader.h"
#include "message-service/routing_table.h"

namespace chat::message {

// Applies RouteUpdate messages (snapshot, then changes) to the routing table.
void ApplyRouteUpdate(const chat::v1::RouteUpdate& update, RoutingTable* table);

// Keeps the routing table in step with connection-service's WatchRoutes
// stream, reconnecting when it breaks. While connection-service is away the
// table keeps its last state (routing from slightly stale data beats refusing
// every message); a new snapshot replaces it on reconnect.
class RoutesFeed {
 public:
  RoutesFeed(chat::v1::ConnectionService::Stub* stub, RoutingTable* table, ServiceAuth auth = {});

 private:
  chat::v1::WatchRoutesRequest request_;
  const ServiceAuth auth_;
  ReconnectingReader<chat::v1::RouteUpdate> reader_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_ROUTES_FEED_H_

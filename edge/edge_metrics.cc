#include "edge/edge_metrics.h"

#include <string>

#include "edge/protocol.h"
#include "prometheus/family.h"

namespace chat::edge {
namespace {

prometheus::Counter& OneCounter(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Gauge& OneGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help, const prometheus::Labels& labels = {}) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(labels);
}

const char* OutcomeName(SendOutcome outcome) {
  switch (outcome) {
    case SendOutcome::kOk:
      return "ok";
    case SendOutcome::kUnknownUser:
      return "unknown_user";
    case SendOutcome::kRecipientOffline:
      return "recipient_offline";
    case SendOutcome::kBadRequest:
      return "bad_request";
    case SendOutcome::kForbidden:
      return "forbidden";
    case SendOutcome::kRateLimited:
      return "rate_limited";
    case SendOutcome::kUnavailable:
      return "unavailable";
    case SendOutcome::kCount:
      break;
  }
  return "other";
}

}  // namespace

SendOutcome OutcomeOf(const absl::Status& status) {
  if (status.ok()) return SendOutcome::kOk;
  switch (SendErrorCode(status.code())) {
    case ErrorCode::kUnknownUser:
      return SendOutcome::kUnknownUser;
    case ErrorCode::kRecipientOffline:
      return SendOutcome::kRecipientOffline;
    case ErrorCode::kBadRequest:
      return SendOutcome::kBadRequest;
    case ErrorCode::kForbidden:
      return SendOutcome::kForbidden;
    case ErrorCode::kRateLimited:
      return SendOutcome::kRateLimited;
    case ErrorCode::kUnavailable:
    case ErrorCode::kUnknownAction:  // neither is an answer to a send
    case ErrorCode::kInternal:
      break;
  }
  return SendOutcome::kUnavailable;
}

EdgeMetrics::EdgeMetrics(prometheus::Registry& registry)
    : open_(OneGauge(registry, "chat_edge_connections_open", "Open WebSocket connections")),
      opened_(OneCounter(registry, "chat_edge_connections_opened_total",
                         "WebSocket connections accepted (upgrade completed)")),
      frames_in_(OneCounter(registry, "chat_edge_frames_received_total",
                            "WebSocket messages read from clients")),
      frames_out_(OneCounter(registry, "chat_edge_frames_sent_total",
                             "WebSocket messages written to clients")),
      delivery_latency_(
          prometheus::BuildHistogram()
              .Name("chat_edge_delivery_latency_seconds")
              .Help("From the sender's edge reading a send to this edge writing the delivery "
                    "to the recipient's socket")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0001, 0.00025, 0.0005, 0.001,
                                                               0.0025, 0.005, 0.01, 0.025, 0.05,
                                                               0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      rate_limit_closes_(
          OneCounter(registry, "chat_edge_rate_limit_closes_total",
                     "Connections closed with 1008 for exceeding the rate limit repeatedly")),
      slow_consumer_closes_(
          OneCounter(registry, "chat_edge_slow_consumer_closes_total",
                     "Connections closed with 4008: outbound queue full (client not reading)")),
      links_up_(OneGauge(registry, "chat_edge_message_links_up",
                         "EdgeLink streams to message-service replicas that are up")),
      link_reconnects_(OneCounter(registry, "chat_edge_message_link_reconnects_total",
                                  "EdgeLink streams re-established after one was lost")) {
  auto& ready = prometheus::BuildGauge()
                    .Name("chat_edge_backend_ready")
                    .Help("1 when this edge can use the backend (as /readyz says)")
                    .Register(registry);
  connection_service_ready_ = &ready.Add({{"backend", "connection_service"}});
  message_service_ready_ = &ready.Add({{"backend", "message_service"}});
  auto& closed = prometheus::BuildCounter()
                     .Name("chat_edge_connections_closed_total")
                     .Help("WebSocket connections ended, by close code (1006: no close frame)")
                     .Register(registry);
  for (size_t i = 0; i < kCloseCodes.size(); ++i) {
    closed_[i] = &closed.Add({{"code", std::to_string(kCloseCodes[i])}});
  }
  closed_other_ = &closed.Add({{"code", "other"}});
  auto& refused = prometheus::BuildCounter()
                      .Name("chat_edge_handshakes_refused_total")
                      .Help(
                          "WebSocket upgrades answered with an HTTP error, by status (400 bad "
                          "name, 401 token, 403 origin or name, 503 full, draining or "
                          "registry unavailable)")
                      .Register(registry);
  for (size_t i = 0; i < kRefuseStatuses.size(); ++i) {
    refused_[i] = &refused.Add({{"status", std::to_string(kRefuseStatuses[i])}});
  }
  refused_other_ = &refused.Add({{"status", "other"}});
  auto& sends = prometheus::BuildCounter()
                    .Name("chat_edge_sends_total")
                    .Help("send frames handled, by result (the error code the client got, or ok)")
                    .Register(registry);
  for (size_t i = 0; i < sends_.size(); ++i) {
    sends_[i] = &sends.Add({{"result", OutcomeName(static_cast<SendOutcome>(i))}});
  }
}

void EdgeMetrics::HandshakeRefused(int status) {
  for (size_t i = 0; i < kRefuseStatuses.size(); ++i) {
    if (kRefuseStatuses[i] == status) {
      refused_[i]->Increment();
      return;
    }
  }
  refused_other_->Increment();
}

void EdgeMetrics::ConnectionClosed(uint16_t code) {
  open_.Decrement();
  for (size_t i = 0; i < kCloseCodes.size(); ++i) {
    if (kCloseCodes[i] == code) {
      closed_[i]->Increment();
      return;
    }
  }
  closed_other_->Increment();
}

}  // namespace chat::edge

#include "common/metrics.h"

#include <cstdio>
#include <exception>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace chat {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {}

Metrics::~Metrics() = default;

absl::StatusOr<int> Metrics::Serve(const std::string& listen) {
  if (exposer_ != nullptr) return absl::FailedPreconditionError("metrics are already served");
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_listen must be host:port, got '", listen, "'"));
  }
  try {
    // One thread: a scrape every few seconds needs no more.
    exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    // civetweb's message says little more than "cannot bind".
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("metrics: no port on ", listen));
  return ports.front();
}

std::string Metrics::Text() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

absl::Status ServeMetricsIfAsked(Metrics& metrics, const std::string& listen) {
  if (listen.empty()) return absl::OkStatus();
  absl::StatusOr<int> port = metrics.Serve(listen);
  if (!port.ok()) return port.status();
  const std::string host = listen.substr(0, listen.rfind(':'));
  // Tests and scripts that asked for port 0 read the port from this line
  // (in text and JSON logs alike).
  spdlog::info("metrics on {}:{}/metrics", host, *port);
  return absl::OkStatus();
}

}  // namespace chat

#ifndef CHAT_CONNECTION_SERVICE_LEASE_REAPER_H_
#define CHAT_CONNECTION_SERVICE_LEASE_REAPER_H_

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "connection-service/registry.h"

namespace chat::connection {

// Runs Registry::Tick (lease expiry, ended bans, presence snapshots held back
// after the start) on a fixed period until destroyed.
class LeaseReaper {
 public:
  LeaseReaper(Registry* registry, absl::Duration period)
      : thread_([this, registry, period] {
          while (!stop_.WaitForNotificationWithTimeout(period)) registry->Tick();
        }) {}
  ~LeaseReaper() {
    stop_.Notify();
    thread_.join();
  }

 private:
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_LEASE_REAPER_H_

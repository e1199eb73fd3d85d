// EventHub: fans grant events out to live watchers (AdminService.WatchEvents). Events are first
// made durable by the store (same write as the grant change), then published here on the loop.
// Thread-safe: Subscribe/Unsubscribe from any thread; subscribers are called under no lock of
// ours except the hub's, so they must only copy the event and return.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>

#include "storage/records.pb.h"

namespace connectbroker::broker {

class EventHub {
 public:
  using Subscriber = std::function<void(const storage::EventRecord&)>;

  uint64_t Subscribe(Subscriber subscriber);
  void Unsubscribe(uint64_t id);
  void Publish(const storage::EventRecord& event);
  size_t subscribers() const;

 private:
  mutable std::mutex mu_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Subscriber> subscribers_;
};

}  // namespace connectbroker::broker

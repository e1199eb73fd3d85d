#include "daemon/broker/event_hub.h"

namespace connectbroker::broker {

uint64_t EventHub::Subscribe(Subscriber subscriber) {
  std::lock_guard lock(mu_);
  uint64_t id = next_id_++;
  subscribers_.emplace(id, std::move(subscriber));
  return id;
}

void EventHub::Unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subscribers_.erase(id);
}

void EventHub::Publish(const storage::EventRecord& event) {
  std::lock_guard lock(mu_);
  for (auto& [id, s] : subscribers_) {
    s(event);
  }
}

size_t EventHub::subscribers() const {
  std::lock_guard lock(mu_);
  return subscribers_.size();
}

}  // namespace connectbroker::broker

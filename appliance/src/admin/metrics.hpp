// Prometheus pull endpoint (`--metrics-listen ADDR:PORT`, prometheus-cpp's Exposer). Every
// scrape reads Control::counters(), the same snapshot `ztctl show …` reads, so the two never
// disagree by construction. Labels are bounded: drop reason, worker index, rule id, identity
// class, port name, stage — never an address or an identity name.
#pragma once

#include <expected>
#include <memory>
#include <string>

#include "zt/dataplane/runtime.hpp"

namespace prometheus {
class Exposer;
}

namespace zt::admin {

class Metrics {
 public:
  // Starts listening (civetweb threads of the control side); answers with no metrics until
  // serve(). `listen`: "127.0.0.1:9420" or "[::1]:9420". Errors name --metrics-listen.
  static std::expected<std::unique_ptr<Metrics>, std::string> listen(const std::string& listen);
  // From now on every scrape reads `rt`'s counters. Call once; `rt` must outlive this object.
  void serve(dp::Runtime& rt, std::string version);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;
  // The TCP port actually bound (useful with port 0).
  int port() const;

 private:
  Metrics() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<class CounterCollectable> collectable_;
};

}  // namespace zt::admin

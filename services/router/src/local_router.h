#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/callback.h"
#include "common/config.h"
#include "omniroute/accounts/v1/accounts.pb.h"
#include "router.h"
#include "routing_table.h"
#include "state_store.h"
#include "strategies.h"

namespace omniroute::router {

// Milliseconds since the Unix epoch; injectable for tests.
using Clock = std::function<int64_t()>;
int64_t SystemNowMs();

// RouterOptions::plan_cache_ms by default.
inline constexpr int64_t kDefaultPlanCacheMs = 100;

struct RouterOptions {
  Clock clock = SystemNowMs;
  Random random;  // default: a seeded 64-bit Mersenne Twister (thread-safe)
  // Where runtime routing changes (admin API) persist. Default: $DATA_DIR/router-runtime.json
  // when the config has a data_dir; empty = not persisted.
  std::string runtime_path;
  bool persist = true;
  // A background thread that maintains the store and picks up routing changes made through
  // other replicas, every sync_interval_ms. Off: call Tick() yourself.
  bool background = true;
  int64_t sync_interval_ms = 1000;
  // Report() only queues the outcome; a thread of the router's records it. For callers that
  // must not wait on a remote store (the all-in-one's event loops with Redis).
  bool async_reports = false;
  // Where nodes, connections, custom models and blocked providers come from (the accounts
  // service's GetCatalog): asked on every Tick with the version the router holds, never twice
  // at once; it must call `done` once, on any thread (the router's destructor waits for it).
  // Empty: the config file's nodes and connections only.
  std::function<void(int64_t known_version, Callback<accounts::v1::Catalog> done)> catalog_source;
  // How long a remote caller may reuse a plan that depends on nothing but the table, the
  // shared state and the model (RoutePlan.cache_ms); 0 = never. It bounds how late a
  // change made through another router or edge reaches a caller's cached plans (its own
  // reports and admin changes drop them at once), so it stays about as short as outcome
  // reports take to land.
  int64_t plan_cache_ms = kDefaultPlanCacheMs;
};

// Longest chain of combos inside combos.
inline constexpr int kMaxComboDepth = 3;

// The routing logic over a StateStore: model resolution, candidate order, cooldowns,
// lockouts, breakers, pacing, sticky sessions, and the routing admin API.
class LocalRouter final : public Router {
 public:
  LocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
              StateStorePtr state, RouterOptions options);
  ~LocalRouter() override;

  // Interface
  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override;
  void Report(const v1::Outcome& outcome) override;
  void ReportBatch(const v1::OutcomeBatch& batch, Callback<v1::ReportBatchAck> done) override;
  void ListModels(Callback<v1::ListModelsResponse> done) override;
  void Acquire(const v1::AcquireRequest& request, Callback<v1::AcquireResponse> done) override;
  void Health(const v1::HealthRequest& request, Callback<v1::HealthResponse> done) override;
  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override;

  // One round of upkeep: store maintenance, asking the catalog source for a newer catalog
  // (adopted when it answers), and adopting (or republishing) the shared runtime routing
  // configuration.
  void Tick();

  // The routing configuration in effect.
  std::shared_ptr<const RoutingTable> table() const;

  // Where this router's plans stand (see RoutePlan.cache_ms).
  v1::PlanEpoch Epoch() const;

  // Swaps the config file's objects (combos, aliases, fallback chains, routing, resilience,
  // provider overrides, nodes and connections) for those of `config` and rebuilds the table;
  // runtime (admin API) changes stay on top, the last catalog is applied again. On error
  // (e.g. a combo nested too deep) nothing changes. Thread-safe.
  absl::Status ReloadConfig(ConfigPtr config);

 private:
  struct Target;
  struct PlanContext;

  absl::StatusOr<v1::RoutePlan> PlanNow(const v1::PlanRequest& request);
  absl::Status Expand(const RoutingTable& t, const std::string& model, int depth,
                      const ComboSpec* combo, std::vector<std::string> use_counters,
                      bool allow_alias, PlanContext& ctx, std::vector<Target>* out);
  absl::Status ExpandCombo(const RoutingTable& t, const ComboSpec& combo, int depth,
                           PlanContext& ctx, std::vector<Target>* out);
  void AppendFallbackChain(const RoutingTable& t, const std::string& requested,
                           const Target* primary, PlanContext& ctx, std::vector<Target>* out);
  absl::StatusOr<std::pair<const ProviderSpec*, std::string>> ResolveSingle(
      const RoutingTable& t, std::string_view model) const;
  v1::HealthResponse HealthNow(bool brief);
  v1::AdminResponse AdminNow(const v1::AdminRequest& request);

  // Changes the runtime routing configuration with `mutate`; on success rebuilds the
  // table, persists and publishes it.
  absl::Status ChangeRuntime(const std::function<absl::Status(RuntimeRouting&)>& mutate);
  void AdoptRuntime(RuntimeRouting runtime, bool persist);
  void Persist(const RuntimeRouting& runtime);
  // Asks the catalog source for a catalog newer than the one in effect, unless a request is
  // still out; the answer comes to AdoptCatalog.
  void RefreshCatalog();
  void AdoptCatalog(absl::StatusOr<accounts::v1::Catalog> catalog);
  std::string NewLeaseId(const std::string& request_id);
  // Puts `table` in effect; plans made before are stale from now on.
  void SetTable(std::shared_ptr<const RoutingTable> table);
  uint64_t NextRandom();

  // The config file's; the table holds the config in effect (with the catalog's objects).
  // Guarded by runtime_mu_ (set once more by ReloadConfig).
  ConfigPtr file_config_;
  const StateStorePtr state_;
  RouterOptions options_;

  mutable std::mutex table_mu_;
  std::shared_ptr<const RoutingTable> table_;
  std::mutex runtime_mu_;  // serialises changes of the table (runtime routing, catalog)
  RuntimeRouting runtime_;
  // The catalog in effect, applied again over a reloaded file; guarded by runtime_mu_.
  std::optional<accounts::v1::Catalog> catalog_;

  std::atomic<int64_t> catalog_version_{0};  // of the catalog in effect; 0 = none (the file)
  std::atomic<bool> catalog_failing_{false};
  std::mutex catalog_mu_;
  std::condition_variable catalog_cv_;
  bool catalog_in_flight_ = false;  // guarded by catalog_mu_

  std::mutex random_mu_;
  std::mt19937_64 rng_;
  std::atomic<uint64_t> lease_seq_{0};

  // Records an outcome (RecordOutcome); one that changes routing moves the epoch on.
  void Record(const v1::Outcome& outcome);
  void RecordOutcome(const v1::Outcome& outcome);
  // What a 2xx answer to `outcome` records.
  static SuccessRecord SuccessOf(const v1::Outcome& outcome, const RoutingTable& t);

  // RoutePlan.epoch: a random id of this process and a value that moves on with every
  // change of the table, every recorded outcome that changes routing and every admin
  // change. Outcomes that change routing and are queued but not recorded yet
  // (async_reports) make plans uncacheable until they are.
  const uint64_t router_id_;
  std::atomic<int64_t> plan_epoch_{1};
  std::atomic<int64_t> unrecorded_changes_{0};

  std::mutex tick_mu_;
  std::condition_variable tick_cv_;
  bool stopping_ = false;
  std::thread background_;

  std::mutex reports_mu_;
  std::condition_variable reports_cv_;
  std::deque<v1::Outcome> reports_;
  bool reports_stopping_ = false;
  int64_t reports_dropped_ = 0;
  std::thread reporter_;
};

// The routing logic over a StateStore (see LocalRouter), for in-process callers: outcome
// reports are recorded asynchronously when the store is shared (Redis).
RouterPtr MakeLocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                          StateStorePtr state, Clock clock = SystemNowMs);
RouterPtr MakeLocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                          StateStorePtr state, RouterOptions options);

}  // namespace omniroute::router

#include "usage_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <charconv>

namespace omniroute::usage {
namespace {

constexpr size_t kMaxModels = 500;
constexpr char kOther[] = "other";

// "2xx", "5xx", ...; "none" for no status. In `buf`.
std::string_view StatusClass(int status, char (&buf)[16]) {
  if (status <= 0) return "none";
  char* end = std::to_chars(buf, buf + sizeof(buf) - 2, status / 100).ptr;
  *end++ = 'x';
  *end++ = 'x';
  return std::string_view(buf, static_cast<size_t>(end - buf));
}

}  // namespace

UsageMetrics::UsageMetrics(int top_keys)
    : top_keys_(static_cast<size_t>(std::max(0, top_keys))),
      registry_(std::make_shared<prometheus::Registry>()) {
  records_ = &prometheus::BuildCounter()
                  .Name("omniroute_usage_records_total")
                  .Help("Usage records received, by provider and status class")
                  .Register(*registry_);
  tokens_ = &prometheus::BuildCounter()
                 .Name("omniroute_usage_tokens_total")
                 .Help(
                     "Tokens by provider, model, client key and type (input includes cached "
                     "and cache_creation; output includes reasoning)")
                 .Register(*registry_);
  cost_ = &prometheus::BuildCounter()
               .Name("omniroute_usage_cost_usd_total")
               .Help("Cost in USD by provider, model and client key")
               .Register(*registry_);
  unpriced_ = &prometheus::BuildCounter()
                   .Name("omniroute_usage_unpriced_records_total")
                   .Help("Records whose model has no pricing entry (cost 0)")
                   .Register(*registry_);
  reservations_ = &prometheus::BuildCounter()
                       .Name("omniroute_usage_reservations_total")
                       .Help("Budget reservations by result (held, allowed = no budget, denied)")
                       .Register(*registry_);
  rejections_ = &prometheus::BuildCounter()
                     .Name("omniroute_usage_budget_rejections_total")
                     .Help("Requests refused by a budget, by window")
                     .Register(*registry_);
  write_seconds_ =
      &prometheus::BuildHistogram()
           .Name("omniroute_usage_store_write_seconds")
           .Help("Latency of batch writes to the usage store")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  write_errors_ = &prometheus::BuildCounter()
                       .Name("omniroute_usage_store_write_errors_total")
                       .Help("Failed batch writes to the usage store")
                       .Register(*registry_)
                       .Add({});
  written_ = &prometheus::BuildCounter()
                  .Name("omniroute_usage_store_written_records_total")
                  .Help("Records written to the usage store")
                  .Register(*registry_)
                  .Add({});
  spool_depth_ = &prometheus::BuildGauge()
                      .Name("omniroute_usage_spool_depth")
                      .Help("Records in the on-disk spool waiting for the usage store")
                      .Register(*registry_)
                      .Add({{"spool", "service"}});
  spool_bytes_ = &prometheus::BuildGauge()
                      .Name("omniroute_usage_spool_bytes")
                      .Help("Bytes of the on-disk spool")
                      .Register(*registry_)
                      .Add({{"spool", "service"}});
  spool_dropped_ = &prometheus::BuildCounter()
                        .Name("omniroute_usage_spool_dropped_total")
                        .Help("Records dropped because the spool was full")
                        .Register(*registry_)
                        .Add({{"spool", "service"}});
}

UsageMetrics::~UsageMetrics() = default;

void UsageMetrics::SeedTopKeys(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& k : keys) {
    if (keys_.size() >= top_keys_) {
      break;
    }
    keys_.insert(k);
  }
}

std::string_view UsageMetrics::KeyLabel(std::string_view key) {
  if (auto it = keys_.find(key); it != keys_.end()) {
    return *it;
  }
  if (keys_.size() < top_keys_) {
    return *keys_.emplace(key).first;
  }
  return kOther;
}

std::string_view UsageMetrics::ModelLabel(std::string_view model) {
  if (auto it = models_.find(model); it != models_.end()) {
    return *it;
  }
  if (models_.size() < kMaxModels) {
    return *models_.emplace(model).first;
  }
  return kOther;
}

void UsageMetrics::Recorded(const v1::UsageRecord& r, bool priced) {
  const std::string_view provider =
      r.provider().empty() ? std::string_view("none") : std::string_view(r.provider());
  std::string_view model;
  std::string_view key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    model = ModelLabel(r.upstream_model().empty() ? r.requested_model() : r.upstream_model());
    key = KeyLabel(r.client_key_id());
  }
  char buf[16];
  const std::string_view status_class = StatusClass(r.status(), buf);
  cache_.Child(records_, {{"provider", provider}, {"status_class", status_class}}).Increment();
  const std::pair<std::string_view, int64_t> types[] = {
      {"input", r.input_tokens()},
      {"output", r.output_tokens()},
      {"cached", r.cached_tokens()},
      {"cache_creation", r.cache_creation_tokens()},
      {"reasoning", r.reasoning_tokens()}};
  for (const auto& [type, n] : types) {
    if (n > 0) {
      cache_
          .Child(tokens_, {{"provider", provider}, {"model", model}, {"key", key}, {"type", type}})
          .Increment(static_cast<double>(n));
    }
  }
  if (r.cost_usd() > 0) {
    cache_.Child(cost_, {{"provider", provider}, {"model", model}, {"key", key}})
        .Increment(r.cost_usd());
  }
  if (!priced && (r.input_tokens() > 0 || r.output_tokens() > 0)) {
    cache_.Child(unpriced_, {{"provider", provider}}).Increment();
  }
}

void UsageMetrics::StoreWrite(double seconds, bool ok, size_t records) {
  write_seconds_->Observe(seconds);
  if (ok) {
    written_->Increment(static_cast<double>(records));
  } else {
    write_errors_->Increment();
  }
}

void UsageMetrics::Spool(uint64_t depth, int64_t bytes, uint64_t dropped_total) {
  spool_depth_->Set(static_cast<double>(depth));
  spool_bytes_->Set(static_cast<double>(bytes));
  std::lock_guard<std::mutex> lock(mu_);
  if (dropped_total > dropped_seen_) {
    spool_dropped_->Increment(static_cast<double>(dropped_total - dropped_seen_));
    dropped_seen_ = dropped_total;
  }
}

void UsageMetrics::Reservation(bool allowed, bool held, std::string_view denied_window) {
  const std::string_view result = !allowed ? "denied" : held ? "held" : "allowed";
  cache_.Child(reservations_, {{"result", result}}).Increment();
  if (!allowed) {
    cache_.Child(rejections_, {{"window", denied_window.empty() ? "unknown" : denied_window}})
        .Increment();
  }
}

std::string UsageMetrics::Text() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace omniroute::usage

#pragma once

#include "usage.h"
#include "usage_store.h"

namespace omniroute::usage {

// Queues records and writes them to `store` in batches on its own thread; queries run on
// that thread too, so callers never block on the database.
UsagePtr MakeLocalUsage(UsageStorePtr store);

}  // namespace omniroute::usage

#pragma once

#include "accounts.h"
#include "common/config.h"

namespace omniroute::accounts {

// Client keys and connections declared in the config file, held in memory (keys by hash).
AccountsPtr MakeLocalAccounts(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry);

}  // namespace omniroute::accounts

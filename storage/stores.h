// The stores for a --db value: PostgreSQL for a postgresql:// or postgres:// URI
// (storage/postgres/), else the SQLite file.
#pragma once

#include <memory>
#include <string>

#include "storage/database.h"
#include "storage/operator_store.h"
#include "storage/relay_store.h"

namespace metrix {

// Opens a store of its own on `db`, whose schema must be this build's. `options` apply to an
// SQLite file only (its fsync policy and busy timeout); a PostgreSQL server has its own.
Result<std::unique_ptr<RelayStore>> open_relay_store(const std::string& db, const OpenOptions& options);

// The operator commands' store on `db`, whose schema must be this build's. `options` apply to
// an SQLite file only (read_only: a file this process cannot write).
Result<std::unique_ptr<OperatorStore>> open_operator_store(const std::string& db, const OpenOptions& options);

}  // namespace metrix

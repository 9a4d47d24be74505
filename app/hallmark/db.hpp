#pragma once
// The home's database: URL resolution, opening with a schema check, and the store's copy of CAs.
#include <functional>
#include <memory>
#include <string>

#include "hallmark/core/result.hpp"
#include "hallmark/store/store.hpp"
#include "home.hpp"

namespace hallmark::app {

// `override_url` (from --db) wins over hallmark.toml; a relative sqlite path is relative to the home.
[[nodiscard]] std::string resolve_database_url(const PkiHome& home, const std::string& override_url);

enum class SchemaPolicy { require_current, migrate, any };
// Opens the database. require_current refuses a database whose schema needs `hallmark db migrate`.
[[nodiscard]] Result<std::unique_ptr<store::Store>> open_database(
    const PkiHome& home, const std::string& override_url,
    SchemaPolicy policy = SchemaPolicy::require_current);

// Records (or leaves in place, when already there) the CA in the store, which the RA and revocation
// read. conflict when a different certificate is recorded under the same name.
[[nodiscard]] Status register_ca(store::Store& store, const PkiHome& home, const CaRecord& ca);

// Runs `body` with the open home and database; a failure is printed and becomes `status`.
void with_database(const std::string& home_dir, const std::string& override_url, int& status,
                   SchemaPolicy policy, const std::function<Status(const PkiHome&, store::Store&)>& body);

}  // namespace hallmark::app

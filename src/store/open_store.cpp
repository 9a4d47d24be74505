#include "hallmark/store/store.hpp"
#include "postgres/postgres_store.hpp"
#include "sqlite/sqlite_store.hpp"

namespace hallmark::store {

Result<std::unique_ptr<Store>> open_store(std::string_view url, const StoreOptions& options) {
  if (url.starts_with("sqlite:")) {
    auto s = HM_TRY(sqlite::SqliteStore::open(std::string(url.substr(7)), options));
    return std::unique_ptr<Store>(std::move(s));
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    auto s = HM_TRY(postgres::PostgresStore::open(std::string(url), options));
    return std::unique_ptr<Store>(std::move(s));
  }
  return fail(Errc::invalid_input, "unknown database URL (want sqlite:PATH or postgresql://...)");
}

}  // namespace hallmark::store

#include "db.hpp"

#include <fmt/format.h>

#include "cli.hpp"

namespace hallmark::app {
namespace fs = std::filesystem;

std::string resolve_database_url(const PkiHome& home, const std::string& override_url) {
  std::string url = override_url.empty() ? home.config().database_url : override_url;
  if (url.starts_with("sqlite:") && url != "sqlite::memory:") {
    fs::path path(url.substr(7));
    if (path.is_relative()) url = "sqlite:" + (home.dir() / path).string();
  }
  return url;
}

Result<std::unique_ptr<store::Store>> open_database(const PkiHome& home, const std::string& override_url,
                                                    SchemaPolicy policy) {
  const auto url = resolve_database_url(home, override_url);
  auto db = store::open_store(url);
  if (!db) return std::unexpected(db.error().with_context("database"));
  if (policy == SchemaPolicy::migrate) {
    auto migrated = (*db)->migrate();
    if (!migrated) return std::unexpected(migrated.error().with_context("database migration"));
  } else if (policy == SchemaPolicy::require_current) {
    const auto status = HM_TRY((*db)->check());
    if (status.pending()) {
      return fail(
          Errc::unavailable,
          fmt::format("database schema is at version {}, this hallmark needs {}: run 'hallmark db migrate'",
                      status.current_version, status.latest_version));
    }
  }
  return std::move(*db);
}

Status register_ca(store::Store& db, const PkiHome& home, const CaRecord& ca) {
  const auto& der = ca.certificate.to_der();
  if (auto existing = db.find_ca(ca.name)) {
    if (existing->certificate_der != der) {
      return fail(Errc::conflict,
                  fmt::format("the database already holds a different certificate for CA '{}'", ca.name));
    }
    return {};
  } else if (existing.error().code != Errc::not_found) {
    return std::unexpected(existing.error());
  }
  store::CaRecord record;
  record.name = ca.name;
  record.role = ca.role;
  record.certificate_der = der;
  record.key_ref =
      ca.key_holder == KeyHolder::local ? "file:" + (home.ca_dir(ca.name) / "key.pem").string() : "";
  record.status = ca.status;
  record.external = ca.key_holder == KeyHolder::external;
  HM_TRY(db.add_ca(record));
  return {};
}

void with_database(const std::string& home_dir, const std::string& override_url, int& status,
                   SchemaPolicy policy, const std::function<Status(const PkiHome&, store::Store&)>& body) {
  auto r = [&]() -> Status {
    const auto home = HM_TRY(PkiHome::open(home_dir));
    auto db = HM_TRY(open_database(home, override_url, policy));
    return body(home, *db);
  }();
  if (!r) status = report(r.error());
}

}  // namespace hallmark::app

#include "sqlite_store.hpp"

namespace hallmark::store::sqlite {

namespace {
constexpr std::size_t kMaxIdleReaders = 16;
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path, const StoreOptions& options) {
  if (path.empty()) return fail(Errc::invalid_input, "sqlite: empty path");
  std::unique_ptr<SqliteStore> store(new SqliteStore(path));
  store->memory_ = path == ":memory:";
  auto conn = HM_TRY(SqliteConnection::open(path, false));
  // IMMEDIATE takes the write lock at BEGIN, so a batch never fails half-way on a lock upgrade.
  std::vector<std::unique_ptr<sql::Connection>> lanes;
  lanes.push_back(std::move(conn));  // SQLite has one writer
  store->writer_ = std::make_unique<Writer>(std::move(lanes), nullptr, "BEGIN IMMEDIATE", options.max_batch);
  return store;
}

Status SqliteStore::read(ConnFn fn, bool snapshot) {
  if (memory_) return writer_->exclusive(std::move(fn));
  std::unique_ptr<SqliteConnection> conn;
  {
    std::lock_guard lock(readers_mu_);
    if (!idle_readers_.empty()) {
      conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
  }
  if (!conn) conn = HM_TRY(SqliteConnection::open(path_, true));
  Status st;
  if (snapshot) {
    st = conn->exec("BEGIN");
    if (st) st = fn(*conn);
    if (st) {
      st = conn->exec("COMMIT");
    } else {
      (void)conn->exec("ROLLBACK");
    }
  } else {
    st = fn(*conn);
  }
  std::lock_guard lock(readers_mu_);
  if (idle_readers_.size() < kMaxIdleReaders) idle_readers_.push_back(std::move(conn));
  return st;
}

Result<std::string> SqliteStore::engine_check() {
  std::string out;
  HM_TRY_VOID(read(
      [&](sql::Connection& db) -> Status {
        auto rows = HM_TRY(db.query("PRAGMA integrity_check"));
        for (const auto& r : rows) {
          if (!out.empty()) out += "; ";
          out += r.text(0);
        }
        return {};
      },
      false));
  return out;
}

}  // namespace hallmark::store::sqlite

#include "postgres_store.hpp"

#include <algorithm>
#include <chrono>

namespace hallmark::store::postgres {

namespace {
constexpr auto kPoolWait = std::chrono::seconds(5);
}

Result<std::unique_ptr<PgConnection>> PgPool::acquire() {
  std::unique_ptr<PgConnection> conn;
  {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kPoolWait, [&] { return !idle_.empty() || open_ < size_; }))
      return fail(Errc::unavailable, "postgresql: no free connection in the pool");
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    } else {
      ++open_;
    }
  }
  if (!conn) {
    auto opened = PgConnection::open(url_);
    if (!opened) {
      std::lock_guard lock(mu_);
      --open_;
      cv_.notify_one();
      return std::unexpected(opened.error());
    }
    return std::move(*opened);
  }
  if (!conn->healthy()) {
    if (auto st = conn->reconnect(); !st) {
      release(std::move(conn));
      return std::unexpected(st.error());
    }
  }
  return conn;
}

void PgPool::release(std::unique_ptr<PgConnection> conn) {
  {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

Status PgPool::with_connection(const ConnFn& fn) {
  auto conn = HM_TRY(acquire());
  auto st = fn(*conn);
  // The connection broke during fn (the server restarted while it sat idle in the pool): run fn once
  // more on a fresh one. Whatever fn reported, since many reads keep a failed query's error in
  // their result rather than return it; reads are safe to repeat.
  if (!conn->healthy() && (st || st.error().code == Errc::unavailable) && conn->reconnect()) st = fn(*conn);
  release(std::move(conn));
  return st;
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(const std::string& url,
                                                           const StoreOptions& options) {
  std::unique_ptr<PostgresStore> store(new PostgresStore(url, options.pool_size));
  auto conn = HM_TRY(PgConnection::open(url));
  auto connect = [url]() -> Result<std::unique_ptr<sql::Connection>> {
    auto c = HM_TRY(PgConnection::open(url));
    return std::unique_ptr<sql::Connection>(std::move(c));
  };
  std::vector<std::unique_ptr<sql::Connection>> lanes;
  lanes.push_back(std::move(conn));
  lanes.resize(static_cast<std::size_t>(std::max(1, options.writers)));  // the others connect lazily
  store->writer_ = std::make_unique<Writer>(std::move(lanes), connect, "BEGIN", options.max_batch);
  return store;
}

Status PostgresStore::read(ConnFn fn, bool snapshot) {
  if (!snapshot) return pool_.with_connection(fn);
  return pool_.with_connection([&](sql::Connection& db) -> Status {
    HM_TRY_VOID(db.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    auto st = fn(db);
    if (st) {
      st = db.exec("COMMIT");
    } else {
      (void)db.exec("ROLLBACK");
    }
    return st;
  });
}

Result<std::string> PostgresStore::engine_check() {
  // The server checks its own pages (data checksums, amcheck are operator tools); here: reachable.
  HM_TRY_VOID(read(
      [](sql::Connection& db) -> Status {
        HM_TRY_VOID(db.query("SELECT 1"));
        return {};
      },
      false));
  return std::string("ok");
}

}  // namespace hallmark::store::postgres

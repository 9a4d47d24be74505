#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "../sql_store.hpp"
#include "pg_connection.hpp"

namespace hallmark::store::postgres {

// A bounded pool of reader connections; a connection the server dropped is reset on next use.
class PgPool final {
 public:
  PgPool(std::string url, int size) : url_(std::move(url)), size_(size > 0 ? size : 1) {}
  // Runs fn on a pooled connection; a read that failed because the connection broke is retried
  // once on a fresh one (reads have no side effects).
  [[nodiscard]] Status with_connection(const ConnFn& fn);

 private:
  [[nodiscard]] Result<std::unique_ptr<PgConnection>> acquire();
  void release(std::unique_ptr<PgConnection> conn);

  std::string url_;
  int size_;
  int open_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PgConnection>> idle_;
};

// PostgreSQL through libpq. Writes go through a group-commit writer on its own connection (every
// batch locks the audit chain head row first); reads use the pool.
class PostgresStore final : public SqlStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<PostgresStore>> open(const std::string& url,
                                                                   const StoreOptions& options);
  [[nodiscard]] std::string_view backend() const noexcept override { return "postgresql"; }

 protected:
  [[nodiscard]] Status write(WriteFn fn) override { return writer_->submit(std::move(fn)); }
  [[nodiscard]] Status write_statement(StatementWrite w) override { return writer_->submit(std::move(w)); }
  [[nodiscard]] Status write_alone(WriteFn fn) override { return writer_->submit(std::move(fn), true); }
  [[nodiscard]] Status exclusive(ConnFn fn) override { return writer_->exclusive(std::move(fn)); }
  [[nodiscard]] Status read(ConnFn fn, bool snapshot) override;
  [[nodiscard]] sql::Dialect dialect() const noexcept override { return sql::Dialect::postgres; }
  [[nodiscard]] Result<std::string> engine_check() override;

 private:
  explicit PostgresStore(const std::string& url, int pool_size) : pool_(url, pool_size) {}

  PgPool pool_;
  std::unique_ptr<Writer> writer_;
};

}  // namespace hallmark::store::postgres

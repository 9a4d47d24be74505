#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "../sql_store.hpp"
#include "sqlite_connection.hpp"

namespace hallmark::store::sqlite {

// SQLite in WAL mode with synchronous=FULL. Writes go through one writer thread with group commit;
// reads run on their own connections (WAL readers do not block the writer). ":memory:" has a single
// connection, so its reads go through the writer too.
class SqliteStore final : public SqlStore {
 public:
  [[nodiscard]] static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                                 const StoreOptions& options);
  [[nodiscard]] std::string_view backend() const noexcept override { return "sqlite"; }

 protected:
  [[nodiscard]] Status write(WriteFn fn) override { return writer_->submit(std::move(fn)); }
  [[nodiscard]] Status write_statement(StatementWrite w) override { return writer_->submit(std::move(w)); }
  [[nodiscard]] Status write_alone(WriteFn fn) override { return writer_->submit(std::move(fn), true); }
  [[nodiscard]] Status exclusive(ConnFn fn) override { return writer_->exclusive(std::move(fn)); }
  [[nodiscard]] Status read(ConnFn fn, bool snapshot) override;
  [[nodiscard]] sql::Dialect dialect() const noexcept override { return sql::Dialect::sqlite; }
  [[nodiscard]] Result<std::string> engine_check() override;

 private:
  explicit SqliteStore(std::string path) : path_(std::move(path)) {}

  std::string path_;
  bool memory_ = false;
  std::unique_ptr<Writer> writer_;
  std::mutex readers_mu_;
  std::vector<std::unique_ptr<SqliteConnection>> idle_readers_;
};

}  // namespace hallmark::store::sqlite

#pragma once
#include <sqlite3.h>

#include <memory>
#include <string>
#include <unordered_map>

#include "../sql.hpp"

namespace hallmark::store::sqlite {

// One sqlite3 handle with a cache of prepared statements. Used by one thread at a time.
class SqliteConnection final : public sql::Connection {
 public:
  // WAL, synchronous=FULL, busy_timeout, foreign keys on; read_only connections set query_only.
  [[nodiscard]] static Result<std::unique_ptr<SqliteConnection>> open(const std::string& path,
                                                                      bool read_only);
  ~SqliteConnection() override;

  [[nodiscard]] sql::Dialect dialect() const noexcept override { return sql::Dialect::sqlite; }
  [[nodiscard]] Result<std::int64_t> run(std::string_view sql, std::span<const sql::Param> params,
                                         sql::Rows* rows) override;
  [[nodiscard]] Status exec(std::string_view sql) override;
  [[nodiscard]] bool healthy() override { return db_ != nullptr; }
  [[nodiscard]] Status reconnect() override;

 private:
  explicit SqliteConnection(std::string path, bool read_only)
      : path_(std::move(path)), read_only_(read_only) {}
  [[nodiscard]] Status connect();
  [[nodiscard]] Error error(int rc, std::string_view what) const;
  void close();

  std::string path_;
  bool read_only_;
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

}  // namespace hallmark::store::sqlite

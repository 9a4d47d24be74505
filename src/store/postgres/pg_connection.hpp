#pragma once
#include <libpq-fe.h>

#include <memory>
#include <string>
#include <unordered_map>

#include "../sql.hpp"

namespace hallmark::store::postgres {

// One libpq connection with a cache of prepared statements ("?" rewritten to "$n"). Parameters go
// as text (integers, strings) or binary (bytea); results come back in binary and are decoded by type.
// A broken connection is reset by reconnect(); every failure to reach the server is
// Errc::unavailable, and connecting gives up after connect_timeout (2 s unless the URL says).
class PgConnection final : public sql::Connection {
 public:
  [[nodiscard]] static Result<std::unique_ptr<PgConnection>> open(const std::string& url);
  ~PgConnection() override;

  [[nodiscard]] sql::Dialect dialect() const noexcept override { return sql::Dialect::postgres; }
  [[nodiscard]] Result<std::int64_t> run(std::string_view sql, std::span<const sql::Param> params,
                                         sql::Rows* rows) override;
  [[nodiscard]] Status exec(std::string_view sql) override;
  [[nodiscard]] bool healthy() override { return conn_ && PQstatus(conn_) == CONNECTION_OK; }
  [[nodiscard]] Status reconnect() override;

 private:
  explicit PgConnection(std::string url) : url_(std::move(url)) {}
  [[nodiscard]] Status connect();
  [[nodiscard]] Error result_error(PGresult* res, std::string_view what) const;

  std::string url_;
  PGconn* conn_ = nullptr;
  std::unordered_map<std::string, std::string> statements_;  // sql -> prepared name
};

}  // namespace hallmark::store::postgres

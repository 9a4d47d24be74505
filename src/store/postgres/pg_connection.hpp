#pragma once
#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

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
  // Held back and sent with the next run() or exec() in one round trip (libpq pipeline mode).
  [[nodiscard]] Status queue(std::string_view sql, std::span<const sql::Param> params) override;
  // All in one round trip (libpq pipeline mode).
  [[nodiscard]] Result<std::vector<std::optional<Result<sql::Rows>>>> run_many(
      std::span<const sql::Statement> statements) override;
  [[nodiscard]] bool healthy() override { return conn_ && PQstatus(conn_) == CONNECTION_OK; }
  [[nodiscard]] Status reconnect() override;

 private:
  explicit PgConnection(std::string url) : url_(std::move(url)) {}
  struct ResultDeleter {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
  };
  using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;
  // A pipeline broke off: the error to report; the connection is reset for its next use.
  [[nodiscard]] Error pipeline_broken();
  // A statement with its parameters copied (it may be sent after the caller's values are gone).
  struct Outgoing {
    std::string statement;  // prepared name, or SQL with $n placeholders
    bool prepared = false;
    std::vector<std::string> text;  // text, or the bytes of a binary parameter
    std::vector<bool> null;
    std::vector<int> lengths;
    std::vector<int> formats;
  };

  [[nodiscard]] Status connect();
  [[nodiscard]] Error result_error(PGresult* res, std::string_view what) const;
  // The prepared statement's name (prepared on first use), or "" for statements sent unprepared.
  [[nodiscard]] Result<std::string> statement_name(std::string_view sql, std::size_t nparams);
  [[nodiscard]] static Outgoing outgoing(std::string statement, bool prepared,
                                         std::span<const sql::Param> params);
  [[nodiscard]] bool send(const Outgoing& o);
  // Enters pipeline mode and sends the statements queued so far (moved into `queued`); false: the
  // connection broke (see pipeline_broken).
  [[nodiscard]] bool begin_pipeline(std::vector<Outgoing>& queued);
  static void append_rows(PGresult* res, sql::Rows& rows);
  // Sends the queued statements and `last` in one round trip; `last`'s result, or the first error.
  [[nodiscard]] Result<ResultPtr> pipeline(const Outgoing& last);

  std::string url_;
  PGconn* conn_ = nullptr;
  std::unordered_map<std::string, std::string> statements_;  // sql -> prepared name
  std::vector<Outgoing> queued_;
};

}  // namespace hallmark::store::postgres

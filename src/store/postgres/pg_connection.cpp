#include "pg_connection.hpp"

#include <endian.h>

#include <cstring>

namespace hallmark::store::postgres {

namespace {

constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr std::size_t kMaxPreparedParams = 16;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// "?" -> "$1", "$2", ... (our SQL never has "?" inside literals).
std::string to_numbered(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      out += '$';
      out += std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

std::int64_t read_be(const char* p, int len) {
  std::uint64_t v = 0;
  for (int i = 0; i < len; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  if (len < 8 && len > 0 && (static_cast<unsigned char>(p[0]) & 0x80)) v |= ~std::uint64_t{0} << (8 * len);
  return static_cast<std::int64_t>(v);
}

}  // namespace

Result<std::unique_ptr<PgConnection>> PgConnection::open(const std::string& url) {
  std::unique_ptr<PgConnection> conn(new PgConnection(url));
  HM_TRY_VOID(conn->connect());
  return conn;
}

PgConnection::~PgConnection() {
  if (conn_) PQfinish(conn_);
}

Status PgConnection::connect() {
  if (conn_) PQfinish(conn_);
  statements_.clear();
  queued_.clear();
  // Defaults first: keywords inside the URL (expanded from dbname) override them.
  const char* keys[] = {"connect_timeout",
                        "application_name",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "dbname",
                        nullptr};
  const char* values[] = {"2", "hallmark", "10", "5", "3", url_.c_str(), nullptr};
  conn_ = PQconnectdbParams(keys, values, 1);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    std::string message = conn_ ? trim(PQerrorMessage(conn_)) : "out of memory";
    return fail(Errc::unavailable, "postgresql unavailable: " + message);
  }
  return {};
}

Status PgConnection::reconnect() {
  queued_.clear();
  if (conn_) {
    statements_.clear();
    PQreset(conn_);
    if (PQstatus(conn_) == CONNECTION_OK) return {};
    return fail(Errc::unavailable, "postgresql unavailable: " + trim(PQerrorMessage(conn_)));
  }
  return connect();
}

Error PgConnection::result_error(PGresult* res, std::string_view what) const {
  std::string message = res ? trim(PQresultErrorMessage(res)) : std::string();
  if (message.empty() && conn_) message = trim(PQerrorMessage(conn_));
  const char* state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK || sqlstate.starts_with("08") ||
      sqlstate.starts_with("57P") || sqlstate.starts_with("53") || sqlstate.empty()) {
    return Error{Errc::unavailable, "postgresql unavailable: " + message};
  }
  std::string detail = std::string(what) + ": " + message;
  if (sqlstate.starts_with("23")) return Error{Errc::conflict, std::move(detail)};
  if (sqlstate == "40001" || sqlstate == "40P01") return Error{Errc::conflict, "retry: " + detail};
  return Error{Errc::internal, "postgresql " + detail};
}

PgConnection::Outgoing PgConnection::outgoing(std::string statement, bool prepared,
                                              std::span<const sql::Param> params) {
  Outgoing out;
  out.statement = std::move(statement);
  out.prepared = prepared;
  const std::size_t n = params.size();
  out.text.resize(n);
  out.null.assign(n, false);
  out.lengths.assign(n, 0);
  out.formats.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>) {
            out.null[i] = true;
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            out.text[i] = std::to_string(v);
          } else if constexpr (std::is_same_v<T, std::string_view>) {
            out.text[i] = std::string(v);  // text parameters must be NUL-terminated
          } else {
            out.text[i].assign(reinterpret_cast<const char*>(v.data()), v.size());
            out.lengths[i] = static_cast<int>(v.size());
            out.formats[i] = 1;
          }
        },
        params[i]);
  }
  return out;
}

bool PgConnection::send(const Outgoing& o) {
  const std::size_t n = o.text.size();
  std::vector<const char*> values(n);
  for (std::size_t i = 0; i < n; ++i) values[i] = o.null[i] ? nullptr : o.text[i].c_str();
  const int np = static_cast<int>(n);
  return (o.prepared ? PQsendQueryPrepared(conn_, o.statement.c_str(), np, values.data(), o.lengths.data(),
                                           o.formats.data(), 1)
                     : PQsendQueryParams(conn_, o.statement.c_str(), np, nullptr, values.data(),
                                         o.lengths.data(), o.formats.data(), 1)) == 1;
}

Status PgConnection::queue(std::string_view sql, std::span<const sql::Param> params) {
  if (!conn_) return fail(Errc::unavailable, "postgresql unavailable: not connected");
  auto name = params.empty() ? std::string() : HM_TRY(statement_name(sql, params.size()));
  if (name.empty()) {
    queued_.push_back(outgoing(to_numbered(sql), false, params));
  } else {
    queued_.push_back(outgoing(std::move(name), true, params));
  }
  return {};
}

Result<std::string> PgConnection::statement_name(std::string_view sql, std::size_t nparams) {
  // Bulk statements (manifest import: 100 keys or rows) are planned with their values each time:
  // a cached generic plan made while the table was small would keep scanning it whole.
  if (nparams > kMaxPreparedParams) return std::string();
  std::string key(sql);
  auto it = statements_.find(key);
  if (it == statements_.end()) {
    std::string name = "hm" + std::to_string(statements_.size() + 1);
    ResultPtr res(PQprepare(conn_, name.c_str(), to_numbered(sql).c_str(), 0, nullptr));
    if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      return std::unexpected(result_error(res.get(), "prepare"));
    }
    it = statements_.emplace(std::move(key), std::move(name)).first;
  }
  return it->second;
}

bool PgConnection::begin_pipeline(std::vector<Outgoing>& queued) {
  queued = std::move(queued_);
  queued_.clear();
  if (PQenterPipelineMode(conn_) != 1) return false;
  for (const auto& q : queued)
    if (!send(q)) return false;
  return true;
}

Error PgConnection::pipeline_broken() {
  Error e{Errc::unavailable, "postgresql unavailable: " + trim(PQerrorMessage(conn_))};
  // The connection is in an unknown protocol state: start afresh on next use.
  PQreset(conn_);
  statements_.clear();
  return e;
}

Result<PgConnection::ResultPtr> PgConnection::pipeline(const Outgoing& last) {
  // [queued...] Sync [last] Sync, in one round trip. A failing queued statement skips the rest of
  // its segment; the Sync after it lets `last` run (a ROLLBACK must), inside the transaction
  // block the failure aborted, so anything else fails there too. The first failure is reported.
  std::vector<Outgoing> queued;
  if (!begin_pipeline(queued)) return std::unexpected(pipeline_broken());
  if (PQpipelineSync(conn_) != 1 || !send(last) || PQpipelineSync(conn_) != 1)
    return std::unexpected(pipeline_broken());

  std::optional<Error> first_error;
  ResultPtr last_result;
  auto check = [&](PGresult* r, std::string_view what) {
    const auto st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_PIPELINE_ABORTED) return;
    if (!first_error) first_error = result_error(r, what);
  };
  for (std::size_t i = 0; i <= queued.size(); ++i) {
    const bool is_last = i == queued.size();
    // One result per statement, then NULL; the segment ends with its Sync's result.
    if (is_last) {
      ResultPtr sync(PQgetResult(conn_));
      if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC)
        return std::unexpected(pipeline_broken());
    }
    ResultPtr res(PQgetResult(conn_));
    if (!res) return std::unexpected(pipeline_broken());
    check(res.get(), is_last ? std::string_view("statement") : std::string_view(queued[i].statement));
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    if (is_last) last_result = std::move(res);
  }
  ResultPtr sync(PQgetResult(conn_));
  if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC || PQexitPipelineMode(conn_) != 1)
    return std::unexpected(pipeline_broken());
  if (first_error) return std::unexpected(*first_error);
  return last_result;
}

Status PgConnection::exec(std::string_view sql) {
  if (!conn_) return fail(Errc::unavailable, "postgresql unavailable: not connected");
  if (!queued_.empty()) {
    // Pipelines carry one statement per message: split a control string ("RELEASE …; SAVEPOINT …").
    std::size_t start = 0;
    while (start < sql.size()) {
      std::size_t end = sql.find(';', start);
      if (end == std::string_view::npos) end = sql.size();
      std::string_view part = sql.substr(start, end - start);
      while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
      if (!part.empty()) queued_.push_back(outgoing(std::string(part), false, {}));
      start = end + 1;
    }
    if (queued_.empty()) return {};
    Outgoing last = std::move(queued_.back());
    queued_.pop_back();
    if (queued_.empty()) return exec(last.statement);
    HM_TRY_VOID(pipeline(last));
    return {};
  }
  ResultPtr res(PQexec(conn_, std::string(sql).c_str()));
  const auto status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return std::unexpected(result_error(res.get(), sql.substr(0, 40)));
  }
  return {};
}

Result<std::int64_t> PgConnection::run(std::string_view sql, std::span<const sql::Param> params,
                                       sql::Rows* rows) {
  if (!conn_) return fail(Errc::unavailable, "postgresql unavailable: not connected");
  auto name = HM_TRY(statement_name(sql, params.size()));
  const bool prepared = !name.empty();
  ResultPtr res;
  if (!queued_.empty()) {
    auto piped = pipeline(outgoing(prepared ? std::move(name) : to_numbered(sql), prepared, params));
    if (!piped) {
      if (piped.error().detail.find("does not exist") != std::string::npos &&
          piped.error().detail.find("prepared statement") != std::string::npos)
        statements_.clear();
      return std::unexpected(piped.error());
    }
    res = std::move(*piped);
  } else {
    const Outgoing o = outgoing(prepared ? std::move(name) : to_numbered(sql), prepared, params);
    const std::size_t n = o.text.size();
    std::vector<const char*> values(n);
    for (std::size_t i = 0; i < n; ++i) values[i] = o.null[i] ? nullptr : o.text[i].c_str();
    res.reset(prepared ? PQexecPrepared(conn_, o.statement.c_str(), static_cast<int>(n), values.data(),
                                        o.lengths.data(), o.formats.data(), 1)
                       : PQexecParams(conn_, o.statement.c_str(), static_cast<int>(n), nullptr, values.data(),
                                      o.lengths.data(), o.formats.data(), 1));
  }
  const auto status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    auto e = result_error(res.get(), "statement");
    if (e.detail.find("does not exist") != std::string::npos &&
        e.detail.find("prepared statement") != std::string::npos)
      statements_.clear();
    return std::unexpected(e);
  }
  if (rows && status == PGRES_TUPLES_OK) append_rows(res.get(), *rows);
  const char* tuples = PQcmdTuples(res.get());
  return std::int64_t{tuples && *tuples ? std::stoll(tuples) : 0};
}

void PgConnection::append_rows(PGresult* res, sql::Rows& rows) {
  const int nrows = PQntuples(res);
  const int ncols = PQnfields(res);
  rows.reserve(rows.size() + static_cast<std::size_t>(nrows));
  for (int r = 0; r < nrows; ++r) {
    std::vector<sql::Value> out;
    out.reserve(static_cast<std::size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (PQgetisnull(res, r, c)) {
        out.emplace_back(nullptr);
        continue;
      }
      const char* p = PQgetvalue(res, r, c);
      const int len = PQgetlength(res, r, c);
      switch (PQftype(res, c)) {
        case kInt8Oid:
        case kInt4Oid:
        case kInt2Oid: out.emplace_back(read_be(p, len)); break;
        case kBoolOid: out.emplace_back(std::int64_t{len > 0 && p[0] != 0}); break;
        case kByteaOid: {
          const auto* b = reinterpret_cast<const std::byte*>(p);
          out.emplace_back(Bytes(b, b + len));
          break;
        }
        default: out.emplace_back(std::string(p, static_cast<std::size_t>(len)));
      }
    }
    rows.emplace_back(std::move(out));
  }
}

Result<std::vector<std::optional<Result<sql::Rows>>>> PgConnection::run_many(
    std::span<const sql::Statement> statements) {
  if (!conn_) return fail(Errc::unavailable, "postgresql unavailable: not connected");
  std::vector<Outgoing> out;
  out.reserve(statements.size());
  for (const auto& st : statements) {
    auto name = st.params.empty() ? std::string() : HM_TRY(statement_name(st.sql, st.params.size()));
    const bool prepared = !name.empty();
    out.push_back(outgoing(prepared ? std::move(name) : to_numbered(st.sql), prepared, st.params));
  }
  // Queued statements go first; their failure fails the whole call (nothing after them ran).
  std::vector<Outgoing> queued;
  if (!begin_pipeline(queued)) return std::unexpected(pipeline_broken());
  for (const auto& o : out)
    if (!send(o)) return std::unexpected(pipeline_broken());
  if (PQpipelineSync(conn_) != 1) return std::unexpected(pipeline_broken());

  std::optional<Error> queued_error;
  std::vector<std::optional<Result<sql::Rows>>> results(statements.size());
  for (std::size_t i = 0; i < queued.size() + out.size(); ++i) {
    ResultPtr res(PQgetResult(conn_));
    if (!res) return std::unexpected(pipeline_broken());
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    const auto status = PQresultStatus(res.get());
    if (status == PGRES_PIPELINE_ABORTED) continue;  // after a failure: did not run
    const bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
    if (i < queued.size()) {
      if (!ok && !queued_error) queued_error = result_error(res.get(), "statement");
      continue;
    }
    auto& slot = results[i - queued.size()];
    if (!ok) {
      slot = Result<sql::Rows>(std::unexpected(result_error(res.get(), "statement")));
    } else {
      sql::Rows rows;
      if (status == PGRES_TUPLES_OK) append_rows(res.get(), rows);
      slot = Result<sql::Rows>(std::move(rows));
    }
  }
  ResultPtr sync(PQgetResult(conn_));
  if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC || PQexitPipelineMode(conn_) != 1)
    return std::unexpected(pipeline_broken());
  if (queued_error) return std::unexpected(*queued_error);
  return results;
}

}  // namespace hallmark::store::postgres

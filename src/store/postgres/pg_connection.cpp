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

struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

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

Status PgConnection::exec(std::string_view sql) {
  if (!conn_) return fail(Errc::unavailable, "postgresql unavailable: not connected");
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
  // Bulk statements (manifest import: 100 keys or rows) are planned with their values each time:
  // a cached generic plan made while the table was small would keep scanning it whole.
  const bool one_shot = params.size() > kMaxPreparedParams;
  std::string key(sql);
  auto it = statements_.find(key);
  if (!one_shot && it == statements_.end()) {
    std::string name = "hm" + std::to_string(statements_.size() + 1);
    ResultPtr res(PQprepare(conn_, name.c_str(), to_numbered(sql).c_str(), 0, nullptr));
    if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      return std::unexpected(result_error(res.get(), "prepare"));
    }
    it = statements_.emplace(std::move(key), std::move(name)).first;
  }

  const std::size_t n = params.size();
  std::vector<std::string> text(n);
  std::vector<const char*> values(n);
  std::vector<int> lengths(n, 0);
  std::vector<int> formats(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>) {
            values[i] = nullptr;
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            text[i] = std::to_string(v);
            values[i] = text[i].c_str();
          } else if constexpr (std::is_same_v<T, std::string_view>) {
            text[i] = std::string(v);  // text parameters must be NUL-terminated
            values[i] = text[i].c_str();
          } else {
            values[i] = v.empty() ? "" : reinterpret_cast<const char*>(v.data());
            lengths[i] = static_cast<int>(v.size());
            formats[i] = 1;
          }
        },
        params[i]);
  }
  ResultPtr res(one_shot ? PQexecParams(conn_, to_numbered(sql).c_str(), static_cast<int>(n), nullptr,
                                        values.data(), lengths.data(), formats.data(), 1)
                         : PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(n), values.data(),
                                          lengths.data(), formats.data(), 1));
  const auto status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    auto e = result_error(res.get(), "statement");
    if (e.detail.find("does not exist") != std::string::npos &&
        e.detail.find("prepared statement") != std::string::npos)
      statements_.clear();
    return std::unexpected(e);
  }
  if (rows && status == PGRES_TUPLES_OK) {
    const int nrows = PQntuples(res.get());
    const int ncols = PQnfields(res.get());
    rows->reserve(rows->size() + static_cast<std::size_t>(nrows));
    for (int r = 0; r < nrows; ++r) {
      std::vector<sql::Value> out;
      out.reserve(static_cast<std::size_t>(ncols));
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(res.get(), r, c)) {
          out.emplace_back(nullptr);
          continue;
        }
        const char* p = PQgetvalue(res.get(), r, c);
        const int len = PQgetlength(res.get(), r, c);
        switch (PQftype(res.get(), c)) {
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
      rows->emplace_back(std::move(out));
    }
  }
  const char* tuples = PQcmdTuples(res.get());
  return std::int64_t{tuples && *tuples ? std::stoll(tuples) : 0};
}

}  // namespace hallmark::store::postgres

#include "sqlite_connection.hpp"

#include <cstring>

namespace hallmark::store::sqlite {

Result<std::unique_ptr<SqliteConnection>> SqliteConnection::open(const std::string& path, bool read_only) {
  std::unique_ptr<SqliteConnection> conn(new SqliteConnection(path, read_only));
  HM_TRY_VOID(conn->connect());
  return conn;
}

SqliteConnection::~SqliteConnection() {
  close();
}

void SqliteConnection::close() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Status SqliteConnection::connect() {
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr); rc != SQLITE_OK) {
    auto e = error(rc, "open " + path_);
    close();
    return std::unexpected(e);
  }
  sqlite3_extended_result_codes(db_, 1);
  // journal_mode=WAL is persistent in the file; readers only need the rest.
  // A page cache large enough for the hot indexes (the default 2 MB thrashes at ~100k devices).
  std::string pragmas =
      "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; "
      "PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;";
  if (!read_only_ && path_ != ":memory:") pragmas = "PRAGMA journal_mode = WAL; " + pragmas;
  if (read_only_) pragmas += " PRAGMA query_only = ON;";
  if (auto st = exec(pragmas); !st) {
    close();
    return st;
  }
  return {};
}

Status SqliteConnection::reconnect() {
  close();
  return connect();
}

Error SqliteConnection::error(int rc, std::string_view what) const {
  std::string detail = std::string(what) + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return Error{Errc::conflict, std::move(detail)};
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: return Error{Errc::unavailable, "sqlite " + detail};
    default: return Error{Errc::internal, "sqlite " + detail};
  }
}

Status SqliteConnection::exec(std::string_view sql) {
  if (!db_) return fail(Errc::unavailable, "sqlite connection closed");
  if (sql.find(';') == std::string_view::npos) {
    HM_TRY_VOID(run(sql, {}, nullptr));
    return {};
  }
  char* message = nullptr;
  const std::string text(sql);
  if (int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message); rc != SQLITE_OK) {
    std::string detail = message ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    auto e = error(rc, "exec");
    e.detail = "sqlite exec: " + detail;
    return std::unexpected(e);
  }
  return {};
}

Result<std::int64_t> SqliteConnection::run(std::string_view sql, std::span<const sql::Param> params,
                                           sql::Rows* rows) {
  if (!db_) return fail(Errc::unavailable, "sqlite connection closed");
  std::string key(sql);
  sqlite3_stmt* stmt = nullptr;
  if (auto it = statements_.find(key); it != statements_.end()) {
    stmt = it->second;
  } else {
    if (int rc = sqlite3_prepare_v3(db_, key.data(), static_cast<int>(key.size()), SQLITE_PREPARE_PERSISTENT,
                                    &stmt, nullptr);
        rc != SQLITE_OK) {
      return std::unexpected(error(rc, "prepare"));
    }
    statements_.emplace(std::move(key), stmt);
  }
  struct Reset {
    sqlite3_stmt* s;
    ~Reset() {
      sqlite3_reset(s);
      sqlite3_clear_bindings(s);
    }
  } reset{stmt};

  for (std::size_t i = 0; i < params.size(); ++i) {
    const int idx = static_cast<int>(i) + 1;
    int rc = std::visit(
        [&](const auto& v) -> int {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::nullptr_t>)
            return sqlite3_bind_null(stmt, idx);
          else if constexpr (std::is_same_v<T, std::int64_t>)
            return sqlite3_bind_int64(stmt, idx, v);
          else if constexpr (std::is_same_v<T, std::string_view>)
            return sqlite3_bind_text64(stmt, idx, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
          else
            return sqlite3_bind_blob64(stmt, idx, v.empty() ? "" : static_cast<const void*>(v.data()),
                                       v.size(), SQLITE_STATIC);
        },
        params[i]);
    if (rc != SQLITE_OK) return std::unexpected(error(rc, "bind"));
  }

  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return std::unexpected(error(rc, "step"));
    if (!rows) continue;
    const int n = sqlite3_column_count(stmt);
    std::vector<sql::Value> values;
    values.reserve(static_cast<std::size_t>(n));
    for (int c = 0; c < n; ++c) {
      switch (sqlite3_column_type(stmt, c)) {
        case SQLITE_NULL: values.emplace_back(nullptr); break;
        case SQLITE_INTEGER: values.emplace_back(std::int64_t{sqlite3_column_int64(stmt, c)}); break;
        case SQLITE_BLOB: {
          const auto* p = static_cast<const std::byte*>(sqlite3_column_blob(stmt, c));
          values.emplace_back(Bytes(p, p + sqlite3_column_bytes(stmt, c)));
          break;
        }
        default: {
          const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
          values.emplace_back(
              std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt, c))));
        }
      }
    }
    rows->emplace_back(std::move(values));
  }
  return std::int64_t{sqlite3_changes64(db_)};
}

}  // namespace hallmark::store::sqlite

#pragma once
// The small SQL surface both back ends implement: run a statement with positional parameters ("?"),
// get rows of integers, text, blobs or NULL. Repository logic (sql_store.cpp) is written once on it.
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"

namespace hallmark::store::sql {

enum class Dialect { sqlite, postgres };

using Param = std::variant<std::nullptr_t, std::int64_t, std::string_view, ByteView>;
using Value = std::variant<std::nullptr_t, std::int64_t, std::string, Bytes>;

[[nodiscard]] inline Param opt(const std::optional<std::string>& v) {
  return v ? Param{std::string_view(*v)} : Param{nullptr};
}
[[nodiscard]] inline Param opt(const std::optional<std::int64_t>& v) {
  return v ? Param{*v} : Param{nullptr};
}
[[nodiscard]] inline Param opt(const std::optional<Seconds>& v) {
  return v ? Param{std::int64_t{v->time_since_epoch().count()}} : Param{nullptr};
}
[[nodiscard]] inline Param secs(Seconds t) {
  return std::int64_t{t.time_since_epoch().count()};
}
[[nodiscard]] inline Param flag(bool b) {
  return std::int64_t{b ? 1 : 0};
}

class Row {
 public:
  Row() = default;
  explicit Row(std::vector<Value> values) : values_(std::move(values)) {}

  [[nodiscard]] std::size_t size() const noexcept { return values_.size(); }
  [[nodiscard]] bool is_null(std::size_t i) const {
    return std::holds_alternative<std::nullptr_t>(values_.at(i));
  }
  [[nodiscard]] std::int64_t i64(std::size_t i) const;
  [[nodiscard]] std::string text(std::size_t i) const;
  [[nodiscard]] Bytes blob(std::size_t i) const;
  [[nodiscard]] bool boolean(std::size_t i) const { return i64(i) != 0; }
  [[nodiscard]] Seconds time(std::size_t i) const { return Seconds{std::chrono::seconds{i64(i)}}; }
  [[nodiscard]] std::optional<std::int64_t> opt_i64(std::size_t i) const {
    return is_null(i) ? std::nullopt : std::optional{i64(i)};
  }
  [[nodiscard]] std::optional<std::string> opt_text(std::size_t i) const {
    return is_null(i) ? std::nullopt : std::optional{text(i)};
  }
  [[nodiscard]] std::optional<Seconds> opt_time(std::size_t i) const {
    return is_null(i) ? std::nullopt : std::optional{time(i)};
  }

 private:
  std::vector<Value> values_;
};
using Rows = std::vector<Row>;

struct Statement {
  std::string_view sql;
  std::span<const Param> params;
};

// A parameter viewing a value (which must outlive it).
[[nodiscard]] inline Param view(const Value& v) {
  return std::visit(
      [](const auto& x) -> Param {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>)
          return std::string_view(x);
        else if constexpr (std::is_same_v<T, Bytes>)
          return ByteView(x);
        else
          return x;
      },
      v);
}

class Connection {
 public:
  virtual ~Connection() = default;
  [[nodiscard]] virtual Dialect dialect() const noexcept = 0;

  // Runs one statement ("?" placeholders); appends result rows to *rows when given; returns the
  // number of rows changed. Errors: conflict for constraint violations, unavailable when the
  // database cannot be reached or is busy, internal otherwise.
  [[nodiscard]] virtual Result<std::int64_t> run(std::string_view sql, std::span<const Param> params,
                                                 Rows* rows) = 0;
  // Statements without parameters (transaction control, DDL); may hold several.
  [[nodiscard]] virtual Status exec(std::string_view sql) = 0;
  // A statement whose result is not needed now. A client/server engine may hold it back and send
  // it with the next run() or exec() in one round trip; its failure is then that call's failure.
  // Here it runs at once.
  [[nodiscard]] virtual Status queue(std::string_view sql, std::span<const Param> params) {
    HM_TRY_VOID(run(sql, params, nullptr));
    return {};
  }
  [[nodiscard]] Status queue(std::string_view sql, std::initializer_list<Param> params = {}) {
    return queue(sql, std::span<const Param>(params.begin(), params.size()));
  }
  // Runs `statements` in order, stopping at the first that fails. One entry per statement: its
  // rows, its error, or nullopt when it did not run. A client/server engine sends them all (after
  // anything queued) in one round trip. The outer error: the connection or a queued statement
  // failed.
  [[nodiscard]] virtual Result<std::vector<std::optional<Result<Rows>>>> run_many(
      std::span<const Statement> statements) {
    std::vector<std::optional<Result<Rows>>> out(statements.size());
    for (std::size_t i = 0; i < statements.size(); ++i) {
      Rows rows;
      auto r = run(statements[i].sql, statements[i].params, &rows);
      if (!r) {
        if (r.error().code == Errc::unavailable) return std::unexpected(r.error());
        out[i] = Result<Rows>(std::unexpected(r.error()));
        break;
      }
      out[i] = Result<Rows>(std::move(rows));
    }
    return out;
  }
  // false when the connection is known to be broken.
  [[nodiscard]] virtual bool healthy() = 0;
  [[nodiscard]] virtual Status reconnect() = 0;

  [[nodiscard]] Result<Rows> query(std::string_view sql, std::initializer_list<Param> params = {}) {
    Rows rows;
    HM_TRY_VOID(run(sql, std::span<const Param>(params.begin(), params.size()), &rows));
    return rows;
  }
  [[nodiscard]] Result<Rows> query(std::string_view sql, std::span<const Param> params) {
    Rows rows;
    HM_TRY_VOID(run(sql, params, &rows));
    return rows;
  }
  [[nodiscard]] Result<std::int64_t> execute(std::string_view sql, std::initializer_list<Param> params = {}) {
    return run(sql, std::span<const Param>(params.begin(), params.size()), nullptr);
  }
  [[nodiscard]] Result<std::int64_t> execute(std::string_view sql, std::span<const Param> params) {
    return run(sql, params, nullptr);
  }
  // " FOR UPDATE" where the engine has row locks (SQLite has one writer: nothing to lock).
  [[nodiscard]] std::string_view for_update() const noexcept {
    return dialect() == Dialect::postgres ? " FOR UPDATE" : "";
  }
};

}  // namespace hallmark::store::sql

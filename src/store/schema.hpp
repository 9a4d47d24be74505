#pragma once
#include <string>
#include <vector>

#include "sql.hpp"

namespace hallmark::store {

struct Migration {
  int version;
  std::string description;
  std::string ddl;  // already rendered for the dialect
};

// All migrations in order, rendered for `dialect`. The logical schema is the same on both engines;
// only the spelling of generated ids and binary columns differs.
[[nodiscard]] std::vector<Migration> migrations(sql::Dialect dialect);

}  // namespace hallmark::store

#pragma once
// [revocation] of hallmark.toml, validated at start with exact messages
// ("hallmark.toml: [revocation] port must be between 0 and 65535"). Keys: docs/revocation.md.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/http/server.hpp"

namespace hallmark::revocation {

struct RevocationConfig {
  bool enabled = false;       // the table is present (or the command line turned the listener on)
  http::ServerConfig server;  // plain HTTP: listen, port, threads, handler_threads
  std::chrono::seconds crl_interval{3600};
  std::chrono::seconds next_update{86400};
  std::chrono::seconds ocsp_validity{3600};
  std::chrono::milliseconds poll_interval{1000};
  std::string crl_dir = "crl";  // relative to the PKI home
  std::string crl_reload_command;
  std::vector<std::string> crl_cas;   // empty: every CA with a local key
  std::vector<std::string> ocsp_cas;  // empty: every CA with a delegated responder
};

// Parses [revocation] from the whole hallmark.toml text; other tables are left to their owners.
[[nodiscard]] Result<RevocationConfig> parse_revocation_config(std::string_view toml_text,
                                                               std::string_view origin);

}  // namespace hallmark::revocation

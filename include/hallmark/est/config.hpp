#pragma once
// `hallmark serve` configuration: [server] and [est] of hallmark.toml, validated at start with exact
// messages ("hallmark.toml: [server] threads must be between 0 and 1024"). Names (CAs, profiles) are
// kept as names here; the app resolves them against the PKI home. Keys and defaults: docs/est.md.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/http/server.hpp"
#include "hallmark/ra/policy.hpp"

namespace hallmark::est {

struct ServeConfig {
  // listen, port, threads, limits, timeouts, tickets, proxy fingerprints and header. tls_cert and
  // tls_key are as written (relative to the PKI home unless absolute); tls_key_passphrase empty means
  // "the home's [pki] key_passphrase".
  http::ServerConfig server;
  std::vector<std::string> trusted_proxy_cas;  // [server.proxy] trusted_cas: CA names in the home
  std::string default_alias;                   // [est] default_alias; empty: the only alias, if one
  std::vector<ra::AliasPolicy> aliases;        // [est.alias.<name>], in name order
};

// Parses the whole hallmark.toml text; other tables ([pki], [database]...) are left to their owners.
[[nodiscard]] Result<ServeConfig> parse_serve_config(std::string_view toml_text, std::string_view origin);

// "forever" -> nullopt; "<N>y|d|h|m|s|ms" -> a duration. For lifetimes and windows.
[[nodiscard]] Result<std::optional<std::chrono::milliseconds>> parse_duration(std::string_view text,
                                                                              bool allow_forever);

}  // namespace hallmark::est

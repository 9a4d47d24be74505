#pragma once
// Shared pieces of the hallmark command line: exit codes, error printing, the --home option.
#include <CLI/CLI.hpp>
#include <string>

#include "hallmark/core/result.hpp"

namespace hallmark::app {

// Prints "hallmark: error: <detail>" to stderr and returns the exit code (hallmark/core/exit_code.hpp:
// stable for scripts).
int report(const Error& error);

struct GlobalOptions {
  std::string home = ".";
  std::string db;  // --db URL: overrides [database] url of hallmark.toml
};

// Each command group installs its subcommands; the callbacks set `status`.
void add_init_command(CLI::App& app, const GlobalOptions& global, int& status);
void add_ca_commands(CLI::App& app, const GlobalOptions& global, int& status);
void add_cert_commands(CLI::App& app, const GlobalOptions& global, int& status);
void add_profile_commands(CLI::App& app, const GlobalOptions& global, int& status);
void add_db_commands(CLI::App& app, const GlobalOptions& global, int& status);
void add_inventory_commands(CLI::App& app, const GlobalOptions& global, int& status);
void add_vendor_commands(CLI::App& app, int& status);
void add_serve_command(CLI::App& app, const GlobalOptions& global, int& status);
// After add_cert_commands: adds `cert revoke` to it, and `crl`.
void add_revocation_commands(CLI::App& app, const GlobalOptions& global, int& status);
void add_proxy_commands(CLI::App& app, const GlobalOptions& global, int& status);

}  // namespace hallmark::app

// hallmark: the OEM's PKI, inventory and registration authority, on one command line.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli.hpp"
#include "hallmark/core/exit_code.hpp"
#include "hallmark/core/log.hpp"

namespace hallmark::app {

int report(const Error& error) {
  return report_error("hallmark", error);
}

}  // namespace hallmark::app

int main(int argc, char** argv) {
  using namespace hallmark::app;
  CLI::App app{
      "hallmark: permanent device identities. The OEM's CAs, the inventory of birth certificates and\n"
      "the registration authority that issues IEEE 802.1AR Initial Device Certificates."};
  app.set_version_flag("--version", "hallmark 0.1.0");
  app.require_subcommand(1);
  GlobalOptions global;
  app.add_option("--home", global.home, "PKI home directory (holds hallmark.toml)")
      ->envname("HALLMARK_HOME")
      ->capture_default_str();
  app.add_option("--db", global.db,
                 "Database URL (sqlite:PATH, postgresql://...); overrides [database] url of hallmark.toml")
      ->envname("HALLMARK_DB");
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log debug events to stderr");

  int status = 0;
  add_init_command(app, global, status);
  add_ca_commands(app, global, status);
  add_cert_commands(app, global, status);
  add_profile_commands(app, global, status);
  add_db_commands(app, global, status);
  add_inventory_commands(app, global, status);
  add_vendor_commands(app, status);
  add_serve_command(app, global, status);
  add_revocation_commands(app, global, status);
  add_proxy_commands(app, global, status);
  app.parse_complete_callback([&] {
    if (verbose) hallmark::log::set_level(hallmark::log::Level::debug);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}

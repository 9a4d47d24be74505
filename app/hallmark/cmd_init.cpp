// hallmark init: a new PKI home with its root, sub-CAs, RA server certificate and OCSP signer.
#include <fmt/format.h>

#include <filesystem>
#include <functional>

#include "cli.hpp"
#include "db.hpp"
#include "home.hpp"
#include "output.hpp"

namespace hallmark::app {
namespace fs = std::filesystem;

void add_init_command(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* cmd = app.add_subcommand(
      "init",
      "Create a PKI home: root CA, BC policy CA, IDC issuing CA, TLS CA with the RA's server certificate,\n"
      "an OCSP signer, certificate profiles and hallmark.toml. Refuses to touch an existing home.");
  auto options = std::make_shared<InitOptions>();
  auto pass_file = std::make_shared<std::string>();
  auto pass_env = std::make_shared<std::string>();
  auto names = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--org", options->organization, "Organization (O) of the OEM")->capture_default_str();
  cmd->add_option("--product", options->product, "Product name, the IDC's CN")->capture_default_str();
  cmd->add_option("--product-oid", options->product_oid, "hwType OID of the IDC's hardwareModuleName")
      ->capture_default_str();
  cmd->add_option("--base-url", options->base_url,
                  "URL prefix for CRL distribution points and AIA in issued certificates");
  cmd->add_option("--key-type", options->key_type,
                  "CA key type: p256, p384, ed25519, rsa2048, rsa3072, rsa4096")
      ->capture_default_str();
  auto* pf = cmd->add_option(
      "--passphrase-file", *pass_file,
      "File whose first line is the CA key passphrase (default: generate secrets/ca-passphrase)");
  auto* pe =
      cmd->add_option("--passphrase-env", *pass_env, "Environment variable holding the CA key passphrase");
  pf->excludes(pe);
  cmd->add_option(
      "--server-name", *names,
      "DNS name or IP address of the RA server certificate (repeatable; default localhost, 127.0.0.1)");

  cmd->callback([&global, &status, options, pass_file, pass_env, names] {
    if (!pass_file->empty()) options->passphrase_source = "file:" + fs::absolute(*pass_file).string();
    if (!pass_env->empty()) options->passphrase_source = "env:" + *pass_env;
    if (!names->empty()) options->server_names = *names;
    const SystemClock clock;
    auto home = PkiHome::init(global.home, *options, clock);
    if (!home) {
      status = report(home.error());
      return;
    }
    // The database holds the store's copy of the CAs; init creates and migrates it.
    auto registered = [&]() -> Status {
      auto db = HM_TRY(open_database(*home, global.db, SchemaPolicy::migrate));
      for (const auto& ca : HM_TRY(home->list_cas())) HM_TRY_VOID(register_ca(*db, *home, ca));
      return {};
    }();
    if (!registered) {
      status = report(registered.error());
      return;
    }
    fmt::print("Created PKI home {}\n", home->dir().string());
    if (auto printed = print_home_tree(*home); !printed) status = report(printed.error());
  });
}

}  // namespace hallmark::app

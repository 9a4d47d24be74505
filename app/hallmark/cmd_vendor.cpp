// hallmark vendor init|request-subca|install-subca|provision: the silicon vendor's station, a separate
// trust domain with its own home (--vendor-home, default $HALLMARK_VENDOR_HOME or ./vendor).
#include <fmt/format.h>

#include "cli.hpp"
#include "hallmark/vendor/vendor.hpp"

namespace hallmark::app {

void add_vendor_commands(CLI::App& app, int& status) {
  auto* vendor =
      app.add_subcommand("vendor", "The silicon vendor's provisioning station (its own home and keys)");
  vendor->require_subcommand(1);
  auto home = std::make_shared<std::string>("vendor");
  vendor->add_option("--vendor-home", *home, "Vendor station home directory")
      ->envname("HALLMARK_VENDOR_HOME")
      ->capture_default_str();
  const auto report_errors = [&status](const Status& r) {
    if (!r) status = report(r.error());
  };
  {
    auto* cmd = vendor->add_subcommand("init", "Create the station: manifest-signer key and certificate");
    auto options = std::make_shared<vendor::InitOptions>();
    auto pass_file = std::make_shared<std::string>();
    auto pass_env = std::make_shared<std::string>();
    cmd->add_option("--org", options->organization, "The vendor's organization")->capture_default_str();
    cmd->add_flag("--generic-bc-ca", options->generic_bc_ca,
                  "Also create a generic BC CA shared by all customers (Option 3)");
    auto* pf = cmd->add_option("--passphrase-file", *pass_file, "File holding the key passphrase");
    cmd->add_option("--passphrase-env", *pass_env, "Environment variable holding the key passphrase")
        ->excludes(pf);
    cmd->callback([home, options, pass_file, pass_env, report_errors] {
      report_errors([&]() -> Status {
        options->home = *home;
        if (!pass_file->empty())
          options->passphrase_source = "file:" + std::filesystem::absolute(*pass_file).string();
        if (!pass_env->empty()) options->passphrase_source = "env:" + *pass_env;
        const SystemClock clock;
        const auto s = HM_TRY(vendor::init(*options, clock));
        fmt::print("Created vendor station {}\n  manifest signer: {}\n  kid: {}\n  x5t#S256: {}\n",
                   s.home.string(), s.signer_subject, s.signer_kid, s.signer_x5t);
        if (s.generic_bc_ca_subject) fmt::print("  generic BC CA: {}\n", *s.generic_bc_ca_subject);
        for (const auto& f : s.files) fmt::print("  {}\n", f);
        return {};
      }());
    });
  }
  {
    auto* cmd = vendor->add_subcommand("request-subca",
                                       "BYORoT: make a sub-CA key (kept here) and a CSR for the OEM to sign");
    auto options = std::make_shared<vendor::RequestSubcaOptions>();
    auto out = std::make_shared<std::string>();
    cmd->add_option("--role", options->role, "bc or idc")->required();
    cmd->add_option("--oem", options->oem, "The customer (OEM) name, for the CA's CN")->required();
    cmd->add_option("--out", *out, "CSR file (default: <home>/subca/<role>/request.csr)");
    cmd->callback([home, options, out, report_errors] {
      report_errors([&]() -> Status {
        options->home = *home;
        options->out = *out;
        const auto s = HM_TRY(vendor::request_subca(*options));
        fmt::print("Sub-CA request for role {}: {}\n  CSR: {}\n  key (stays here): {}\n", s.role, s.subject,
                   s.csr.string(), s.key.string());
        return {};
      }());
    });
  }
  {
    auto* cmd =
        vendor->add_subcommand("install-subca", "Install the sub-CA certificate chain the OEM signed");
    auto options = std::make_shared<vendor::InstallSubcaOptions>();
    auto chain = std::make_shared<std::string>();
    cmd->add_option("--role", options->role, "bc or idc")->required();
    cmd->add_option("--chain", *chain, "PEM chain: the sub-CA first, up to the OEM root")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->callback([home, options, chain, report_errors] {
      report_errors([&]() -> Status {
        options->home = *home;
        options->chain_pem = *chain;
        const SystemClock clock;
        const auto s = HM_TRY(vendor::install_subca(*options, clock));
        fmt::print("Installed {} sub-CA {}\n  issued by {}\n  root {}\n", s.role, s.subject, s.issuer,
                   s.root_subject);
        return {};
      }());
    });
  }
  {
    auto* cmd = vendor->add_subcommand(
        "provision",
        "Provision a reel: per chip a key, a unique id and a certificate (idc: Option 1, bc: Option 2,\n"
        "bc-secret: Option 3), a signed reel manifest and, unless --no-images, one chip image per device");
    auto options = std::make_shared<vendor::ProvisionOptions>();
    auto mode = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto no_images = std::make_shared<bool>(false);
    cmd->add_option("--mode", *mode, "idc, bc or bc-secret")->required();
    cmd->add_option("--count", options->count, "Number of chips")->required();
    cmd->add_option("--part-number", options->part_number, "Part number, e.g. ATECC608B-TFLXTLS")->required();
    cmd->add_option("--reel", options->reel, "Reel id (never reused)")->required();
    cmd->add_option("--out", *out, "Output directory")->required();
    cmd->add_flag("--no-images", *no_images, "Write only the manifest, no chip images");
    cmd->add_option("--threads", options->threads, "Producer threads (default: one per core)");
    cmd->add_option("--product", options->product, "Option 1: the IDC's CN (default: the part number)");
    cmd->add_option("--product-oid", options->product_oid, "Option 1: hwType of the IDC's hardwareModuleName")
        ->capture_default_str();
    cmd->callback([home, options, mode, out, no_images, report_errors] {
      report_errors([&]() -> Status {
        options->home = *home;
        options->mode = HM_TRY(vendor::parse_mode(*mode));
        options->out_dir = *out;
        options->images = !*no_images;
        const SystemClock clock;
        const auto s = HM_TRY(vendor::provision(*options, clock));
        fmt::print("{}\n", vendor::describe(s));
        return {};
      }());
    });
  }
  {
    auto* cmd = vendor->add_subcommand(
        "issue-ocsp-delegate",
        "Option 1: issue the OEM a delegated OCSP responder certificate under the vendor-held sub-CA,\n"
        "for the OEM's request from 'hallmark ocsp request' (see docs/revocation.md)");
    auto options = std::make_shared<vendor::OcspDelegateOptions>();
    auto csr = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    cmd->add_option("--csr", *csr, "The OEM's request (PEM or DER)")->required()->check(CLI::ExistingFile);
    cmd->add_option("--role", options->role, "Sub-CA: idc or bc")->capture_default_str();
    cmd->add_option("--out", *out, "Certificate file to send back to the OEM (PEM, with the chain)")
        ->required();
    cmd->callback([home, options, csr, out, report_errors] {
      report_errors([&]() -> Status {
        options->home = *home;
        options->csr = *csr;
        options->out = *out;
        const SystemClock clock;
        const auto s = HM_TRY(vendor::issue_ocsp_delegate(*options, clock));
        fmt::print("Issued OCSP delegate {}\n  issuer: {}\n  serial: {}\n  written to {}\n", s.subject,
                   s.issuer, s.serial_hex, s.out.string());
        return {};
      }());
    });
  }
}

}  // namespace hallmark::app

// hallmark ca list|show|create|sign-subca|export-chain|import-external
#include <fmt/format.h>

#include "cli.hpp"
#include "db.hpp"
#include "hallmark/x509/csr.hpp"
#include "home.hpp"
#include "output.hpp"

namespace hallmark::app {

namespace {

Status ca_list(const PkiHome& home) {
  std::vector<std::vector<std::string>> rows{
      {"NAME", "ROLE", "PARENT", "KEY", "STATUS", "KEY TYPE", "NOT AFTER", "SUBJECT"}};
  for (const auto& ca : HM_TRY(home.list_cas())) {
    rows.push_back({ca.name, ca.role, ca.parent.empty() ? "-" : ca.parent,
                    std::string(to_string(ca.key_holder)), ca.status,
                    ca.certificate.public_key().info().describe(), date_or_never(ca.certificate.not_after()),
                    ca.certificate.subject().to_string()});
  }
  print_table(rows);
  return {};
}

Status ca_show(const PkiHome& home, const std::string& name) {
  const auto ca = HM_TRY(home.find_ca(name));
  fmt::print("name:        {}\nrole:        {}\nparent:      {}\nkey:         {}\nstatus:      {}\n", ca.name,
             ca.role, ca.parent.empty() ? "-" : ca.parent, to_string(ca.key_holder), ca.status);
  fmt::print("certificate: {}\n", (home.ca_dir(ca.name) / "cert.pem").string());
  fmt::print("{}", ca.certificate.describe());
  return {};
}

}  // namespace

void add_ca_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* ca = app.add_subcommand("ca", "Manage the OEM's certificate authorities");
  ca->require_subcommand(1);
  const auto run = [&global, &status](const std::function<Status(const PkiHome&)>& body) {
    auto home = PkiHome::open(global.home);
    if (!home) {
      status = report(home.error());
      return;
    }
    if (auto r = body(*home); !r) status = report(r.error());
  };

  ca->add_subcommand("list", "List the CAs of the PKI home")->callback([run] { run(ca_list); });

  {
    auto* cmd = ca->add_subcommand("show", "Show one CA: role, key holder, certificate details");
    auto name = std::make_shared<std::string>();
    cmd->add_option("name", *name, "CA name")->required();
    cmd->callback([run, name] { run([&](const PkiHome& h) { return ca_show(h, *name); }); });
  }
  {
    auto* cmd =
        ca->add_subcommand("create", "Create a CA with a new local key (a root, or a sub-CA under --parent)");
    auto name = std::make_shared<std::string>();
    auto role = std::make_shared<std::string>();
    auto parent = std::make_shared<std::string>();
    auto cn = std::make_shared<std::string>();
    auto key_type = std::make_shared<std::string>();
    cmd->add_option("--name", *name, "CA name (a-z 0-9 . _ -)")->required();
    cmd->add_option("--role", *role, "root, bc, idc, tls, ocsp or manifest-signer")->required();
    cmd->add_option("--parent", *parent, "Issuing CA of a sub-CA");
    cmd->add_option("--cn", *cn, "Common name (default: '<organization> <name> CA')");
    cmd->add_option("--key-type", *key_type, "Key type (default: [pki] key_type)");
    cmd->callback([&global, run, name, role, parent, cn, key_type] {
      run([&](const PkiHome& h) -> Status {
        const SystemClock clock;
        const auto common_name = cn->empty() ? fmt::format("{} {} CA", h.config().organization, *name) : *cn;
        const auto kt = key_type->empty() ? h.config().key_type : *key_type;
        auto db = HM_TRY(open_database(h, global.db));
        const auto rec = HM_TRY(h.create_ca(*name, *role, *parent, common_name, kt, clock));
        HM_TRY_VOID(register_ca(*db, h, rec));
        fmt::print("Created CA {}: {}\n", rec.name, summary(rec.certificate));
        return {};
      });
    });
  }
  {
    auto* cmd = ca->add_subcommand(
        "sign-subca",
        "BYORoT: sign a sub-CA CSR whose key stays with the requester (a silicon vendor).\n"
        "CN and O come from the CSR; every extension from the profile sub-ca-<role>.");
    auto csr_path = std::make_shared<std::string>();
    auto role = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    auto parent = std::make_shared<std::string>("root");
    auto out = std::make_shared<std::string>();
    cmd->add_option("--csr", *csr_path, "The sub-CA's CSR (PEM or DER)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--role", *role, "bc, idc, tls, ocsp or manifest-signer")->required();
    cmd->add_option("--name", *name, "Name to record the CA under (default: vendor-<role>)");
    cmd->add_option("--parent", *parent, "Issuing CA")->capture_default_str();
    cmd->add_option("--out", *out, "Write the signed certificate chain (PEM) here (default: stdout)");
    cmd->callback([&global, run, csr_path, role, name, parent, out] {
      run([&](const PkiHome& h) -> Status {
        const SystemClock clock;
        const auto data = HM_TRY(read_file(*csr_path));
        auto csr = x509::Csr::parse(data);
        if (!csr) return std::unexpected(csr.error().with_context(*csr_path));
        const auto rec =
            HM_TRY(h.sign_subca(name->empty() ? "vendor-" + *role : *name, *role, *parent, *csr, clock));
        std::string pem;
        for (const auto& c : HM_TRY(h.chain_of(rec.name))) pem += c.to_pem();
        HM_TRY_VOID(write_output(*out, as_bytes(pem)));
        fmt::print(stderr, "Signed sub-CA {} ({}) under {}: {}\n", rec.name, rec.role, rec.parent,
                   summary(rec.certificate));
        return {};
      });
    });
  }
  {
    auto* cmd = ca->add_subcommand("export-chain", "Print a CA's chain up to its root (PEM, the CA first)");
    auto name = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    cmd->add_option("name", *name, "CA name")->required();
    cmd->add_option("--out", *out, "Output file (default: stdout)");
    cmd->callback([run, name, out] {
      run([&](const PkiHome& h) -> Status {
        std::string pem;
        for (const auto& c : HM_TRY(h.chain_of(*name))) pem += c.to_pem();
        return write_output(*out, as_bytes(pem));
      });
    });
  }
  {
    auto* cmd = ca->add_subcommand(
        "import-external",
        "Record a CA certificate whose key is not ours (a vendor's generic BC CA, a trust anchor)");
    auto path = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    auto role = std::make_shared<std::string>("bc");
    cmd->add_option("cert", *path, "CA certificate (PEM or DER)")->required()->check(CLI::ExistingFile);
    cmd->add_option("--name", *name, "Name to record it under")->required();
    cmd->add_option("--role", *role, "What it is trusted for: bc, idc, tls, ...")->capture_default_str();
    cmd->callback([&global, run, path, name, role] {
      run([&](const PkiHome& h) -> Status {
        const auto data = HM_TRY(read_file(*path));
        auto cert = x509::Certificate::parse(data);
        if (!cert) return std::unexpected(cert.error().with_context(*path));
        auto db = HM_TRY(open_database(h, global.db));
        const auto rec = HM_TRY(h.import_external(*name, *role, *cert));
        HM_TRY_VOID(register_ca(*db, h, rec));
        fmt::print("Imported external CA {} ({}): {}\n", rec.name, rec.role, summary(rec.certificate));
        return {};
      });
    });
  }
}

}  // namespace hallmark::app

// hallmark cert issue|show, hallmark profile list|show
#include <fmt/format.h>

#include "cli.hpp"
#include "hallmark/x509/csr.hpp"
#include "home.hpp"
#include "output.hpp"

namespace hallmark::app {

namespace {

// The CA role an end-entity profile issues from when --ca is not given.
std::string default_role_for(const ca::Profile& profile) {
  if (profile.name == "bc") return "bc";
  if (profile.name == "tls-server" || profile.name == "proxy-client") return "tls";
  return "idc";
}

Result<std::map<std::string, std::string>> parse_assignments(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return fail(Errc::invalid_input, fmt::format("--set expects NAME=VALUE, got '{}'", item));
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

}  // namespace

void add_cert_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* cert = app.add_subcommand("cert", "Issue and inspect certificates");
  cert->require_subcommand(1);
  {
    auto* cmd = cert->add_subcommand(
        "issue",
        "Issue a certificate from a CSR under a profile. The profile decides subject and extensions;\n"
        "the CSR supplies the key. Variables fill the profile's subject: serial, hw_serial, product, cn, "
        "host, ip.");
    auto csr_path = std::make_shared<std::string>();
    auto profile_name = std::make_shared<std::string>();
    auto ca_name = std::make_shared<std::string>();
    auto sets = std::make_shared<std::vector<std::string>>();
    auto out = std::make_shared<std::string>();
    auto chain = std::make_shared<bool>(false);
    cmd->add_option("--csr", *csr_path, "CSR (PEM or DER)")->required()->check(CLI::ExistingFile);
    cmd->add_option("--profile", *profile_name, "Profile name (see 'hallmark profile list')")->required();
    cmd->add_option("--ca", *ca_name, "Issuing CA (default: the CA whose role fits the profile)");
    cmd->add_option("--set", *sets, "Profile variable NAME=VALUE (repeatable)");
    cmd->add_option("--out", *out, "Output file (default: stdout)");
    cmd->add_flag("--chain", *chain, "Append the issuing CA's chain");
    cmd->callback([&global, &status, csr_path, profile_name, ca_name, sets, out, chain] {
      auto r = [&]() -> Status {
        const auto home = HM_TRY(PkiHome::open(global.home));
        const auto profile = HM_TRY(home.load_profile(*profile_name));
        if (profile.kind != ca::ProfileKind::end_entity) {
          return fail(Errc::invalid_input,
                      fmt::format("profile {} is a CA profile; use 'hallmark ca create' or "
                                  "'hallmark ca sign-subca'",
                                  profile.name));
        }
        const auto ca = ca_name->empty() ? HM_TRY(home.find_ca_by_role(default_role_for(profile)))
                                         : HM_TRY(home.find_ca(*ca_name));
        const auto signer = HM_TRY(home.load_signer(ca));
        const auto data = HM_TRY(read_file(*csr_path));
        auto csr = x509::Csr::parse(data);
        if (!csr) return std::unexpected(csr.error().with_context(*csr_path));
        auto variables = HM_TRY(parse_assignments(*sets));
        variables.emplace("org", home.config().organization);
        variables.emplace("product", home.config().product);
        const SystemClock clock;
        const ca::Issuer issuer(ca.certificate, signer, clock);
        const auto issued =
            HM_TRY(issuer.issue(ca::IssueRequest{*csr, variables, std::nullopt, std::nullopt}, profile));
        std::string pem = issued.to_pem();
        if (*chain) {
          for (const auto& c : HM_TRY(home.chain_of(ca.name))) pem += c.to_pem();
        }
        HM_TRY_VOID(write_output(*out, as_bytes(pem)));
        fmt::print(stderr, "Issued {} serial {} by CA {}\n", issued.subject().to_string(),
                   issued.serial_hex(), ca.name);
        return {};
      }();
      if (!r) status = report(r.error());
    });
  }
  {
    auto* cmd = cert->add_subcommand("show", "Show a certificate file (PEM, PEM chain or DER)");
    auto path = std::make_shared<std::string>();
    cmd->add_option("file", *path, "Certificate file")->required()->check(CLI::ExistingFile);
    cmd->callback([&status, path] {
      auto r = [&]() -> Status {
        const auto data = HM_TRY(read_file(*path));
        std::vector<x509::Certificate> certs;
        if (auto chain = x509::Certificate::parse_pem_chain(as_chars(data)); chain) {
          certs = std::move(*chain);
        } else {
          auto one = x509::Certificate::parse_der(data);
          if (!one)
            return std::unexpected(Error{Errc::invalid_input, *path + ": not a PEM or DER certificate"});
          certs.push_back(std::move(*one));
        }
        for (std::size_t i = 0; i < certs.size(); ++i) {
          if (certs.size() > 1) fmt::print("# certificate {} of {}\n", i + 1, certs.size());
          fmt::print("{}", certs[i].describe());
        }
        return {};
      }();
      if (!r) status = report(r.error());
    });
  }
}

void add_profile_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* profile = app.add_subcommand("profile", "Inspect certificate profiles (TOML files in profiles/)");
  profile->require_subcommand(1);
  profile->add_subcommand("list", "List the profiles of the PKI home")->callback([&global, &status] {
    auto r = [&]() -> Status {
      const auto home = HM_TRY(PkiHome::open(global.home));
      std::vector<std::vector<std::string>> rows{{"NAME", "KIND", "LIFETIME", "DESCRIPTION"}};
      for (const auto& p : HM_TRY(home.list_profiles())) {
        rows.push_back({p.name, std::string(ca::to_string(p.kind)),
                        p.lifetime ? fmt::format("{}d", p.lifetime->count() / 86400) : "never expires",
                        p.description});
      }
      print_table(rows);
      return {};
    }();
    if (!r) status = report(r.error());
  });
  auto* show = profile->add_subcommand("show", "Print a profile as TOML");
  auto name = std::make_shared<std::string>();
  show->add_option("name", *name, "Profile name")->required();
  show->callback([&global, &status, name] {
    auto r = [&]() -> Status {
      const auto home = HM_TRY(PkiHome::open(global.home));
      fmt::print("{}", HM_TRY(home.load_profile(*name)).to_toml());
      return {};
    }();
    if (!r) status = report(r.error());
  });
}

}  // namespace hallmark::app

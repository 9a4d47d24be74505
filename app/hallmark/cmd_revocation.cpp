// hallmark cert revoke, hallmark crl generate|show, hallmark ocsp request|install (docs/revocation.md)
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "cli.hpp"
#include "db.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/est/config.hpp"
#include "hallmark/revocation/revocation.hpp"
#include "hallmark/x509/builder.hpp"
#include "hallmark/x509/csr.hpp"
#include "home.hpp"
#include "output.hpp"
#include "revocation_cas.hpp"

namespace hallmark::app {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kReasons =
    "unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, "
    "privilegeWithdrawn, aACompromise";

Result<x509::RevocationReason> parse_reason(std::string_view name) {
  auto r = x509::parse_revocation_reason(name);
  if (!r)
    return fail(Errc::invalid_input,
                fmt::format("unknown revocation reason '{}' (reasons: {})", name, kReasons));
  if (*r == x509::RevocationReason::certificate_hold || *r == x509::RevocationReason::remove_from_crl) {
    return fail(
        Errc::invalid_input,
        fmt::format("revocation reason '{}' is not supported: revocations are permanent (reasons: {})", name,
                    kReasons));
  }
  return r;
}

Result<std::chrono::seconds> parse_validity(const std::string& text) {
  auto d = est::parse_duration(text, false);
  if (!d || !*d || **d < std::chrono::seconds(1))
    return fail(Errc::invalid_input,
                fmt::format("--next-update '{}' is not a duration such as 12h, 1d or 7d", text));
  return std::chrono::duration_cast<std::chrono::seconds>(**d);
}

void print_revoked(const store::CertificateRecord& c) {
  fmt::print("Revoked certificate {} (CA {}, reason {}, at {})\n", c.serial_hex, c.issuer_ca,
             x509::to_string(static_cast<x509::RevocationReason>(c.reason.value_or(0))),
             c.revoked_at ? to_iso8601(*c.revoked_at) : "-");
}

Result<std::vector<store::CertificateRecord>> revoke_by_serial(store::Store& s, const PkiHome& home,
                                                               const std::string& serial_text,
                                                               x509::RevocationReason reason,
                                                               const revocation::RevokeOptions& options) {
  const auto serial = HM_TRY(revocation::normalize_serial(serial_text));
  auto known = s.find_certificate_by_serial(serial);
  if (known) return std::vector{HM_TRY(revocation::revoke_certificate(s, serial, reason, options))};
  if (known.error().code != Errc::not_found) return std::unexpected(known.error());
  // Not issued here: the certificate of a device row (a BC of our BC CA, an Option 1 IDC).
  const SystemClock clock;
  const auto cas = HM_TRY(revocation_cas(home, {}, clock));
  auto device = revocation::find_device_by_certificate_serial(s, serial, cas);
  if (!device)
    return fail(Errc::not_found, fmt::format("no certificate with serial {} (hallmark issued none, and "
                                             "no device of the inventory carries one)",
                                             serial));
  return std::vector{HM_TRY(revocation::revoke_device_certificate(s, *device, cas, reason, options))};
}

Result<std::vector<store::CertificateRecord>> revoke_by_ukid(store::Store& s, const PkiHome& home,
                                                             const std::string& ukid,
                                                             x509::RevocationReason reason,
                                                             const revocation::RevokeOptions& options) {
  std::optional<store::Id> device_id;
  if (auto d = s.find_device_by_ukid(ukid)) {
    device_id = d->id;
  } else if (d.error().code != Errc::not_found) {
    return std::unexpected(d.error());
  }
  if (!device_id) {
    auto c = s.find_certificate_by_ukid(ukid);
    if (!c) {
      if (c.error().code == Errc::not_found)
        return fail(Errc::not_found, fmt::format("no device or certificate with UKID {}", ukid));
      return std::unexpected(c.error());
    }
    if (!c->device_id)
      return std::vector{HM_TRY(revocation::revoke_certificate(s, c->serial_hex, reason, options))};
    device_id = c->device_id;
  }
  auto revoked = HM_TRY(revocation::revoke_device_certificates(s, *device_id, reason, options));
  if (!revoked.empty()) return revoked;
  // Option 1: the IDC the vendor issued is the device row's certificate.
  const auto device = HM_TRY(s.find_device(*device_id));
  const SystemClock clock;
  const auto cas = HM_TRY(revocation_cas(home, {}, clock));
  const auto* issuer = revocation::find_issuer(cas, device.bc_issuer);
  const auto ca = issuer ? home.find_ca(issuer->name) : Result<CaRecord>(fail(Errc::not_found, "-"));
  if (ca && ca->role == "idc") {
    return std::vector{HM_TRY(revocation::revoke_device_certificate(s, device, cas, reason, options))};
  }
  return fail(Errc::conflict, fmt::format("device with UKID {} has no good certificate to revoke", ukid));
}

std::string describe_crl(const x509::Crl& crl) {
  std::string out;
  out += fmt::format("Issuer:       {}\n", crl.issuer().to_string());
  out += fmt::format("CRL number:   {}\n", crl.crl_number() ? std::to_string(*crl.crl_number()) : "-");
  out += fmt::format("This update:  {}\n", to_iso8601(crl.this_update()));
  out += fmt::format("Next update:  {}\n", crl.next_update() ? to_iso8601(*crl.next_update()) : "-");
  out += fmt::format("AKI:          {}\n", crl.authority_key_id() ? to_hex(*crl.authority_key_id()) : "-");
  const auto entries = crl.entries();
  out += fmt::format("Entries:      {}\n", entries.size());
  for (const auto& e : entries) {
    out += fmt::format("  {}  {}  {}\n", to_hex(e.serial), to_iso8601(e.revocation_time),
                       e.reason ? x509::to_string(*e.reason) : "-");
  }
  return out;
}

// crl/<ca>.crl for each CA's latest CRL and crl/nginx.pem with all of them.
Status write_crl_files(store::Store& s, const PkiHome& home, const std::vector<revocation::CaSource>& cas) {
  const auto dir = home.dir() / "crl";
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::vector<x509::Crl> all;
  for (const auto& ca : cas) {
    auto rec = s.find_crl(ca.name);
    if (!rec) continue;
    auto crl = HM_TRY(x509::Crl::parse_der(rec->der));
    HM_TRY_VOID(write_file_atomic((dir / (ca.name + ".crl")).string(), crl.to_der()));
    all.push_back(std::move(crl));
  }
  return write_file_atomic((dir / "nginx.pem").string(), as_bytes(revocation::crl_bundle_pem(all)));
}

// Option 1, at the OEM: a key for the delegated responder of a vendor-held CA, and its request.
Status ocsp_request(const PkiHome& home, const std::string& name, const std::string& out) {
  const auto ca = HM_TRY(home.find_ca(name));
  if (ca.key_holder != KeyHolder::vendor) {
    return fail(
        Errc::invalid_input,
        fmt::format("CA '{}' is not held by a vendor: 'hallmark serve' makes the responders of local CAs "
                    "itself, and external CAs are not answered for",
                    name));
  }
  const auto base = home.dir() / "ocsp" / name;
  std::error_code ec;
  fs::create_directories(base.parent_path(), ec);
  const auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  const auto passphrase = HM_TRY(read_secret(home.key_passphrase_source()));
  const crypto::FileSigner signer(key, "file:" + base.string() + ".key");
  const auto subject = HM_TRY(
      x509::Name::make({{"O", home.config().organization},
                        {"CN", fmt::format("{} {} OCSP Responder", home.config().organization, name)}}));
  const auto csr = HM_TRY(x509::make_csr(subject, signer));
  HM_TRY_VOID(crypto::save_private_key(base.string() + ".key", key, &passphrase, crypto::Kdf::scrypt));
  const auto csr_path = out.empty() ? base.string() + ".csr" : out;
  HM_TRY_VOID(write_file_atomic(csr_path, as_bytes(csr.to_pem())));
  fmt::print(
      "Wrote ocsp/{}.key and the request {}\nSend it to the vendor: hallmark vendor issue-ocsp-delegate "
      "--csr "
      "FILE --out FILE\n",
      name, csr_path);
  return {};
}

Status ocsp_install(const PkiHome& home, const std::string& name, const std::string& file) {
  const auto ca = HM_TRY(home.find_ca(name));
  const auto text = HM_TRY(read_text_file(file));
  const auto chain = HM_TRY(x509::Certificate::parse_pem_chain(text));
  const auto& cert = chain.front();
  if (!cert.verify_signature(ca.certificate.public_key())) {
    return fail(
        Errc::invalid_input,
        fmt::format(
            "{} was not issued by CA '{}': a delegated responder must be issued by the CA it answers for",
            file, name));
  }
  const auto eku = cert.extended_key_usage();
  if (!eku || std::find(eku->oids.begin(), eku->oids.end(), "1.3.6.1.5.5.7.3.9") == eku->oids.end())
    return fail(Errc::invalid_input, fmt::format("{} lacks the extended key usage OCSPSigning", file));
  const auto base = home.dir() / "ocsp" / name;
  auto signer = crypto::FileSigner::load(base.string() + ".key", home.key_passphrase_source());
  if (!signer) {
    return fail(
        Errc::not_found,
        fmt::format("no key ocsp/{}.key for this certificate: run 'hallmark ocsp request --ca {}' first",
                    name, name));
  }
  if (!((*signer)->public_key() == cert.public_key()))
    return fail(Errc::invalid_input, fmt::format("{} does not carry the key of ocsp/{}.key", file, name));
  std::string pem = cert.to_pem();
  for (const auto& c : HM_TRY(home.chain_of(name))) pem += c.to_pem();
  HM_TRY_VOID(write_file_atomic(base.string() + ".pem", as_bytes(pem)));
  fmt::print("Installed ocsp/{}.pem ({}, serial {}); 'hallmark serve' answers OCSP for CA {}\n", name,
             cert.subject().to_string(), cert.serial_hex(), name);
  return {};
}

}  // namespace

void add_revocation_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  {
    auto* cert = app.get_subcommand("cert");
    auto* cmd = cert->add_subcommand(
        "revoke",
        "Revoke a certificate: durable and audited before this command returns. By serial (an IDC hallmark\n"
        "issued, a BC of the OEM's BC CA, an IDC a vendor issued under an OEM CA) or by UKID (the device's\n"
        "good IDCs). CRLs and OCSP of a running `hallmark serve` follow within its poll interval.");
    auto serial = std::make_shared<std::string>();
    auto ukid = std::make_shared<std::string>();
    auto reason = std::make_shared<std::string>("unspecified");
    auto* s = cmd->add_option("--serial", *serial, "Serial number (hex, ':' separators allowed)");
    auto* u = cmd->add_option("--ukid", *ukid, "UKID of the device whose IDCs are revoked");
    s->excludes(u);
    cmd->add_option("--reason", *reason, fmt::format("RFC 5280 reason: {}", kReasons))->capture_default_str();
    cmd->callback([&global, &status, serial, ukid, reason] {
      if (serial->empty() == ukid->empty()) {
        status = report(Error{Errc::invalid_input, "cert revoke needs --serial or --ukid"});
        return;
      }
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome& home, store::Store& st) -> Status {
                      const auto why = HM_TRY(parse_reason(*reason));
                      revocation::RevokeOptions options;
                      options.actor = "admin";
                      const auto revoked = serial->empty()
                                               ? HM_TRY(revoke_by_ukid(st, home, *ukid, why, options))
                                               : HM_TRY(revoke_by_serial(st, home, *serial, why, options));
                      for (const auto& c : revoked) print_revoked(c);
                      return {};
                    });
    });
  }

  auto* crl = app.add_subcommand("crl", "Certificate revocation lists of the OEM's CAs");
  crl->require_subcommand(1);
  {
    auto* cmd = crl->add_subcommand(
        "generate",
        "Generate a full CRL now for each CA with a local key (or those named), store it as the CA's\n"
        "latest, and write crl/<ca>.crl (DER) and crl/nginx.pem (PEM bundle for nginx's ssl_crl).");
    auto names = std::make_shared<std::vector<std::string>>();
    auto next_update = std::make_shared<std::string>("1d");
    cmd->add_option("--ca", *names, "CA name (repeatable; default: every CA with a local key)");
    cmd->add_option("--next-update", *next_update, "nextUpdate - thisUpdate, e.g. 12h, 1d, 7d")
        ->capture_default_str();
    cmd->callback([&global, &status, names, next_update] {
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome& home, store::Store& st) -> Status {
                      const auto validity = HM_TRY(parse_validity(*next_update));
                      const SystemClock clock;
                      RevocationCaOptions o;
                      o.crl_signers = true;
                      o.crl_cas = *names;
                      auto cas = revocation_cas(home, o, clock);
                      if (!cas) {
                        auto e = cas.error();
                        if (e.detail.starts_with("hallmark.toml: [revocation] crl_cas: "))
                          e.detail = "--ca: " + e.detail.substr(37);
                        return std::unexpected(e);
                      }
                      // BCs the RA flagged while no revocation service ran.
                      const auto all = HM_TRY(revocation_cas(home, {}, clock));
                      HM_TRY(revocation::record_flagged_bcs(st, all, {"ra", "", &clock}));
                      for (const auto& ca : *cas) {
                        const bool named = std::find(names->begin(), names->end(), ca.name) != names->end();
                        if (!names->empty() && !named) continue;
                        if (!ca.crl_signer) {
                          if (named) {
                            return fail(
                                Errc::forbidden,
                                fmt::format("CA '{}' has no key here (held by the vendor): hallmark cannot "
                                            "sign its CRL",
                                            ca.name));
                          }
                          continue;
                        }
                        const auto made = HM_TRY(revocation::generate_crl(st, ca, clock.now(), validity));
                        fmt::print("CRL of CA {}: number {}, {} entries, next update {} -> crl/{}.crl\n",
                                   ca.name, made.crl_number().value_or(0), made.entries().size(),
                                   to_iso8601(made.next_update().value_or(made.this_update())), ca.name);
                      }
                      return write_crl_files(st, home, *cas);
                    });
    });
  }
  {
    auto* cmd = crl->add_subcommand("show", "Show a CA's latest CRL (from the database) or a CRL file");
    auto name = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    auto* c = cmd->add_option("--ca", *name, "CA name");
    auto* f = cmd->add_option("--file", *file, "CRL file (DER or PEM)")->check(CLI::ExistingFile);
    c->excludes(f);
    cmd->callback([&global, &status, name, file] {
      if (name->empty() == file->empty()) {
        status = report(Error{Errc::invalid_input, "crl show needs --ca or --file"});
        return;
      }
      if (!file->empty()) {
        auto r = [&]() -> Status {
          const auto data = HM_TRY(read_file(*file));
          auto crl = x509::Crl::parse_der(data);
          if (!crl) crl = x509::Crl::parse_pem(as_chars(data));
          if (!crl) return fail(Errc::invalid_input, *file + ": not a DER or PEM CRL");
          fmt::print("{}", describe_crl(*crl));
          return {};
        }();
        if (!r) status = report(r.error());
        return;
      }
      with_database(global.home, global.db, status, SchemaPolicy::require_current,
                    [&](const PkiHome& home, store::Store& st) -> Status {
                      HM_TRY(home.find_ca(*name));
                      auto rec = st.find_crl(*name);
                      if (!rec && rec.error().code == Errc::not_found) {
                        return fail(Errc::not_found,
                                    fmt::format("no CRL of CA '{}' yet (run 'hallmark crl generate "
                                                "--ca {}' or 'hallmark serve')",
                                                *name, *name));
                      }
                      const auto crl = HM_TRY(x509::Crl::parse_der(HM_TRY(std::move(rec)).der));
                      fmt::print("{}", describe_crl(crl));
                      return {};
                    });
    });
  }

  auto* ocsp = app.add_subcommand("ocsp", "Delegated OCSP responders of CAs held by a vendor (Option 1)");
  ocsp->require_subcommand(1);
  {
    auto* cmd = ocsp->add_subcommand(
        "request",
        "Make the responder key (ocsp/<ca>.key) and a request for the vendor to sign with\n"
        "'hallmark vendor issue-ocsp-delegate'");
    auto name = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    cmd->add_option("--ca", *name, "The vendor-held CA")->required();
    cmd->add_option("--out", *out, "Request file (default: ocsp/<ca>.csr)");
    cmd->callback([&global, &status, name, out] {
      auto r = [&]() -> Status { return ocsp_request(HM_TRY(PkiHome::open(global.home)), *name, *out); }();
      if (!r) status = report(r.error());
    });
  }
  {
    auto* cmd =
        ocsp->add_subcommand("install", "Install the delegate certificate the vendor issued (ocsp/<ca>.pem)");
    auto name = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    cmd->add_option("--ca", *name, "The vendor-held CA")->required();
    cmd->add_option("--cert", *file, "Certificate from the vendor (PEM)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->callback([&global, &status, name, file] {
      auto r = [&]() -> Status { return ocsp_install(HM_TRY(PkiHome::open(global.home)), *name, *file); }();
      if (!r) status = report(r.error());
    });
  }
}

}  // namespace hallmark::app

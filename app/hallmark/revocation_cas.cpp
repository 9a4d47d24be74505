#include "revocation_cas.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "hallmark/core/log.hpp"
#include "hallmark/core/secret.hpp"

namespace hallmark::app {
namespace fs = std::filesystem;

namespace {

bool listed(const std::vector<std::string>& names, const std::string& name) {
  return names.empty() || std::find(names.begin(), names.end(), name) != names.end();
}

Status check_names(const std::vector<std::string>& names, const std::vector<CaRecord>& cas,
                   std::string_view key) {
  for (const auto& n : names) {
    const bool known = std::any_of(cas.begin(), cas.end(), [&](const CaRecord& c) { return c.name == n; });
    if (!known)
      return fail(Errc::invalid_input,
                  fmt::format("hallmark.toml: [revocation] {}: no CA named '{}'", key, n));
  }
  return {};
}

}  // namespace

Status make_ocsp_responder(const PkiHome& home, const CaRecord& ca, const Clock& clock) {
  const auto signer = HM_TRY(home.load_signer(ca));
  const auto profile = HM_TRY(home.load_profile("ocsp-responder"));
  const auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  const ca::Issuer issuer(ca.certificate, signer, clock);
  const std::map<std::string, std::string> variables{
      {"org", home.config().organization},
      {"product", home.config().product},
      {"cn", fmt::format("{} {} OCSP Responder", home.config().organization, ca.name)}};
  const auto cert = HM_TRY(
      issuer.issue(ca::IssueRequest{key.public_key(), variables, std::nullopt, std::nullopt}, profile));
  const auto base = home.dir() / "ocsp" / ca.name;
  std::error_code ec;
  fs::create_directories(base.parent_path(), ec);
  const auto passphrase = HM_TRY(read_secret(home.key_passphrase_source()));
  HM_TRY_VOID(crypto::save_private_key(base.string() + ".key", key, &passphrase, crypto::Kdf::scrypt));
  std::string pem = cert.to_pem();
  for (const auto& c : HM_TRY(home.chain_of(ca.name))) pem += c.to_pem();
  HM_TRY_VOID(write_file_atomic(base.string() + ".pem", as_bytes(pem)));
  log::info("ocsp_responder_created", {{"ca", ca.name}, {"serial", cert.serial_hex()}});
  return {};
}

Result<std::vector<revocation::CaSource>> revocation_cas(const PkiHome& home,
                                                         const RevocationCaOptions& options,
                                                         const Clock& clock) {
  const auto cas = HM_TRY(home.list_cas());
  HM_TRY_VOID(check_names(options.crl_cas, cas, "crl_cas"));
  HM_TRY_VOID(check_names(options.ocsp_cas, cas, "ocsp_cas"));
  std::vector<revocation::CaSource> out;
  for (const auto& ca : cas) {
    if (ca.key_holder == KeyHolder::external) continue;
    revocation::CaSource s;
    s.name = ca.name;
    s.certificate = ca.certificate;
    const bool local = ca.key_holder == KeyHolder::local;
    if (options.crl_signers && local && listed(options.crl_cas, ca.name))
      s.crl_signer = HM_TRY(home.load_signer(ca));
    if (options.responders && listed(options.ocsp_cas, ca.name)) {
      const auto base = home.dir() / "ocsp" / ca.name;
      std::error_code ec;
      const bool present = fs::exists(base.string() + ".pem", ec) && fs::exists(base.string() + ".key", ec);
      if (!present && local) HM_TRY_VOID(make_ocsp_responder(home, ca, clock));
      if (present || local) {
        auto cert = x509::Certificate::load(base.string() + ".pem");
        if (!cert)
          return std::unexpected(
              cert.error().with_context(fmt::format("OCSP responder of CA '{}'", ca.name)));
        if (!cert->verify_signature(ca.certificate.public_key())) {
          return fail(Errc::invalid_input,
                      fmt::format("ocsp/{}.pem was not issued by CA '{}': a delegated responder must be",
                                  ca.name, ca.name));
        }
        auto signer = crypto::FileSigner::load(base.string() + ".key", home.key_passphrase_source());
        if (!signer) return std::unexpected(signer.error());
        if (!(signer->get()->public_key() == cert->public_key()))
          return fail(Errc::invalid_input,
                      fmt::format("ocsp/{}.key does not match ocsp/{}.pem", ca.name, ca.name));
        s.responder = std::move(*cert);
        s.responder_signer = std::shared_ptr<const crypto::Signer>(std::move(*signer));
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace hallmark::app

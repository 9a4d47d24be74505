// hallmark vendor init: the station's own trust domain.
#include <fmt/format.h>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/vendor/vendor.hpp"
#include "home.hpp"
#include "manifest.hpp"

namespace hallmark::vendor {
namespace fs = std::filesystem;

namespace {

// Self-signed and never expiring, like Microchip's Manifest Signer 005: manifests are judged at their
// provisioning time, and an OEM pins the signer certificate itself.
ca::Profile manifest_signer_profile(const std::string& organization) {
  ca::Profile p;
  p.name = "vendor-manifest-signer";
  p.kind = ca::ProfileKind::root;
  p.description = "Self-signed manifest signer of a vendor station (JWS ES256)";
  p.subject = {{"O", "{org}", true}, {"CN", "{cn}", true}};
  p.variables = {{"org", organization}, {"cn", organization + " Manifest Signer"}};
  p.key_policy =
      ca::KeyPolicy{.curves = {"P-256"}, .allow_ed25519 = false, .min_rsa_bits = 0, .max_rsa_bits = 4096};
  p.basic_constraints = x509::BasicConstraints{.ca = false, .path_length = std::nullopt, .critical = true};
  p.key_usage = x509::KeyUsage{x509::kDigitalSignature, true};
  p.extended_key_usage = x509::ExtendedKeyUsage{{"1.3.6.1.5.5.7.3.36"}, false};  // documentSigning
  return p;
}

const ca::Profile* find_profile(const std::vector<ca::Profile>& profiles, std::string_view name) {
  for (const auto& p : profiles) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace

Result<InitSummary> init(const InitOptions& options, const Clock& clock) {
  const fs::path& dir = options.home;
  std::error_code ec;
  if (fs::exists(dir / "vendor.toml", ec)) {
    return fail(Errc::conflict,
                fmt::format("{} already holds a vendor home (vendor.toml exists); refusing to overwrite it",
                            dir.string()));
  }
  if (options.organization.empty()) return fail(Errc::invalid_input, "organization is required");
  for (const auto* sub : {"secrets", "signer", "subca"}) {
    fs::create_directories(dir / sub, ec);
    if (ec)
      return fail(Errc::internal, fmt::format("cannot create {}: {}", (dir / sub).string(), ec.message()));
  }
  fs::permissions(dir / "secrets", fs::perms::owner_all, ec);

  InitSummary summary;
  summary.home = fs::absolute(dir);
  Config config;
  config.organization = options.organization;
  config.organizational_unit = options.organizational_unit;
  config.distributor = options.distributor.empty() ? options.organization : options.distributor;
  config.distributor_unit = options.distributor_unit;
  if (options.passphrase_source.empty()) {
    // A random passphrase beside the keys keeps them off disk in the clear; production moves it to an
    // environment variable or a token.
    const auto pass = crypto::base64url_encode(crypto::random_bytes(32));
    HM_TRY_VOID(write_text(dir / "secrets" / "key-passphrase", pass + "\n", 0600));
    config.key_passphrase = "file:secrets/key-passphrase";
    summary.files.push_back("secrets/key-passphrase");
  } else {
    config.key_passphrase = options.passphrase_source;
  }
  const VendorHome home(summary.home, config);
  HM_TRY(home.key_passphrase());  // fail now, not after half a station
  HM_TRY_VOID(write_text(dir / "vendor.toml", config.to_toml()));
  summary.files.insert(summary.files.begin(), "vendor.toml");

  const auto signer_key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  const crypto::FileSigner signer(signer_key, "memory");
  const auto signer_cert =
      HM_TRY(ca::issue_self_signed(signer, {}, manifest_signer_profile(config.organization), clock));
  HM_TRY_VOID(home.save_key(home.signer_dir() / "key.pem", signer_key));
  HM_TRY_VOID(write_text(home.signer_dir() / "cert.pem", signer_cert.to_pem()));
  summary.files.push_back("signer/key.pem");
  summary.files.push_back("signer/cert.pem");
  summary.signer_subject = signer_cert.subject().to_string();
  const auto ids = HM_TRY(signer_ids(signer_cert));
  summary.signer_kid = ids.kid;
  summary.signer_x5t = ids.x5t_s256;

  if (options.generic_bc_ca) {
    ca::DefaultProfileOptions profile_options;
    profile_options.organization = config.organization;
    const auto profiles = ca::default_profiles(profile_options);
    const ca::Profile* root_profile = find_profile(profiles, "root");
    const ca::Profile* sub_profile = find_profile(profiles, "sub-ca-bc");
    if (root_profile == nullptr || sub_profile == nullptr) {
      return fail(Errc::internal, "built-in profiles root and sub-ca-bc are missing");
    }
    fs::create_directories(home.generic_bc_dir(), ec);
    if (ec)
      return fail(Errc::internal,
                  fmt::format("cannot create {}: {}", home.generic_bc_dir().string(), ec.message()));
    const auto root_key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
    auto root_signer = std::make_shared<crypto::FileSigner>(root_key, "memory");
    const auto root = HM_TRY(ca::issue_self_signed(
        *root_signer, {{"org", config.organization}, {"cn", config.organization + " Generic BC Root CA"}},
        *root_profile, clock));
    const auto ca_key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
    const ca::Issuer root_issuer(root, root_signer, clock);
    const auto ca_cert = HM_TRY(root_issuer.issue(
        ca::IssueRequest{ca_key.public_key(),
                         {{"org", config.organization}, {"cn", config.organization + " Generic BC CA"}},
                         std::nullopt,
                         std::nullopt},
        *sub_profile));
    HM_TRY_VOID(home.save_key(home.generic_bc_dir() / "root-key.pem", root_key));
    HM_TRY_VOID(write_text(home.generic_bc_dir() / "root-cert.pem", root.to_pem()));
    HM_TRY_VOID(home.save_key(home.generic_bc_dir() / "key.pem", ca_key));
    HM_TRY_VOID(write_text(home.generic_bc_dir() / "cert.pem", ca_cert.to_pem()));
    for (const char* f : {"generic-bc/root-key.pem", "generic-bc/root-cert.pem", "generic-bc/key.pem",
                          "generic-bc/cert.pem"}) {
      summary.files.emplace_back(f);
    }
    summary.generic_bc_ca_subject = ca_cert.subject().to_string();
  }

  auto db = HM_TRY(home.open_store());
  store::AuditEvent event{clock.now(), "vendor", "init", summary.signer_subject, store::Outcome::accepted,
                          "",          ""};
  HM_TRY(db->append_audit(event));
  if (config.database_url.starts_with("sqlite:") && config.database_url != "sqlite::memory:") {
    summary.files.push_back(config.database_url.substr(7));
  }
  return summary;
}

}  // namespace hallmark::vendor

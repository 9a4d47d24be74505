#pragma once
// The PKI home: hallmark.toml, profiles/, ca/<name>/ (certificate, encrypted key, ca.toml), secrets/.
// Everything `hallmark init`, `hallmark ca` and `hallmark cert` read and write on disk.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::app {

// [pki] and [database] of hallmark.toml.
struct Config {
  std::string organization = "Example OEM";
  std::string product = "Example Device";
  std::string product_oid = "1.3.6.1.4.1.55555.1.1";
  std::string base_url;                                       // CRL DP and AIA prefix; empty: none
  std::string key_passphrase = "file:secrets/ca-passphrase";  // "file:PATH" (relative to home) | "env:NAME"
  std::string key_type = "p256";
  std::string database_url = "sqlite:hallmark.db";

  // Exact messages: "hallmark.toml: [pki] unknown key 'organisation'".
  [[nodiscard]] static Result<Config> parse_toml(std::string_view text, std::string_view origin);
  [[nodiscard]] std::string to_toml() const;
};

// Where a CA's key lives.
enum class KeyHolder { local, vendor, external };
[[nodiscard]] std::string_view to_string(KeyHolder holder) noexcept;

struct CaRecord {
  std::string name;
  std::string role;    // root, bc, idc, tls, ocsp, manifest-signer
  std::string parent;  // empty for roots and external CAs
  KeyHolder key_holder = KeyHolder::local;
  std::string status = "active";
  x509::Certificate certificate;
};

struct InitOptions {
  std::string organization = "Example OEM";
  std::string product = "Example Device";
  std::string product_oid = "1.3.6.1.4.1.55555.1.1";
  std::string base_url;
  std::string key_type = "p256";
  std::string passphrase_source;  // empty: generate secrets/ca-passphrase
  std::vector<std::string> server_names{"localhost", "127.0.0.1"};
};

class PkiHome {
 public:
  // Creates a new home in `dir` (which must not hold a hallmark.toml); refuses clearly otherwise.
  [[nodiscard]] static Result<PkiHome> init(const std::filesystem::path& dir, const InitOptions& options,
                                            const Clock& clock);
  [[nodiscard]] static Result<PkiHome> open(const std::filesystem::path& dir);

  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] const Config& config() const { return config_; }

  [[nodiscard]] Result<std::vector<CaRecord>> list_cas() const;
  [[nodiscard]] Result<CaRecord> find_ca(std::string_view name) const;
  // The first active local CA with this role ("idc" -> the IDC issuing CA).
  [[nodiscard]] Result<CaRecord> find_ca_by_role(std::string_view role) const;
  // The CA's chain from itself up to its root (itself first).
  [[nodiscard]] Result<std::vector<x509::Certificate>> chain_of(std::string_view name) const;

  [[nodiscard]] Result<std::shared_ptr<const crypto::Signer>> load_signer(const CaRecord& ca) const;
  [[nodiscard]] Result<ca::Profile> load_profile(std::string_view name) const;
  [[nodiscard]] Result<std::vector<ca::Profile>> list_profiles() const;

  // Creates a CA with a new local key: a root when role is "root", else a sub-CA under `parent`.
  [[nodiscard]] Result<CaRecord> create_ca(const std::string& name, const std::string& role,
                                           const std::string& parent, const std::string& common_name,
                                           const std::string& key_type, const Clock& clock) const;
  // BYORoT: signs a sub-CA CSR whose key stays with the requester (a silicon vendor).
  [[nodiscard]] Result<CaRecord> sign_subca(const std::string& name, const std::string& role,
                                            const std::string& parent, const x509::Csr& csr,
                                            const Clock& clock) const;
  // Records an external CA certificate (no key): a vendor's generic BC CA, a trust anchor.
  [[nodiscard]] Result<CaRecord> import_external(const std::string& name, const std::string& role,
                                                 const x509::Certificate& certificate) const;

  [[nodiscard]] std::filesystem::path ca_dir(std::string_view name) const { return dir_ / "ca" / name; }
  // A secret source ("file:PATH" | "env:NAME") with a relative file resolved against the home.
  [[nodiscard]] std::string secret_source(const std::string& source) const;
  // The CA keys' passphrase source ([pki] key_passphrase), resolved against the home.
  [[nodiscard]] std::string key_passphrase_source() const { return secret_source(config_.key_passphrase); }

 private:
  PkiHome(std::filesystem::path dir, Config config) : dir_(std::move(dir)), config_(std::move(config)) {}
  [[nodiscard]] Result<Secret> key_passphrase() const;
  [[nodiscard]] Status write_ca(const CaRecord& record, const crypto::PrivateKey* key) const;
  [[nodiscard]] Result<CaRecord> read_ca(const std::filesystem::path& dir) const;
  [[nodiscard]] std::map<std::string, std::string> default_variables() const;

  std::filesystem::path dir_;
  Config config_;
};

// Validates a CA name: [a-z0-9][a-z0-9._-]{0,62}.
[[nodiscard]] Status check_ca_name(std::string_view name);

}  // namespace hallmark::app

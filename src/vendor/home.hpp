#pragma once
// The vendor home on disk: vendor.toml, secrets/, signer/, generic-bc/, subca/<role>/, vendor.db.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::vendor {

struct Config {
  std::string organization = "Example Silicon";
  std::string organizational_unit = "Secure Products Group";
  std::string distributor = "Example Silicon";
  std::string distributor_unit = "Direct";
  std::string key_passphrase = "file:secrets/key-passphrase";  // "file:PATH" (relative to home) | "env:NAME"
  std::string database_url = "sqlite:vendor.db";               // relative sqlite paths are under the home

  // Exact messages: "vendor.toml: [vendor]: unknown key 'organisation'".
  [[nodiscard]] static Result<Config> parse_toml(std::string_view text, std::string_view origin);
  [[nodiscard]] std::string to_toml() const;
};

// A CA whose key this station holds, with its chain (the CA first, up to and including its root).
struct HeldCa {
  std::vector<x509::Certificate> chain;
  std::shared_ptr<const crypto::Signer> signer;
  [[nodiscard]] const x509::Certificate& certificate() const { return chain.front(); }
};

class VendorHome {
 public:
  [[nodiscard]] static Result<VendorHome> open(const std::filesystem::path& dir);
  // A home object for a directory being initialised (nothing is read).
  VendorHome(std::filesystem::path dir, Config config) : dir_(std::move(dir)), config_(std::move(config)) {}

  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] const Config& config() const { return config_; }

  [[nodiscard]] std::filesystem::path signer_dir() const { return dir_ / "signer"; }
  [[nodiscard]] std::filesystem::path generic_bc_dir() const { return dir_ / "generic-bc"; }
  [[nodiscard]] std::filesystem::path subca_dir(std::string_view role) const { return dir_ / "subca" / role; }

  [[nodiscard]] Result<Secret> key_passphrase() const;
  [[nodiscard]] Status save_key(const std::filesystem::path& path, const crypto::PrivateKey& key) const;
  [[nodiscard]] Result<crypto::PrivateKey> load_key(const std::filesystem::path& path) const;

  // The manifest signer: its key and self-signed certificate.
  [[nodiscard]] Result<HeldCa> manifest_signer() const;
  // Option 3's generic BC issuing CA; not_found when the home has none.
  [[nodiscard]] Result<HeldCa> generic_bc_ca() const;
  // An installed BYORoT sub-CA ("bc" or "idc"); not_found when none is installed.
  [[nodiscard]] Result<HeldCa> subca(std::string_view role) const;

  [[nodiscard]] Result<std::unique_ptr<store::Store>> open_store() const;

 private:
  std::filesystem::path dir_;
  Config config_;
};

// Writes a text file atomically (mode 0644 unless given).
[[nodiscard]] Status write_text(const std::filesystem::path& path, std::string_view text,
                                unsigned mode = 0644);

}  // namespace hallmark::vendor

#include "home.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <sstream>

#include "hallmark/core/bytes.hpp"

namespace hallmark::vendor {
namespace fs = std::filesystem;

namespace {

Result<toml::table> parse_toml_text(std::string_view text, std::string_view origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return fail(Errc::invalid_input, fmt::format("{}:{}:{}: {}", origin, e.source().begin.line,
                                                 e.source().begin.column, e.description()));
  }
}

Result<std::string> string_at(const toml::table& t, std::string_view key, std::string_view where,
                              std::string fallback) {
  const auto* node = t.get(key);
  if (node == nullptr) return fallback;
  if (const auto* s = node->as_string()) return s->get();
  return fail(Errc::invalid_input, fmt::format("{}: '{}' must be a string", where, key));
}

Status reject_unknown(const toml::table& t, std::initializer_list<std::string_view> known,
                      std::string_view where) {
  for (const auto& [k, v] : t) {
    if (std::find(known.begin(), known.end(), k.str()) == known.end()) {
      return fail(Errc::invalid_input, fmt::format("{}: unknown key '{}'", where, k.str()));
    }
  }
  return {};
}

std::string toml_string(std::string_view s) {
  std::ostringstream out;
  out << toml::value<std::string>(std::string(s));
  return out.str();
}

Result<std::vector<x509::Certificate>> load_chain(const fs::path& path) {
  const auto text = HM_TRY(read_text_file(path.string()));
  auto chain = x509::Certificate::parse_pem_chain(text);
  if (!chain) return std::unexpected(chain.error().with_context(path.string()));
  return chain;
}

}  // namespace

Result<Config> Config::parse_toml(std::string_view text, std::string_view origin) {
  const auto root = HM_TRY(parse_toml_text(text, origin));
  HM_TRY_VOID(reject_unknown(root, {"vendor", "database"}, origin));
  Config c;
  if (const auto* node = root.get("vendor")) {
    const auto* t = node->as_table();
    const std::string where = fmt::format("{}: [vendor]", origin);
    if (t == nullptr) return fail(Errc::invalid_input, where + " must be a table");
    HM_TRY_VOID(reject_unknown(
        *t, {"organization", "organizational_unit", "distributor", "distributor_unit", "key_passphrase"},
        where));
    c.organization = HM_TRY(string_at(*t, "organization", where, c.organization));
    c.organizational_unit = HM_TRY(string_at(*t, "organizational_unit", where, c.organizational_unit));
    c.distributor = HM_TRY(string_at(*t, "distributor", where, c.organization));
    c.distributor_unit = HM_TRY(string_at(*t, "distributor_unit", where, c.distributor_unit));
    c.key_passphrase = HM_TRY(string_at(*t, "key_passphrase", where, c.key_passphrase));
  }
  if (const auto* node = root.get("database")) {
    const auto* t = node->as_table();
    const std::string where = fmt::format("{}: [database]", origin);
    if (t == nullptr) return fail(Errc::invalid_input, where + " must be a table");
    HM_TRY_VOID(reject_unknown(*t, {"url"}, where));
    c.database_url = HM_TRY(string_at(*t, "url", where, c.database_url));
  }
  if (!c.key_passphrase.starts_with("file:") && !c.key_passphrase.starts_with("env:")) {
    return fail(Errc::invalid_input,
                fmt::format("{}: [vendor] key_passphrase must be 'file:PATH' or 'env:NAME'", origin));
  }
  return c;
}

std::string Config::to_toml() const {
  return fmt::format(
      "# hallmark vendor station: see docs/vendor.md\n"
      "[vendor]\n"
      "# manufacturer and provisioner of the manifests, O of the certificates this station issues\n"
      "organization = {}\n"
      "organizational_unit = {}\n"
      "distributor = {}\n"
      "distributor_unit = {}\n"
      "# where key passphrases come from: \"file:PATH\" or \"env:NAME\"\n"
      "key_passphrase = {}\n"
      "\n[database]\n"
      "url = {}\n",
      toml_string(organization), toml_string(organizational_unit), toml_string(distributor),
      toml_string(distributor_unit), toml_string(key_passphrase), toml_string(database_url));
}

Status write_text(const fs::path& path, std::string_view text, unsigned mode) {
  return write_file_atomic(path.string(), as_bytes(text), mode);
}

Result<VendorHome> VendorHome::open(const fs::path& dir) {
  const fs::path file = dir / "vendor.toml";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return fail(
        Errc::not_found,
        fmt::format("no vendor home at {} (no vendor.toml); create one with 'hallmark vendor init --home {}'",
                    dir.string(), dir.string()));
  }
  const auto text = HM_TRY(read_text_file(file.string()));
  auto config = HM_TRY(Config::parse_toml(text, "vendor.toml"));
  return VendorHome(fs::absolute(dir), std::move(config));
}

Result<Secret> VendorHome::key_passphrase() const {
  std::string source = config_.key_passphrase;
  if (source.starts_with("file:")) {
    fs::path p(source.substr(5));
    if (p.is_relative()) p = dir_ / p;
    source = "file:" + p.string();
  }
  auto secret = read_secret(source);
  if (!secret) return std::unexpected(secret.error().with_context("vendor key passphrase"));
  return secret;
}

Status VendorHome::save_key(const fs::path& path, const crypto::PrivateKey& key) const {
  const auto passphrase = HM_TRY(key_passphrase());
  return crypto::save_private_key(path.string(), key, &passphrase, crypto::Kdf::scrypt);
}

Result<crypto::PrivateKey> VendorHome::load_key(const fs::path& path) const {
  const auto passphrase = HM_TRY(key_passphrase());
  const auto text = HM_TRY(read_text_file(path.string()));
  auto key = crypto::PrivateKey::parse_pem(text, &passphrase);
  if (!key) return std::unexpected(key.error().with_context(path.string()));
  return key;
}

Result<HeldCa> VendorHome::manifest_signer() const {
  const fs::path dir = signer_dir();
  HeldCa held;
  held.chain = HM_TRY(load_chain(dir / "cert.pem"));
  auto key = HM_TRY(load_key(dir / "key.pem"));
  held.signer = std::make_shared<crypto::FileSigner>(std::move(key), "file:" + (dir / "key.pem").string());
  return held;
}

Result<HeldCa> VendorHome::generic_bc_ca() const {
  const fs::path dir = generic_bc_dir();
  std::error_code ec;
  if (!fs::exists(dir / "cert.pem", ec)) {
    return fail(
        Errc::not_found,
        "no generic BC CA in this vendor home (it is created by 'hallmark vendor init --generic-bc-ca')");
  }
  HeldCa held;
  held.chain = HM_TRY(load_chain(dir / "cert.pem"));
  const auto root = HM_TRY(load_chain(dir / "root-cert.pem"));
  held.chain.insert(held.chain.end(), root.begin(), root.end());
  auto key = HM_TRY(load_key(dir / "key.pem"));
  held.signer = std::make_shared<crypto::FileSigner>(std::move(key), "file:" + (dir / "key.pem").string());
  return held;
}

Result<HeldCa> VendorHome::subca(std::string_view role) const {
  const fs::path dir = subca_dir(role);
  std::error_code ec;
  if (!fs::exists(dir / "chain.pem", ec)) {
    std::string upper(role);
    std::ranges::transform(upper, upper.begin(),
                           [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return fail(Errc::not_found,
                fmt::format("no {} sub-CA installed: run 'hallmark vendor request-subca --role {}' "
                            "and have the OEM sign it",
                            upper, role));
  }
  HeldCa held;
  held.chain = HM_TRY(load_chain(dir / "chain.pem"));
  auto key = HM_TRY(load_key(dir / "key.pem"));
  held.signer = std::make_shared<crypto::FileSigner>(std::move(key), "file:" + (dir / "key.pem").string());
  return held;
}

Result<std::unique_ptr<store::Store>> VendorHome::open_store() const {
  std::string url = config_.database_url;
  if (url.starts_with("sqlite:") && url != "sqlite::memory:") {
    fs::path p(url.substr(7));
    if (p.is_relative()) url = "sqlite:" + (dir_ / p).string();
  }
  auto db = HM_TRY(store::open_store(url));
  if (auto m = db->migrate(); !m) return std::unexpected(m.error().with_context("vendor database"));
  return db;
}

}  // namespace hallmark::vendor

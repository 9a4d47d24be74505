#include "home.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <toml++/toml.h>
#include <algorithm>
#include <sstream>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/x509/csr.hpp"

namespace hallmark::app {
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

Status write_text(const fs::path& path, std::string_view text, unsigned mode = 0644) {
  return write_file_atomic(path.string(), as_bytes(text), mode);
}

std::string toml_string(std::string_view s) {
  std::ostringstream out;
  out << toml::value<std::string>(std::string(s));
  return out.str();
}

}  // namespace

Result<Config> Config::parse_toml(std::string_view text, std::string_view origin) {
  const auto root = HM_TRY(parse_toml_text(text, origin));
  // [server], [http] and [est.*] belong to `hallmark serve`, which validates them itself.
  HM_TRY_VOID(reject_unknown(root, {"pki", "database", "server", "http", "est", "crl", "ocsp", "revocation"},
                             origin));
  Config c;
  if (const auto* node = root.get("pki")) {
    const auto* pki = node->as_table();
    if (pki == nullptr) return fail(Errc::invalid_input, fmt::format("{}: [pki] must be a table", origin));
    const std::string where = fmt::format("{}: [pki]", origin);
    HM_TRY_VOID(reject_unknown(
        *pki, {"organization", "product", "product_oid", "base_url", "key_passphrase", "key_type"}, where));
    c.organization = HM_TRY(string_at(*pki, "organization", where, c.organization));
    c.product = HM_TRY(string_at(*pki, "product", where, c.product));
    c.product_oid = HM_TRY(string_at(*pki, "product_oid", where, c.product_oid));
    c.base_url = HM_TRY(string_at(*pki, "base_url", where, c.base_url));
    c.key_passphrase = HM_TRY(string_at(*pki, "key_passphrase", where, c.key_passphrase));
    c.key_type = HM_TRY(string_at(*pki, "key_type", where, c.key_type));
  }
  if (const auto* node = root.get("database")) {
    const auto* db = node->as_table();
    if (db == nullptr)
      return fail(Errc::invalid_input, fmt::format("{}: [database] must be a table", origin));
    const std::string where = fmt::format("{}: [database]", origin);
    HM_TRY_VOID(reject_unknown(*db, {"url"}, where));
    c.database_url = HM_TRY(string_at(*db, "url", where, c.database_url));
  }
  if (c.organization.empty())
    return fail(Errc::invalid_input, fmt::format("{}: [pki] organization is empty", origin));
  if (!c.key_passphrase.starts_with("file:") && !c.key_passphrase.starts_with("env:")) {
    return fail(Errc::invalid_input,
                fmt::format("{}: [pki] key_passphrase must be 'file:PATH' or 'env:NAME'", origin));
  }
  if (auto t = crypto::parse_key_type(c.key_type); !t) {
    return fail(Errc::invalid_input, fmt::format("{}: [pki] key_type: {}", origin, t.error().detail));
  }
  if (!c.database_url.starts_with("sqlite:") && !c.database_url.starts_with("postgresql://") &&
      !c.database_url.starts_with("postgres://")) {
    return fail(
        Errc::invalid_input,
        fmt::format("{}: [database] url must start with sqlite:, postgresql:// or postgres://", origin));
  }
  return c;
}

std::string Config::to_toml() const {
  return fmt::format(
      "# hallmark PKI home configuration. Paths are relative to this file's directory.\n"
      "[pki]\n"
      "organization = {}\n"
      "product = {}\n"
      "# hwType OID of the IDC's hardwareModuleName (RFC 4108)\n"
      "product_oid = {}\n"
      "# prefix of CRL distribution point and AIA URLs in issued certificates (empty: none)\n"
      "base_url = {}\n"
      "# where CA key passphrases come from: \"file:PATH\" or \"env:NAME\"\n"
      "key_passphrase = {}\n"
      "# key type for new CA keys: p256, p384, ed25519, rsa2048, rsa3072, rsa4096\n"
      "key_type = {}\n"
      "\n"
      "[database]\n"
      "url = {}\n",
      toml_string(organization), toml_string(product), toml_string(product_oid), toml_string(base_url),
      toml_string(key_passphrase), toml_string(key_type), toml_string(database_url));
}

std::string_view to_string(KeyHolder holder) noexcept {
  switch (holder) {
    case KeyHolder::local: return "local";
    case KeyHolder::vendor: return "vendor";
    case KeyHolder::external: return "external";
  }
  return "local";
}

Status check_ca_name(std::string_view name) {
  const auto ok_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  };
  if (name.empty() || name.size() > 63 || !ok_char(name[0]) || name[0] == '.' || name[0] == '_' ||
      name[0] == '-' || !std::all_of(name.begin(), name.end(), ok_char)) {
    return fail(
        Errc::invalid_input,
        fmt::format("invalid CA name '{}': use 1-63 of a-z 0-9 . _ - starting with a letter or digit", name));
  }
  return {};
}

Result<PkiHome> PkiHome::open(const fs::path& dir) {
  const auto file = dir / "hallmark.toml";
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return fail(Errc::not_found,
                fmt::format("no PKI home at {} (no hallmark.toml); create one with 'hallmark init --home {}'",
                            dir.string(), dir.string()));
  }
  const auto text = HM_TRY(read_text_file(file.string()));
  auto config = HM_TRY(Config::parse_toml(text, "hallmark.toml"));
  return PkiHome(fs::absolute(dir), std::move(config));
}

std::string PkiHome::secret_source(const std::string& source) const {
  if (!source.starts_with("file:")) return source;
  fs::path p(source.substr(5));
  if (p.is_relative()) p = dir_ / p;
  return "file:" + p.string();
}

Result<Secret> PkiHome::key_passphrase() const {
  auto secret = read_secret(key_passphrase_source());
  if (!secret) return std::unexpected(secret.error().with_context("CA key passphrase"));
  return secret;
}

std::map<std::string, std::string> PkiHome::default_variables() const {
  return {{"org", config_.organization}, {"product", config_.product}};
}

Status PkiHome::write_ca(const CaRecord& record, const crypto::PrivateKey* key) const {
  const auto dir = ca_dir(record.name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::internal, fmt::format("cannot create {}: {}", dir.string(), ec.message()));
  if (key != nullptr) {
    const auto passphrase = HM_TRY(key_passphrase());
    HM_TRY_VOID(crypto::save_private_key((dir / "key.pem").string(), *key, &passphrase, crypto::Kdf::scrypt));
  }
  HM_TRY_VOID(write_text(dir / "cert.pem", record.certificate.to_pem()));
  const std::string meta = fmt::format(
      "# CA metadata, written by hallmark\nname = {}\nrole = {}\nparent = {}\nkey_holder = {}\nstatus = {}\n",
      toml_string(record.name), toml_string(record.role), toml_string(record.parent),
      toml_string(to_string(record.key_holder)), toml_string(record.status));
  return write_text(dir / "ca.toml", meta);
}

Result<CaRecord> PkiHome::read_ca(const fs::path& dir) const {
  const auto origin = (fs::path("ca") / dir.filename() / "ca.toml").string();
  const auto text = HM_TRY(read_text_file((dir / "ca.toml").string()));
  const auto t = HM_TRY(parse_toml_text(text, origin));
  HM_TRY_VOID(reject_unknown(t, {"name", "role", "parent", "key_holder", "status"}, origin));
  CaRecord r;
  r.name = HM_TRY(string_at(t, "name", origin, ""));
  r.role = HM_TRY(string_at(t, "role", origin, ""));
  r.parent = HM_TRY(string_at(t, "parent", origin, ""));
  r.status = HM_TRY(string_at(t, "status", origin, "active"));
  const auto holder = HM_TRY(string_at(t, "key_holder", origin, "local"));
  if (holder == "local") {
    r.key_holder = KeyHolder::local;
  } else if (holder == "vendor") {
    r.key_holder = KeyHolder::vendor;
  } else if (holder == "external") {
    r.key_holder = KeyHolder::external;
  } else {
    return fail(Errc::invalid_input,
                fmt::format("{}: key_holder must be local, vendor or external (got '{}')", origin, holder));
  }
  auto cert = x509::Certificate::load((dir / "cert.pem").string());
  if (!cert) return std::unexpected(cert.error().with_context(origin));
  r.certificate = std::move(*cert);
  return r;
}

Result<std::vector<CaRecord>> PkiHome::list_cas() const {
  std::vector<CaRecord> out;
  std::error_code ec;
  const auto root = dir_ / "ca";
  if (!fs::exists(root, ec)) return out;
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory() && fs::exists(entry.path() / "ca.toml")) dirs.push_back(entry.path());
  }
  if (ec) return fail(Errc::internal, fmt::format("cannot list {}: {}", root.string(), ec.message()));
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) out.push_back(HM_TRY(read_ca(d)));
  // Parents before children, then by name: the order `ca list` prints.
  std::stable_sort(out.begin(), out.end(), [](const CaRecord& a, const CaRecord& b) {
    return a.parent.empty() && !b.parent.empty();
  });
  return out;
}

Result<CaRecord> PkiHome::find_ca(std::string_view name) const {
  HM_TRY_VOID(check_ca_name(name));
  const auto dir = ca_dir(name);
  std::error_code ec;
  if (!fs::exists(dir / "ca.toml", ec)) {
    return fail(Errc::not_found, fmt::format("no CA named '{}' (see 'hallmark ca list')", name));
  }
  return read_ca(dir);
}

Result<CaRecord> PkiHome::find_ca_by_role(std::string_view role) const {
  for (auto& ca : HM_TRY(list_cas())) {
    if (ca.role == role && ca.status == "active" && ca.key_holder == KeyHolder::local) return ca;
  }
  return fail(Errc::not_found, fmt::format("no active CA with role '{}' and a local key", role));
}

Result<std::vector<x509::Certificate>> PkiHome::chain_of(std::string_view name) const {
  std::vector<x509::Certificate> chain;
  std::string current(name);
  for (int depth = 0; !current.empty(); ++depth) {
    if (depth > 8) return fail(Errc::internal, fmt::format("CA '{}': parent chain loops", name));
    const auto ca = HM_TRY(find_ca(current));
    chain.push_back(ca.certificate);
    current = ca.parent;
  }
  return chain;
}

Result<std::shared_ptr<const crypto::Signer>> PkiHome::load_signer(const CaRecord& ca) const {
  if (ca.key_holder != KeyHolder::local) {
    return fail(Errc::forbidden,
                fmt::format("CA '{}' has no key here (its key is held by the {}); it cannot sign", ca.name,
                            ca.key_holder == KeyHolder::vendor ? "vendor" : "owner"));
  }
  const auto passphrase = HM_TRY(key_passphrase());
  const auto path = (ca_dir(ca.name) / "key.pem").string();
  const auto text = HM_TRY(read_text_file(path));
  auto key = crypto::PrivateKey::parse_pem(text, &passphrase);
  if (!key) return std::unexpected(key.error().with_context(fmt::format("CA '{}' key", ca.name)));
  if (!(key->public_key() == ca.certificate.public_key())) {
    return fail(Errc::internal, fmt::format("CA '{}': key.pem does not match cert.pem", ca.name));
  }
  return std::make_shared<const crypto::FileSigner>(std::move(*key), "file:" + path);
}

Result<ca::Profile> PkiHome::load_profile(std::string_view name) const {
  if (name.empty() || name.find('/') != std::string_view::npos || name.starts_with(".")) {
    return fail(Errc::invalid_input, fmt::format("invalid profile name '{}'", name));
  }
  const auto path = dir_ / "profiles" / (std::string(name) + ".toml");
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    return fail(Errc::not_found,
                fmt::format("no profile named '{}' (looked for profiles/{}.toml)", name, name));
  }
  const auto text = HM_TRY(read_text_file(path.string()));
  return ca::Profile::parse_toml(text, (fs::path("profiles") / path.filename()).string());
}

Result<std::vector<ca::Profile>> PkiHome::list_profiles() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "profiles", ec)) {
    if (entry.path().extension() == ".toml") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  std::vector<ca::Profile> out;
  for (const auto& n : names) out.push_back(HM_TRY(load_profile(n)));
  return out;
}

Result<CaRecord> PkiHome::create_ca(const std::string& name, const std::string& role,
                                    const std::string& parent, const std::string& common_name,
                                    const std::string& key_type, const Clock& clock) const {
  HM_TRY_VOID(check_ca_name(name));
  if (!ca::is_ca_role(role)) {
    return fail(Errc::invalid_input,
                fmt::format("unknown CA role '{}' (roles: root, bc, idc, tls, ocsp, manifest-signer)", role));
  }
  std::error_code ec;
  if (fs::exists(ca_dir(name), ec))
    return fail(Errc::conflict, fmt::format("a CA named '{}' already exists", name));
  const auto type = HM_TRY(crypto::parse_key_type(key_type));
  auto key = HM_TRY(crypto::PrivateKey::generate(type));
  const crypto::FileSigner signer(key, "new");
  auto variables = default_variables();
  variables["cn"] = common_name;

  CaRecord record{name, role, "", KeyHolder::local, "active", {}};
  if (role == "root") {
    if (!parent.empty()) return fail(Errc::invalid_input, "a root CA has no parent (drop --parent)");
    const auto profile = HM_TRY(load_profile("root"));
    record.certificate = HM_TRY(ca::issue_self_signed(signer, variables, profile, clock));
  } else {
    if (parent.empty()) return fail(Errc::invalid_input, fmt::format("a {} CA needs a --parent CA", role));
    const auto parent_ca = HM_TRY(find_ca(parent));
    const auto parent_signer = HM_TRY(load_signer(parent_ca));
    const auto profile = HM_TRY(load_profile("sub-ca-" + role));
    const ca::Issuer issuer(parent_ca.certificate, parent_signer, clock);
    record.parent = parent;
    record.certificate = HM_TRY(
        issuer.issue(ca::IssueRequest{key.public_key(), variables, std::nullopt, std::nullopt}, profile));
  }
  HM_TRY_VOID(write_ca(record, &key));
  return record;
}

Result<CaRecord> PkiHome::sign_subca(const std::string& name, const std::string& role,
                                     const std::string& parent, const x509::Csr& csr,
                                     const Clock& clock) const {
  HM_TRY_VOID(check_ca_name(name));
  if (!ca::is_ca_role(role) || role == "root") {
    return fail(
        Errc::invalid_input,
        fmt::format("sub-CA role must be one of bc, idc, tls, ocsp, manifest-signer (got '{}')", role));
  }
  std::error_code ec;
  if (fs::exists(ca_dir(name), ec))
    return fail(Errc::conflict, fmt::format("a CA named '{}' already exists", name));
  const auto parent_ca = HM_TRY(find_ca(parent));
  const auto parent_signer = HM_TRY(load_signer(parent_ca));
  const auto profile = HM_TRY(load_profile("sub-ca-" + role));
  // The operator signs what the vendor asked for: the sub-CA's CN and O come from the CSR, every
  // extension from the profile.
  auto variables = default_variables();
  const auto subject = csr.subject();
  const auto cn = subject.get("CN");
  if (!cn || cn->empty()) return fail(Errc::invalid_input, "sub-CA CSR has no CN in its subject");
  variables["cn"] = *cn;
  if (const auto o = subject.get("O")) variables["org"] = *o;
  const ca::Issuer issuer(parent_ca.certificate, parent_signer, clock);
  CaRecord record{name, role, parent, KeyHolder::vendor, "active", {}};
  record.certificate =
      HM_TRY(issuer.issue(ca::IssueRequest{csr, variables, std::nullopt, std::nullopt}, profile));
  HM_TRY_VOID(write_ca(record, nullptr));
  return record;
}

Result<CaRecord> PkiHome::import_external(const std::string& name, const std::string& role,
                                          const x509::Certificate& certificate) const {
  HM_TRY_VOID(check_ca_name(name));
  if (!ca::is_ca_role(role)) {
    return fail(Errc::invalid_input,
                fmt::format("unknown CA role '{}' (roles: root, bc, idc, tls, ocsp, manifest-signer)", role));
  }
  if (!certificate.is_ca()) {
    return fail(Errc::invalid_input,
                fmt::format("{} is not a CA certificate (basicConstraints CA is not true)",
                            certificate.subject().to_string()));
  }
  std::error_code ec;
  if (fs::exists(ca_dir(name), ec))
    return fail(Errc::conflict, fmt::format("a CA named '{}' already exists", name));
  for (const auto& ca : HM_TRY(list_cas())) {
    if (ca.certificate == certificate) {
      return fail(Errc::conflict, fmt::format("this certificate is already known as CA '{}'", ca.name));
    }
  }
  CaRecord record{name, role, "", KeyHolder::external, "active", certificate};
  HM_TRY_VOID(write_ca(record, nullptr));
  return record;
}

Result<PkiHome> PkiHome::init(const fs::path& dir, const InitOptions& options, const Clock& clock) {
  std::error_code ec;
  if (fs::exists(dir / "hallmark.toml", ec)) {
    return fail(Errc::conflict,
                fmt::format("{} already holds a PKI home (hallmark.toml exists); refusing to overwrite it",
                            dir.string()));
  }
  if (fs::exists(dir / "ca", ec)) {
    return fail(Errc::conflict,
                fmt::format("{} already has a ca/ folder; refusing to mix a new PKI into it", dir.string()));
  }
  HM_TRY(crypto::parse_key_type(options.key_type));
  for (const auto* sub : {"profiles", "ca", "secrets", "tls", "ocsp"}) {
    fs::create_directories(dir / sub, ec);
    if (ec)
      return fail(Errc::internal, fmt::format("cannot create {}: {}", (dir / sub).string(), ec.message()));
  }
  fs::permissions(dir / "secrets", fs::perms::owner_all, ec);

  Config config;
  config.organization = options.organization;
  config.product = options.product;
  config.product_oid = options.product_oid;
  config.base_url = options.base_url;
  config.key_type = options.key_type;
  if (options.passphrase_source.empty()) {
    // A random passphrase beside the keys keeps them off disk in the clear; production moves it
    // to an environment variable or a token.
    const auto pass = crypto::base64url_encode(crypto::random_bytes(32));
    HM_TRY_VOID(write_text(dir / "secrets" / "ca-passphrase", pass + "\n", 0600));
    config.key_passphrase = "file:secrets/ca-passphrase";
  } else {
    config.key_passphrase = options.passphrase_source;
  }
  PkiHome home(fs::absolute(dir), config);
  HM_TRY(home.key_passphrase());  // fail now, not after half a PKI

  ca::DefaultProfileOptions profile_options;
  profile_options.organization = options.organization;
  profile_options.product_oid = options.product_oid;
  profile_options.base_url = options.base_url;
  for (const auto& p : ca::default_profiles(profile_options)) {
    HM_TRY_VOID(write_text(dir / "profiles" / (p.name + ".toml"), p.to_toml()));
  }

  const auto& org = options.organization;
  HM_TRY(home.create_ca("root", "root", "", org + " Root CA", options.key_type, clock));
  HM_TRY(home.create_ca("bc", "bc", "root", org + " Birth Certificate CA", options.key_type, clock));
  const auto idc =
      HM_TRY(home.create_ca("idc", "idc", "root", org + " IDC Issuing CA", options.key_type, clock));
  const auto tls = HM_TRY(home.create_ca("tls", "tls", "root", org + " TLS CA", options.key_type, clock));

  const auto passphrase = HM_TRY(home.key_passphrase());
  const auto issue_leaf = [&](const CaRecord& ca, const std::string& profile_name,
                              std::map<std::string, std::string> variables, const fs::path& out) -> Status {
    const auto signer = HM_TRY(home.load_signer(ca));
    const auto profile = HM_TRY(home.load_profile(profile_name));
    const auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
    for (const auto& [k, v] : home.default_variables()) variables.emplace(k, v);
    const ca::Issuer issuer(ca.certificate, signer, clock);
    const auto cert = HM_TRY(
        issuer.issue(ca::IssueRequest{key.public_key(), variables, std::nullopt, std::nullopt}, profile));
    HM_TRY_VOID(crypto::save_private_key(out.string() + ".key", key, &passphrase, crypto::Kdf::scrypt));
    std::string pem = cert.to_pem();
    for (const auto& c : HM_TRY(home.chain_of(ca.name))) pem += c.to_pem();
    return write_text(out.string() + ".pem", pem);
  };
  std::map<std::string, std::string> server_vars{{"cn", options.server_names.front()},
                                                 {"host", options.server_names.front()}};
  for (const auto& n : options.server_names) {
    const bool is_ip = n.find_first_not_of("0123456789.:") == std::string::npos;
    if (is_ip && !server_vars.contains("ip")) server_vars["ip"] = n;
  }
  HM_TRY_VOID(issue_leaf(tls, "tls-server", server_vars, dir / "tls" / "server"));
  HM_TRY_VOID(issue_leaf(idc, "ocsp-responder", {{"cn", org + " IDC OCSP Responder"}}, dir / "ocsp" / "idc"));

  HM_TRY_VOID(write_text(dir / "hallmark.toml", config.to_toml()));
  return home;
}

}  // namespace hallmark::app

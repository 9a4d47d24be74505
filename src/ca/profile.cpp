#include "hallmark/ca/profile.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "hallmark/core/bytes.hpp"
#include "template.hpp"

namespace hallmark::ca {

namespace {

using namespace std::chrono_literals;

constexpr std::chrono::seconds kYear = std::chrono::days{365};

constexpr std::array<std::pair<x509::KeyUsageBit, std::string_view>, 9> kKeyUsageNames{{
    {x509::kDigitalSignature, "digitalSignature"},
    {x509::kNonRepudiation, "nonRepudiation"},
    {x509::kKeyEncipherment, "keyEncipherment"},
    {x509::kDataEncipherment, "dataEncipherment"},
    {x509::kKeyAgreement, "keyAgreement"},
    {x509::kKeyCertSign, "keyCertSign"},
    {x509::kCrlSign, "cRLSign"},
    {x509::kEncipherOnly, "encipherOnly"},
    {x509::kDecipherOnly, "decipherOnly"},
}};

constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kEkuNames{{
    {"serverAuth", "1.3.6.1.5.5.7.3.1"},
    {"clientAuth", "1.3.6.1.5.5.7.3.2"},
    {"codeSigning", "1.3.6.1.5.5.7.3.3"},
    {"emailProtection", "1.3.6.1.5.5.7.3.4"},
    {"timeStamping", "1.3.6.1.5.5.7.3.8"},
    {"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
    {"documentSigning", "1.3.6.1.5.5.7.3.36"},  // RFC 9336
}};

constexpr std::array<std::string_view, 10> kSubjectTypes{
    "CN", "O", "OU", "C", "L", "ST", "serialNumber", "emailAddress", "UID", "DC"};

constexpr std::array<std::string_view, 3> kCurves{"P-256", "P-384", "P-521"};

std::string quoted(std::string_view s) {
  return "'" + std::string(s) + "'";
}

bool is_url(std::string_view s) {
  auto colon = s.find("://");
  if (colon == std::string_view::npos || colon == 0 || colon + 3 >= s.size()) return false;
  for (char c : s.substr(0, colon)) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
          c == '-' || c == '.')) {
      return false;
    }
  }
  return std::none_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '"' || c < 0x20; });
}

bool is_profile_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

// "<N>y" (365 days), "<N>d", "<N>h", "<N>m" (minutes), "<N>s".
std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.size() < 2 || text.size() > 12) return std::nullopt;
  std::int64_t n = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (text.back()) {
    case 'y': return n * kYear;
    case 'd': return n * std::chrono::seconds{std::chrono::days{1}};
    case 'h': return n * std::chrono::seconds{1h};
    case 'm': return n * std::chrono::seconds{1min};
    case 's': return std::chrono::seconds{n};
    default: return std::nullopt;
  }
}

std::string format_duration(std::chrono::seconds d) {
  auto n = d.count();
  if (n == 0) return "0s";
  if (n % kYear.count() == 0) return std::to_string(n / kYear.count()) + "y";
  if (n % 86400 == 0) return std::to_string(n / 86400) + "d";
  if (n % 3600 == 0) return std::to_string(n / 3600) + "h";
  if (n % 60 == 0) return std::to_string(n / 60) + "m";
  return std::to_string(n) + "s";
}

// Reads one profile document; every error names the file and the key.
class Reader {
 public:
  explicit Reader(std::string_view origin) : origin_(origin) {}

  std::unexpected<Error> fail(std::string_view message) const {
    return hallmark::fail(Errc::invalid_input, std::string(origin_) + ": " + std::string(message));
  }

  Status check_keys(const toml::table& table, std::string_view prefix,
                    std::initializer_list<std::string_view> allowed) const {
    for (auto&& [key, node] : table) {
      if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
        return fail("unknown key " + quoted(std::string(prefix) + std::string(key.str())));
      }
    }
    return {};
  }

  Result<std::optional<std::string>> string(const toml::table& t, std::string_view key,
                                            std::string_view path) const {
    const toml::node* node = t.get(key);
    if (node == nullptr) return std::optional<std::string>{};
    if (!node->is_string()) {
      return fail(std::string(path) + " must be a string (got " + std::string(type_name(*node)) + ")");
    }
    return std::optional<std::string>{node->as_string()->get()};
  }

  Result<std::optional<bool>> boolean(const toml::table& t, std::string_view key,
                                      std::string_view path) const {
    const toml::node* node = t.get(key);
    if (node == nullptr) return std::optional<bool>{};
    if (!node->is_boolean()) {
      return fail(std::string(path) + " must be true or false (got " + std::string(type_name(*node)) + ")");
    }
    return std::optional<bool>{node->as_boolean()->get()};
  }

  Result<std::optional<std::int64_t>> integer(const toml::table& t, std::string_view key,
                                              std::string_view path) const {
    const toml::node* node = t.get(key);
    if (node == nullptr) return std::optional<std::int64_t>{};
    if (!node->is_integer()) {
      return fail(std::string(path) + " must be an integer (got " + std::string(type_name(*node)) + ")");
    }
    return std::optional<std::int64_t>{node->as_integer()->get()};
  }

  Result<std::optional<std::vector<std::string>>> strings(const toml::table& t, std::string_view key,
                                                          std::string_view path) const {
    const toml::node* node = t.get(key);
    if (node == nullptr) return std::optional<std::vector<std::string>>{};
    const toml::array* array = node->as_array();
    if (array == nullptr) {
      return fail(std::string(path) + " must be an array of strings (got " + std::string(type_name(*node)) +
                  ")");
    }
    std::vector<std::string> out;
    out.reserve(array->size());
    for (std::size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      if (!element.is_string()) {
        return fail(std::string(path) + "[" + std::to_string(i) + "] must be a string (got " +
                    std::string(type_name(element)) + ")");
      }
      out.push_back(element.as_string()->get());
    }
    return std::optional<std::vector<std::string>>{std::move(out)};
  }

  Result<const toml::table*> table(const toml::table& t, std::string_view key) const {
    const toml::node* node = t.get(key);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
      return fail(std::string(key) + " must be a table (got " + std::string(type_name(*node)) + ")");
    }
    return node->as_table();
  }

  Status check_template(std::string_view text, std::string_view path) const {
    if (auto why = detail::template_error(text)) {
      return fail(std::string(path) + ": bad template " + quoted(text) + " (" + *why + ")");
    }
    return {};
  }

  Status check_templates(const std::vector<std::string>& texts, std::string_view path) const {
    for (std::size_t i = 0; i < texts.size(); ++i) {
      HM_TRY_VOID(check_template(texts[i], std::string(path) + "[" + std::to_string(i) + "]"));
    }
    return {};
  }

  Result<Profile> read(const toml::table& doc) const;

 private:
  Status read_subject(const toml::table& doc, Profile& p) const;
  Status read_key_policy(const toml::table& doc, Profile& p) const;
  Status read_basic_constraints(const toml::table& doc, Profile& p) const;
  Status read_usages(const toml::table& doc, Profile& p) const;
  Status read_urls(const toml::table& doc, std::string_view key, std::vector<std::string>& out) const;
  Status check_consistency(const Profile& p) const;

  std::string_view origin_;
};

Status Reader::read_subject(const toml::table& doc, Profile& p) const {
  const toml::node* node = doc.get("subject");
  if (node == nullptr) return {};
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    return fail("subject must be an array of tables (got " + std::string(type_name(*node)) + ")");
  }
  for (std::size_t i = 0; i < array->size(); ++i) {
    std::string path = "subject[" + std::to_string(i) + "]";
    const toml::table* rule = array->get(i)->as_table();
    if (rule == nullptr) {
      return fail(path + " must be a table (got " + std::string(type_name(*array->get(i))) + ")");
    }
    HM_TRY_VOID(check_keys(*rule, path + ".", {"type", "value", "required"}));
    auto type = HM_TRY(string(*rule, "type", path + ".type"));
    auto value = HM_TRY(string(*rule, "value", path + ".value"));
    auto required = HM_TRY(boolean(*rule, "required", path + ".required"));
    if (!type) return fail(path + ".type is required");
    if (!value) return fail(path + ".value is required");
    if (std::find(kSubjectTypes.begin(), kSubjectTypes.end(), *type) == kSubjectTypes.end() &&
        !x509::is_dotted_oid(*type)) {
      return fail(path +
                  ".type must be one of CN, O, OU, C, L, ST, serialNumber, emailAddress, UID, DC or a " +
                  "dotted OID (got " + quoted(*type) + ")");
    }
    if (value->empty()) return fail(path + ".value must not be empty");
    HM_TRY_VOID(check_template(*value, path + ".value"));
    p.subject.push_back(SubjectRule{std::move(*type), std::move(*value), required.value_or(true)});
  }
  return {};
}

Status Reader::read_key_policy(const toml::table& doc, Profile& p) const {
  const toml::table* t = HM_TRY(table(doc, "key_policy"));
  if (t == nullptr) return {};
  HM_TRY_VOID(check_keys(*t, "key_policy.", {"curves", "allow_ed25519", "min_rsa_bits", "max_rsa_bits"}));
  KeyPolicy& kp = p.key_policy;
  if (auto curves = HM_TRY(strings(*t, "curves", "key_policy.curves"))) {
    for (const auto& curve : *curves) {
      if (std::find(kCurves.begin(), kCurves.end(), curve) == kCurves.end()) {
        return fail("key_policy.curves: unknown curve " + quoted(curve) + " (known: P-256, P-384, P-521)");
      }
    }
    kp.curves = std::move(*curves);
  }
  if (auto v = HM_TRY(boolean(*t, "allow_ed25519", "key_policy.allow_ed25519"))) kp.allow_ed25519 = *v;
  auto min_bits = HM_TRY(integer(*t, "min_rsa_bits", "key_policy.min_rsa_bits"));
  auto max_bits = HM_TRY(integer(*t, "max_rsa_bits", "key_policy.max_rsa_bits"));
  if (min_bits) {
    if (*min_bits != 0 && (*min_bits < 1024 || *min_bits > 16384)) {
      return fail("key_policy.min_rsa_bits must be 0 (no RSA) or 1024-16384 (got " +
                  std::to_string(*min_bits) + ")");
    }
    kp.min_rsa_bits = static_cast<int>(*min_bits);
  }
  if (max_bits) {
    if (*max_bits < 1024 || *max_bits > 16384) {
      return fail("key_policy.max_rsa_bits must be 1024-16384 (got " + std::to_string(*max_bits) + ")");
    }
    kp.max_rsa_bits = static_cast<int>(*max_bits);
  }
  if (kp.min_rsa_bits != 0 && kp.max_rsa_bits < kp.min_rsa_bits) {
    return fail("key_policy.max_rsa_bits (" + std::to_string(kp.max_rsa_bits) +
                ") is less than key_policy.min_rsa_bits (" + std::to_string(kp.min_rsa_bits) + ")");
  }
  if (kp.curves.empty() && !kp.allow_ed25519 && kp.min_rsa_bits == 0) {
    return fail("key_policy allows no key at all");
  }
  return {};
}

Status Reader::read_basic_constraints(const toml::table& doc, Profile& p) const {
  const toml::table* t = HM_TRY(table(doc, "basic_constraints"));
  if (t == nullptr) return {};
  HM_TRY_VOID(check_keys(*t, "basic_constraints.", {"ca", "path_length", "critical"}));
  x509::BasicConstraints bc;
  if (auto v = HM_TRY(boolean(*t, "ca", "basic_constraints.ca"))) bc.ca = *v;
  if (auto v = HM_TRY(boolean(*t, "critical", "basic_constraints.critical"))) bc.critical = *v;
  if (auto v = HM_TRY(integer(*t, "path_length", "basic_constraints.path_length"))) {
    if (!bc.ca) return fail("basic_constraints.path_length needs basic_constraints.ca = true");
    if (*v < 0 || *v > 255) {
      return fail("basic_constraints.path_length must be 0-255 (got " + std::to_string(*v) + ")");
    }
    bc.path_length = static_cast<int>(*v);
  }
  p.basic_constraints = bc;
  return {};
}

Status Reader::read_usages(const toml::table& doc, Profile& p) const {
  auto ku = HM_TRY(strings(doc, "key_usage", "key_usage"));
  auto ku_critical = HM_TRY(boolean(doc, "key_usage_critical", "key_usage_critical"));
  if (ku) {
    if (ku->empty()) return fail("key_usage must not be empty (leave it out for no Key Usage extension)");
    x509::KeyUsage usage;
    for (const auto& name : *ku) {
      auto it = std::find_if(kKeyUsageNames.begin(), kKeyUsageNames.end(),
                             [&](const auto& e) { return e.second == name; });
      if (it == kKeyUsageNames.end() && name == "contentCommitment") it = kKeyUsageNames.begin() + 1;
      if (it == kKeyUsageNames.end()) {
        return fail("key_usage: unknown usage " + quoted(name) +
                    " (known: digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, "
                    "keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly)");
      }
      usage.bits |= it->first;
    }
    usage.critical = ku_critical.value_or(true);
    p.key_usage = usage;
  } else if (ku_critical) {
    return fail("key_usage_critical needs key_usage");
  }
  if (auto v = HM_TRY(boolean(doc, "key_agreement_for_ec", "key_agreement_for_ec"))) {
    if (*v && !p.key_usage) return fail("key_agreement_for_ec needs key_usage");
    p.key_agreement_for_ec = *v;
  }

  auto eku = HM_TRY(strings(doc, "extended_key_usage", "extended_key_usage"));
  auto eku_critical = HM_TRY(boolean(doc, "extended_key_usage_critical", "extended_key_usage_critical"));
  if (eku) {
    if (eku->empty()) {
      return fail("extended_key_usage must not be empty (leave it out for no Extended Key Usage extension)");
    }
    x509::ExtendedKeyUsage usage;
    for (const auto& name : *eku) {
      auto it =
          std::find_if(kEkuNames.begin(), kEkuNames.end(), [&](const auto& e) { return e.first == name; });
      if (it != kEkuNames.end()) {
        usage.oids.emplace_back(it->second);
      } else if (x509::is_dotted_oid(name)) {
        usage.oids.push_back(name);
      } else {
        return fail(
            "extended_key_usage: unknown usage " + quoted(name) +
            " (known: serverAuth, clientAuth, codeSigning, emailProtection, timeStamping, OCSPSigning, "
            "documentSigning, or a dotted OID)");
      }
    }
    usage.critical = eku_critical.value_or(false);
    p.extended_key_usage = std::move(usage);
  } else if (eku_critical) {
    return fail("extended_key_usage_critical needs extended_key_usage");
  }
  return {};
}

Status Reader::read_urls(const toml::table& doc, std::string_view key, std::vector<std::string>& out) const {
  auto urls = HM_TRY(strings(doc, key, key));
  if (!urls) return {};
  for (std::size_t i = 0; i < urls->size(); ++i) {
    if (!is_url((*urls)[i])) {
      return fail(std::string(key) + "[" + std::to_string(i) +
                  "] must be a URL like http://pki.example.com/... (got " + quoted((*urls)[i]) + ")");
    }
  }
  out = std::move(*urls);
  return {};
}

Status Reader::check_consistency(const Profile& p) const {
  const bool is_ca = p.kind != ProfileKind::end_entity;
  const std::string kind(to_string(p.kind));
  if (is_ca) {
    if (!p.basic_constraints || !p.basic_constraints->ca) {
      return fail("basic_constraints.ca must be true for kind " + kind);
    }
    if (!p.key_usage || !p.key_usage->has(x509::kKeyCertSign)) {
      return fail("key_usage must include keyCertSign for kind " + kind);
    }
    if (p.subject.empty()) return fail("subject must not be empty for kind " + kind);
  } else {
    if (p.basic_constraints && p.basic_constraints->ca) {
      return fail("basic_constraints.ca must be false for kind end-entity");
    }
    if (p.key_usage && (p.key_usage->has(x509::kKeyCertSign) || p.key_usage->has(x509::kCrlSign))) {
      return fail("key_usage must not include keyCertSign or cRLSign for kind end-entity");
    }
    if (p.subject.empty() && p.san_dns.empty() && p.san_uri.empty() && p.san_ip.empty() &&
        !p.hardware_module_name_type && !p.allow_csr_san) {
      return fail("subject must not be empty unless the profile sets a subject alternative name");
    }
  }
  if (p.ocsp_no_check && !(p.extended_key_usage &&
                           std::find(p.extended_key_usage->oids.begin(), p.extended_key_usage->oids.end(),
                                     x509::kOidOcspSigning) != p.extended_key_usage->oids.end())) {
    return fail("ocsp_no_check needs extended_key_usage OCSPSigning");
  }
  return {};
}

Result<Profile> Reader::read(const toml::table& doc) const {
  HM_TRY_VOID(check_keys(doc, "",
                         {"name",
                          "kind",
                          "description",
                          "subject",
                          "variables",
                          "key_policy",
                          "lifetime",
                          "backdate",
                          "basic_constraints",
                          "key_usage",
                          "key_usage_critical",
                          "key_agreement_for_ec",
                          "extended_key_usage",
                          "extended_key_usage_critical",
                          "hardware_module_name_type",
                          "san_dns",
                          "san_uri",
                          "san_ip",
                          "allow_csr_san",
                          "crl_distribution_points",
                          "ocsp_urls",
                          "ca_issuers_urls",
                          "certificate_policies",
                          "ocsp_no_check"}));
  Profile p;

  auto name = HM_TRY(string(doc, "name", "name"));
  if (!name) return fail("name is required");
  if (!is_profile_name(*name)) {
    return fail("name must be letters, digits, '-', '_' or '.' (got " + quoted(*name) + ")");
  }
  p.name = std::move(*name);

  auto kind = HM_TRY(string(doc, "kind", "kind"));
  if (!kind) return fail("kind is required (root, sub-ca or end-entity)");
  if (*kind == "root") {
    p.kind = ProfileKind::root;
  } else if (*kind == "sub-ca") {
    p.kind = ProfileKind::sub_ca;
  } else if (*kind == "end-entity") {
    p.kind = ProfileKind::end_entity;
  } else {
    return fail("kind must be one of root, sub-ca, end-entity (got " + quoted(*kind) + ")");
  }

  if (auto v = HM_TRY(string(doc, "description", "description"))) p.description = std::move(*v);

  HM_TRY_VOID(read_subject(doc, p));

  if (const toml::table* vars = HM_TRY(table(doc, "variables"))) {
    for (auto&& [key, node] : *vars) {
      std::string path = "variables." + std::string(key.str());
      if (key.str().empty() || !std::all_of(key.str().begin(), key.str().end(), detail::is_variable_char)) {
        return fail(path + ": variable names are lowercase letters, digits and '_'");
      }
      if (!node.is_string()) {
        return fail(path + " must be a string (got " + std::string(type_name(node)) + ")");
      }
      p.variables.emplace(std::string(key.str()), node.as_string()->get());
    }
  }

  HM_TRY_VOID(read_key_policy(doc, p));

  if (auto v = HM_TRY(string(doc, "lifetime", "lifetime"))) {
    if (*v == "forever") {
      p.lifetime = std::nullopt;
    } else {
      auto d = parse_duration(*v);
      if (!d || d->count() <= 0) {
        return fail("lifetime must be \"forever\" or a duration like \"825d\", \"24h\" or \"25y\" (got " +
                    quoted(*v) + ")");
      }
      p.lifetime = *d;
    }
  } else {
    return fail("lifetime is required (\"forever\" or a duration like \"825d\", \"24h\" or \"25y\")");
  }

  if (auto v = HM_TRY(string(doc, "backdate", "backdate"))) {
    auto d = parse_duration(*v);
    if (!d) return fail("backdate must be a duration like \"5m\", \"1h\" or \"0s\" (got " + quoted(*v) + ")");
    p.backdate = *d;
  }

  HM_TRY_VOID(read_basic_constraints(doc, p));
  HM_TRY_VOID(read_usages(doc, p));

  if (auto v = HM_TRY(string(doc, "hardware_module_name_type", "hardware_module_name_type"))) {
    if (!x509::is_dotted_oid(*v)) {
      return fail("hardware_module_name_type must be a dotted OID like 1.3.6.1.4.1.55555.1.1 (got " +
                  quoted(*v) + ")");
    }
    p.hardware_module_name_type = std::move(*v);
  }

  for (auto [key, field] :
       {std::pair{"san_dns", &p.san_dns}, std::pair{"san_uri", &p.san_uri}, std::pair{"san_ip", &p.san_ip}}) {
    if (auto v = HM_TRY(strings(doc, key, key))) {
      HM_TRY_VOID(check_templates(*v, key));
      *field = std::move(*v);
    }
  }
  if (auto v = HM_TRY(boolean(doc, "allow_csr_san", "allow_csr_san"))) p.allow_csr_san = *v;

  HM_TRY_VOID(read_urls(doc, "crl_distribution_points", p.crl_distribution_points));
  HM_TRY_VOID(read_urls(doc, "ocsp_urls", p.ocsp_urls));
  HM_TRY_VOID(read_urls(doc, "ca_issuers_urls", p.ca_issuers_urls));

  if (auto v = HM_TRY(strings(doc, "certificate_policies", "certificate_policies"))) {
    for (std::size_t i = 0; i < v->size(); ++i) {
      if (!x509::is_dotted_oid((*v)[i])) {
        return fail("certificate_policies[" + std::to_string(i) + "] must be a dotted OID (got " +
                    quoted((*v)[i]) + ")");
      }
    }
    p.certificate_policies = std::move(*v);
  }
  if (auto v = HM_TRY(boolean(doc, "ocsp_no_check", "ocsp_no_check"))) p.ocsp_no_check = *v;

  HM_TRY_VOID(check_consistency(p));
  return p;
}

// TOML basic string.
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789ABCDEF";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string toml_array(const std::vector<std::string>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i != 0) out += ", ";
    out += toml_string(values[i]);
  }
  out += "]";
  return out;
}

std::string eku_name(const std::string& oid) {
  for (const auto& [name, dotted] : kEkuNames) {
    if (dotted == oid) return std::string(name);
  }
  return oid;
}

}  // namespace

std::string_view to_string(ProfileKind kind) noexcept {
  switch (kind) {
    case ProfileKind::root: return "root";
    case ProfileKind::sub_ca: return "sub-ca";
    case ProfileKind::end_entity: return "end-entity";
  }
  return "end-entity";
}

bool is_ca_role(std::string_view role) {
  return std::find(std::begin(kCaRoles), std::end(kCaRoles), role) != std::end(kCaRoles);
}

Result<Profile> Profile::parse_toml(std::string_view text, std::string_view origin) {
  toml::table doc;
  try {
    doc = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    return fail(Errc::invalid_input, std::string(origin) + ":" + std::to_string(begin.line) + ":" +
                                         std::to_string(begin.column) + ": " + std::string(e.description()));
  }
  return Reader(origin).read(doc);
}

Result<Profile> Profile::load(const std::string& path) {
  auto text = read_text_file(path);
  if (!text) return std::unexpected(text.error());
  return parse_toml(*text, path);
}

std::string Profile::to_toml() const {
  std::string out;
  out += "# hallmark certificate profile; schema: docs/profiles.md\n";
  out += "name = " + toml_string(name) + "\n";
  out += "kind = " + toml_string(to_string(kind)) + "\n";
  if (!description.empty()) out += "description = " + toml_string(description) + "\n";
  out += "lifetime = " + toml_string(lifetime ? format_duration(*lifetime) : "forever") + "\n";
  out += "backdate = " + toml_string(format_duration(backdate)) + "\n";
  if (!subject.empty()) {
    out += "subject = [\n";
    for (const auto& rule : subject) {
      out += "  { type = " + toml_string(rule.type) + ", value = " + toml_string(rule.value);
      if (!rule.required) out += ", required = false";
      out += " },\n";
    }
    out += "]\n";
  }
  if (key_usage) {
    std::vector<std::string> names;
    for (const auto& [bit, bit_name] : kKeyUsageNames) {
      if (key_usage->has(bit)) names.emplace_back(bit_name);
    }
    out += "key_usage = " + toml_array(names) + "\n";
    if (!key_usage->critical) out += "key_usage_critical = false\n";
  }
  if (key_agreement_for_ec) out += "key_agreement_for_ec = true\n";
  if (extended_key_usage) {
    std::vector<std::string> names;
    for (const auto& oid : extended_key_usage->oids) names.push_back(eku_name(oid));
    out += "extended_key_usage = " + toml_array(names) + "\n";
    if (extended_key_usage->critical) out += "extended_key_usage_critical = true\n";
  }
  if (hardware_module_name_type) {
    out += "hardware_module_name_type = " + toml_string(*hardware_module_name_type) + "\n";
  }
  if (!san_dns.empty()) out += "san_dns = " + toml_array(san_dns) + "\n";
  if (!san_uri.empty()) out += "san_uri = " + toml_array(san_uri) + "\n";
  if (!san_ip.empty()) out += "san_ip = " + toml_array(san_ip) + "\n";
  if (allow_csr_san) out += "allow_csr_san = true\n";
  if (!crl_distribution_points.empty()) {
    out += "crl_distribution_points = " + toml_array(crl_distribution_points) + "\n";
  }
  if (!ocsp_urls.empty()) out += "ocsp_urls = " + toml_array(ocsp_urls) + "\n";
  if (!ca_issuers_urls.empty()) out += "ca_issuers_urls = " + toml_array(ca_issuers_urls) + "\n";
  if (!certificate_policies.empty())
    out += "certificate_policies = " + toml_array(certificate_policies) + "\n";
  if (ocsp_no_check) out += "ocsp_no_check = true\n";

  if (basic_constraints) {
    out += "\n[basic_constraints]\n";
    out += std::string("ca = ") + (basic_constraints->ca ? "true" : "false") + "\n";
    if (basic_constraints->path_length) {
      out += "path_length = " + std::to_string(*basic_constraints->path_length) + "\n";
    }
    out += std::string("critical = ") + (basic_constraints->critical ? "true" : "false") + "\n";
  }
  out += "\n[key_policy]\n";
  out += "curves = " + toml_array(key_policy.curves) + "\n";
  out += std::string("allow_ed25519 = ") + (key_policy.allow_ed25519 ? "true" : "false") + "\n";
  out += "min_rsa_bits = " + std::to_string(key_policy.min_rsa_bits) + "  # 0: no RSA\n";
  out += "max_rsa_bits = " + std::to_string(key_policy.max_rsa_bits) + "\n";
  if (!variables.empty()) {
    out += "\n# Defaults for {variables} a request does not supply.\n[variables]\n";
    for (const auto& [key, value] : variables) out += key + " = " + toml_string(value) + "\n";
  }
  return out;
}

std::vector<Profile> default_profiles(const DefaultProfileOptions& options) {
  const std::string& base = options.base_url;
  auto url = [&](std::string_view path) {
    std::string u = base;
    while (!u.empty() && u.back() == '/') u.pop_back();
    return u + std::string(path);
  };
  auto ca_profile = [&](std::string name, ProfileKind kind, std::string description, std::string cn) {
    Profile p;
    p.name = std::move(name);
    p.kind = kind;
    p.description = std::move(description);
    p.subject = {{"O", "{org}", true}, {"CN", "{cn}", true}};
    p.variables = {{"org", options.organization}, {"cn", std::move(cn)}};
    // Devices verify these chains, and small TLS stacks often lack Ed25519.
    p.key_policy.allow_ed25519 = false;
    p.basic_constraints = x509::BasicConstraints{.ca = true, .path_length = std::nullopt, .critical = true};
    p.key_usage = x509::KeyUsage{x509::kKeyCertSign | x509::kCrlSign, true};
    return p;
  };
  auto end_entity = [&](std::string name, std::string description, std::chrono::seconds lifetime_or_zero) {
    Profile p;
    p.name = std::move(name);
    p.kind = ProfileKind::end_entity;
    p.description = std::move(description);
    p.variables = {{"org", options.organization}};
    if (lifetime_or_zero.count() != 0) p.lifetime = lifetime_or_zero;
    p.basic_constraints = x509::BasicConstraints{.ca = false, .path_length = std::nullopt, .critical = true};
    p.key_usage = x509::KeyUsage{x509::kDigitalSignature, true};
    return p;
  };
  auto revocation_urls = [&](Profile& p, std::string_view ca, bool ocsp) {
    if (base.empty()) return;
    p.crl_distribution_points = {url("/crl/" + std::string(ca) + ".crl")};
    if (ocsp) p.ocsp_urls = {url("/ocsp")};
    p.ca_issuers_urls = {url("/ca/" + std::string(ca) + ".crt")};
  };

  std::vector<Profile> out;

  Profile root = ca_profile("root", ProfileKind::root, "Self-signed OEM root; kept offline",
                            options.organization + " Root CA");
  // Permanent identities need a permanent chain: a device's no-expiry IDC (and BC) is only as
  // valid as its root and issuing CA, and a certificate is never made to outlive its issuer.
  root.lifetime = std::nullopt;
  out.push_back(std::move(root));

  struct Role {
    std::string_view role;
    std::string_view description;
    std::string_view cn;
  };
  constexpr Role kRoles[] = {
      {"bc", "Birth-certificate policy CA for a silicon vendor (Option 2)", "BC CA"},
      {"idc", "Issues Initial Device Certificates (802.1AR IDevIDs)", "IDC CA"},
      {"tls", "Issues the RA's TLS server and proxy client certificates", "TLS CA"},
      {"ocsp", "Issues delegated OCSP responder certificates", "OCSP CA"},
      {"manifest-signer", "Issues manifest-signer certificates (the signing keys are end entities)",
       "Manifest Signer CA"},
  };
  for (const auto& role : kRoles) {
    Profile p = ca_profile("sub-ca-" + std::string(role.role), ProfileKind::sub_ca,
                           std::string(role.description), options.organization + " " + std::string(role.cn));
    const bool permanent = role.role == "bc" || role.role == "idc";
    if (permanent) {
      p.lifetime = std::nullopt;
    } else {
      p.lifetime = 15 * kYear;
    }
    p.basic_constraints->path_length = 0;
    revocation_urls(p, "root", false);
    out.push_back(std::move(p));
  }

  // Option 2 birth certificate: the reference BC's shape (CN "sn" + hardware serial).
  Profile bc = end_entity("bc", "Birth certificate issued at the silicon vendor (Option 2)", {});
  bc.subject = {{"O", "{org}", true}, {"CN", "sn{hw_serial}", true}};
  bc.extended_key_usage = x509::ExtendedKeyUsage{{x509::kOidClientAuth}, false};
  revocation_urls(bc, "bc", false);
  out.push_back(std::move(bc));

  // IEEE 802.1AR IDevID, DESIGN.md §2.
  Profile idc = end_entity("idc", "Initial Device Certificate (IEEE 802.1AR IDevID)", {});
  idc.subject = {{"serialNumber", "{serial}", true}, {"O", "{org}", true}, {"CN", "{product}", true}};
  idc.key_agreement_for_ec = true;
  idc.extended_key_usage = x509::ExtendedKeyUsage{{x509::kOidClientAuth}, false};
  idc.hardware_module_name_type = options.product_oid;
  revocation_urls(idc, "idc", true);
  out.push_back(std::move(idc));

  Profile tls =
      end_entity("tls-server", "TLS server certificate of the RA / EST endpoint", std::chrono::days{825});
  tls.subject = {{"CN", "{host}", true}};
  tls.san_dns = {"{host}"};
  tls.san_ip = {"{ip}"};
  tls.extended_key_usage = x509::ExtendedKeyUsage{{x509::kOidServerAuth}, false};
  revocation_urls(tls, "tls", true);
  out.push_back(std::move(tls));

  Profile proxy =
      end_entity("proxy-client", "Client certificate of a trusted reverse proxy", std::chrono::days{825});
  proxy.subject = {{"O", "{org}", false}, {"CN", "{cn}", true}};
  proxy.extended_key_usage = x509::ExtendedKeyUsage{{x509::kOidClientAuth}, false};
  revocation_urls(proxy, "tls", true);
  out.push_back(std::move(proxy));

  // RFC 6960 §4.2.2.2: delegated responders carry id-kp-OCSPSigning and (usually) id-pkix-ocsp-nocheck.
  Profile ocsp = end_entity("ocsp-responder", "Delegated OCSP responder", kYear);
  ocsp.subject = {{"O", "{org}", false}, {"CN", "{cn}", true}};
  ocsp.extended_key_usage = x509::ExtendedKeyUsage{{x509::kOidOcspSigning}, false};
  ocsp.ocsp_no_check = true;
  out.push_back(std::move(ocsp));

  // Manifests are JWS ES256: the signer is an end entity with a P-256 key and no power to issue.
  Profile manifest = end_entity("manifest-signer", "Signs reel manifests (JWS ES256)", 5 * kYear);
  manifest.subject = {{"O", "{org}", true}, {"CN", "{cn}", true}};
  manifest.extended_key_usage = x509::ExtendedKeyUsage{{"1.3.6.1.5.5.7.3.36"}, false};  // documentSigning
  manifest.key_policy =
      KeyPolicy{.curves = {"P-256"}, .allow_ed25519 = false, .min_rsa_bits = 0, .max_rsa_bits = 4096};
  revocation_urls(manifest, "manifest-signer", false);
  out.push_back(std::move(manifest));

  return out;
}

Status check_key_policy(const Profile& profile, const crypto::KeyInfo& key) {
  const KeyPolicy& kp = profile.key_policy;
  const bool rsa_allowed = kp.min_rsa_bits > 0;
  std::string what;
  switch (key.algorithm) {
    case crypto::KeyInfo::Algorithm::ec:
      if (std::find(kp.curves.begin(), kp.curves.end(), key.curve) != kp.curves.end()) return {};
      what = key.curve.empty() ? std::string("EC") : "EC " + key.curve;
      break;
    case crypto::KeyInfo::Algorithm::ed25519:
      if (kp.allow_ed25519) return {};
      what = "Ed25519";
      break;
    case crypto::KeyInfo::Algorithm::rsa:
      what = "RSA " + std::to_string(key.bits);
      if (rsa_allowed && key.bits < kp.min_rsa_bits) {
        return fail(Errc::forbidden, "profile " + profile.name + " does not allow " + what +
                                         " keys (minimum " + std::to_string(kp.min_rsa_bits) + " bits)");
      }
      if (rsa_allowed && key.bits > kp.max_rsa_bits) {
        return fail(Errc::forbidden, "profile " + profile.name + " does not allow " + what +
                                         " keys (maximum " + std::to_string(kp.max_rsa_bits) + " bits)");
      }
      if (rsa_allowed) return {};
      break;
    case crypto::KeyInfo::Algorithm::other: what = key.describe(); break;
  }
  std::string allowed;
  auto add = [&](std::string_view s) {
    if (!allowed.empty()) allowed += ", ";
    allowed += s;
  };
  for (const auto& curve : kp.curves) add("EC " + curve);
  if (kp.allow_ed25519) add("Ed25519");
  if (rsa_allowed) {
    add(kp.min_rsa_bits == kp.max_rsa_bits
            ? "RSA " + std::to_string(kp.min_rsa_bits)
            : "RSA " + std::to_string(kp.min_rsa_bits) + "-" + std::to_string(kp.max_rsa_bits));
  }
  if (allowed.empty()) allowed = "none";
  return fail(Errc::forbidden,
              "profile " + profile.name + " does not allow " + what + " keys (allowed: " + allowed + ")");
}

}  // namespace hallmark::ca

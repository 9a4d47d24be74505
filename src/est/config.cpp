#include "hallmark/est/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <charconv>
#include <limits>

namespace hallmark::est {

namespace {

using std::chrono::milliseconds;

Error invalid(std::string text) {
  return Error{Errc::invalid_input, std::move(text)};
}

// Reads one table with exact messages: "<origin>: [server] threads must be an integer".
class Reader {
 public:
  Reader(const toml::table& t, std::string where) : t_(t), where_(std::move(where)) {}

  [[nodiscard]] const std::string& where() const { return where_; }
  [[nodiscard]] Error error(std::string_view key, std::string_view text) const {
    return invalid(fmt::format("{} {} {}", where_, key, text));
  }

  Status known(std::initializer_list<std::string_view> keys) const {
    for (const auto& [k, v] : t_) {
      if (std::find(keys.begin(), keys.end(), k.str()) == keys.end()) {
        return std::unexpected(invalid(fmt::format("{} unknown key '{}'", where_, k.str())));
      }
    }
    return {};
  }

  Status string(std::string_view key, std::string& out) const {
    const auto* n = t_.get(key);
    if (n == nullptr) return {};
    const auto* s = n->as_string();
    if (s == nullptr) return std::unexpected(error(key, "must be a string"));
    out = s->get();
    return {};
  }

  Status boolean(std::string_view key, bool& out) const {
    const auto* n = t_.get(key);
    if (n == nullptr) return {};
    const auto* b = n->as_boolean();
    if (b == nullptr) return std::unexpected(error(key, "must be true or false"));
    out = b->get();
    return {};
  }

  template <class Int>
  Status integer(std::string_view key, Int& out, std::int64_t min, std::int64_t max) const {
    const auto* n = t_.get(key);
    if (n == nullptr) return {};
    const auto* i = n->as_integer();
    if (i == nullptr) return std::unexpected(error(key, "must be an integer"));
    if (i->get() < min || i->get() > max) {
      return std::unexpected(error(key, fmt::format("must be between {} and {}", min, max)));
    }
    out = static_cast<Int>(i->get());
    return {};
  }

  Status strings(std::string_view key, std::vector<std::string>& out) const {
    const auto* n = t_.get(key);
    if (n == nullptr) return {};
    const auto* a = n->as_array();
    if (a == nullptr) return std::unexpected(error(key, "must be an array of strings"));
    std::vector<std::string> v;
    for (const auto& e : *a) {
      const auto* s = e.as_string();
      if (s == nullptr) return std::unexpected(error(key, "must be an array of strings"));
      v.push_back(s->get());
    }
    out = std::move(v);
    return {};
  }

  Status duration(std::string_view key, milliseconds& out) const {
    std::string text;
    if (!t_.get(key)) return {};
    HM_TRY_VOID(string(key, text));
    auto d = parse_duration(text, false);
    if (!d) return std::unexpected(error(key, d.error().detail));
    out = **d;
    return {};
  }

  [[nodiscard]] const toml::table* table(std::string_view key) const {
    const auto* n = t_.get(key);
    return n == nullptr ? nullptr : n->as_table();
  }
  [[nodiscard]] bool has(std::string_view key) const { return t_.get(key) != nullptr; }

 private:
  const toml::table& t_;
  std::string where_;
};

std::chrono::seconds to_seconds(milliseconds ms) {
  return std::chrono::duration_cast<std::chrono::seconds>(ms);
}

Status parse_server(const toml::table& t, std::string_view origin, ServeConfig& out) {
  const Reader r(t, fmt::format("{}: [server]", origin));
  HM_TRY_VOID(r.known({"listen",
                       "port",
                       "threads",
                       "handler_threads",
                       "reuse_port",
                       "max_connections",
                       "max_header_bytes",
                       "max_body_bytes",
                       "session_tickets",
                       "min_tls_version",
                       "groups",
                       "tls_cert",
                       "tls_key",
                       "tls_key_passphrase",
                       "handshake_timeout",
                       "header_timeout",
                       "body_timeout",
                       "idle_timeout",
                       "write_timeout",
                       "drain_timeout",
                       "drain_delay",
                       "proxy"}));
  auto& s = out.server;
  HM_TRY_VOID(r.string("listen", s.listen));
  if (s.listen.empty()) return std::unexpected(r.error("listen", "must be an IP address"));
  HM_TRY_VOID(r.integer("port", s.port, 0, 65535));
  HM_TRY_VOID(r.integer("threads", s.threads, 0, 1024));
  HM_TRY_VOID(r.integer("handler_threads", s.handler_threads, 0, 4096));
  HM_TRY_VOID(r.boolean("reuse_port", s.reuse_port));
  HM_TRY_VOID(r.integer("max_connections", s.max_connections, 1, 10'000'000));
  HM_TRY_VOID(r.integer("max_header_bytes", s.max_header_bytes, 256, 1 << 24));
  HM_TRY_VOID(r.integer("max_body_bytes", s.max_body_bytes, 1, std::int64_t{1} << 32));
  HM_TRY_VOID(r.boolean("session_tickets", s.session_tickets));
  std::string min_version = "1.2";
  HM_TRY_VOID(r.string("min_tls_version", min_version));
  if (min_version == "1.2") {
    s.min_tls_version = http::TlsVersion::tls1_2;
  } else if (min_version == "1.3") {
    s.min_tls_version = http::TlsVersion::tls1_3;
  } else {
    return std::unexpected(
        r.error("min_tls_version", fmt::format("must be \"1.2\" or \"1.3\" (got '{}')", min_version)));
  }
  HM_TRY_VOID(r.string("groups", s.groups));
  s.tls_cert = "tls/server.pem";
  s.tls_key = "tls/server.key";
  HM_TRY_VOID(r.string("tls_cert", s.tls_cert));
  HM_TRY_VOID(r.string("tls_key", s.tls_key));
  HM_TRY_VOID(r.string("tls_key_passphrase", s.tls_key_passphrase));
  if (!s.tls_key_passphrase.empty() && !s.tls_key_passphrase.starts_with("file:") &&
      !s.tls_key_passphrase.starts_with("env:")) {
    return std::unexpected(r.error("tls_key_passphrase", "must be 'file:PATH' or 'env:NAME'"));
  }
  HM_TRY_VOID(r.duration("handshake_timeout", s.timeouts.handshake));
  HM_TRY_VOID(r.duration("header_timeout", s.timeouts.header));
  HM_TRY_VOID(r.duration("body_timeout", s.timeouts.body));
  HM_TRY_VOID(r.duration("idle_timeout", s.timeouts.idle));
  HM_TRY_VOID(r.duration("write_timeout", s.timeouts.write));
  HM_TRY_VOID(r.duration("drain_timeout", s.timeouts.drain));
  if (r.has("drain_delay")) {
    std::string text;
    HM_TRY_VOID(r.string("drain_delay", text));
    if (text != "0") HM_TRY_VOID(r.duration("drain_delay", s.timeouts.drain_delay));
    if (text == "0") s.timeouts.drain_delay = milliseconds{0};
  }
  if (r.has("proxy")) {
    const auto* p = r.table("proxy");
    if (p == nullptr) return std::unexpected(r.error("proxy", "must be a table"));
    const Reader pr(*p, fmt::format("{}: [server.proxy]", origin));
    HM_TRY_VOID(pr.known({"trusted_fingerprints", "trusted_cas", "header"}));
    auto& tp = s.trusted_proxies;
    HM_TRY_VOID(pr.strings("trusted_fingerprints", tp.fingerprints));
    for (auto& f : tp.fingerprints) {
      auto bytes = parse_hex(f);
      if (!bytes || bytes->size() != 32) {
        return std::unexpected(pr.error("trusted_fingerprints",
                                        fmt::format("'{}' is not a SHA-256 fingerprint (64 hex digits)", f)));
      }
      f = to_hex(*bytes);
    }
    HM_TRY_VOID(pr.strings("trusted_cas", out.trusted_proxy_cas));
    HM_TRY_VOID(pr.string("header", tp.header));
    const bool token = !tp.header.empty() && std::all_of(tp.header.begin(), tp.header.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (!token)
      return std::unexpected(pr.error("header", fmt::format("'{}' is not a header name", tp.header)));
  }
  return {};
}

Result<ra::AliasPolicy> parse_alias(const toml::table& t, std::string_view name, std::string_view origin) {
  const Reader r(t, fmt::format("{}: [est.alias.{}]", origin, name));
  ra::AliasPolicy p;
  p.name = std::string(name);
  if (!ra::is_valid_alias_name(name)) {
    return fail(Errc::invalid_input,
                fmt::format("{}: [est.alias.{}] invalid alias name: use 1-63 of a-z 0-9 -", origin, name));
  }
  HM_TRY_VOID(r.known({"ca",
                       "profile",
                       "authenticators",
                       "enroll_anchors",
                       "reenroll_cas",
                       "ukid_field",
                       "secret_field",
                       "subject_serial",
                       "after_issue",
                       "pop_linking",
                       "allow_key_reuse",
                       "allow_reissue",
                       "lifetime",
                       "renewal_window",
                       "grace_period",
                       "recovery_through_bc",
                       "base64_wrap",
                       "serverkeygen",
                       "serverkeygen_key_type",
                       "variables",
                       "pin_lite_devices"}));
  if (!r.has("ca")) return std::unexpected(r.error("ca", "is required (the issuing CA's name)"));
  HM_TRY_VOID(r.string("ca", p.ca));
  HM_TRY_VOID(r.string("profile", p.profile));
  if (r.has("authenticators")) {
    std::vector<std::string> names;
    HM_TRY_VOID(r.strings("authenticators", names));
    p.authenticators.clear();
    for (const auto& n : names) {
      auto a = ra::parse_authenticator(n);
      if (!a) return std::unexpected(r.error("authenticators", a.error().detail));
      if (!p.allows(*a)) p.authenticators.push_back(*a);
    }
  }
  HM_TRY_VOID(r.strings("enroll_anchors", p.enroll_anchors));
  HM_TRY_VOID(r.strings("reenroll_cas", p.reenroll_cas));
  HM_TRY_VOID(r.string("ukid_field", p.ukid_field));
  if (r.has("secret_field")) {
    std::string f;
    HM_TRY_VOID(r.string("secret_field", f));
    p.secret_field = f;
  }
  const auto enum_field = [&r](std::string_view key, auto parse, auto& out) -> Status {
    if (!r.has(key)) return {};
    std::string text;
    HM_TRY_VOID(r.string(key, text));
    auto v = parse(text);
    if (!v) return std::unexpected(invalid(fmt::format("{} {}", r.where(), v.error().detail)));
    out = *v;
    return {};
  };
  HM_TRY_VOID(enum_field("subject_serial", ra::parse_serial_source, p.subject_serial));
  HM_TRY_VOID(enum_field("after_issue", ra::parse_after_issue, p.after_issue));
  HM_TRY_VOID(enum_field("pop_linking", ra::parse_pop_linking, p.pop_linking));
  HM_TRY_VOID(r.boolean("allow_key_reuse", p.allow_key_reuse));
  HM_TRY_VOID(r.boolean("allow_reissue", p.allow_reissue));
  HM_TRY_VOID(r.boolean("recovery_through_bc", p.recovery_through_bc));
  HM_TRY_VOID(r.boolean("pin_lite_devices", p.pin_lite_devices));
  HM_TRY_VOID(r.boolean("base64_wrap", p.base64_wrap));
  HM_TRY_VOID(r.boolean("serverkeygen", p.serverkeygen));
  if (r.has("serverkeygen_key_type")) {
    std::string text;
    HM_TRY_VOID(r.string("serverkeygen_key_type", text));
    auto k = crypto::parse_key_type(text);
    if (!k) return std::unexpected(r.error("serverkeygen_key_type", k.error().detail));
    p.serverkeygen_key_type = *k;
  }
  const auto window = [&r](std::string_view key,
                           bool forever) -> Result<std::optional<std::chrono::seconds>> {
    if (!r.has(key)) return std::optional<std::chrono::seconds>{};
    std::string text;
    HM_TRY_VOID(r.string(key, text));
    auto d = parse_duration(text, forever);
    if (!d) return std::unexpected(r.error(key, d.error().detail));
    if (!*d) return std::optional<std::chrono::seconds>{};
    if (to_seconds(**d).count() <= 0) return std::unexpected(r.error(key, "must be at least 1s"));
    return std::optional(to_seconds(**d));
  };
  p.lifetime = HM_TRY(window("lifetime", true));
  p.renewal_window = HM_TRY(window("renewal_window", false));
  if (auto g = HM_TRY(window("grace_period", false))) p.grace_period = *g;
  if (r.has("variables")) {
    const auto* v = r.table("variables");
    if (v == nullptr) return std::unexpected(r.error("variables", "must be a table of strings"));
    for (const auto& [k, val] : *v) {
      const auto* s = val.as_string();
      if (s == nullptr)
        return std::unexpected(r.error("variables", fmt::format("'{}' must be a string", k.str())));
      if (k.str() == "serial" || k.str() == "hw_serial") {
        return std::unexpected(
            r.error("variables", fmt::format("'{}' comes from the device, not the alias", k.str())));
      }
      p.variables[std::string(k.str())] = s->get();
    }
  }
  if (auto ok = p.validate(); !ok)
    return fail(Errc::invalid_input, fmt::format("{}: {}", origin, ok.error().detail));
  return p;
}

Status parse_est(const toml::table& t, std::string_view origin, ServeConfig& out) {
  const Reader r(t, fmt::format("{}: [est]", origin));
  HM_TRY_VOID(r.known({"default_alias", "alias"}));
  HM_TRY_VOID(r.string("default_alias", out.default_alias));
  if (r.has("alias")) {
    const auto* aliases = r.table("alias");
    if (aliases == nullptr)
      return std::unexpected(r.error("alias", "must be a table of [est.alias.<name>] tables"));
    for (const auto& [k, v] : *aliases) {
      const auto* at = v.as_table();
      if (at == nullptr) {
        return fail(Errc::invalid_input, fmt::format("{}: [est.alias.{}] must be a table", origin, k.str()));
      }
      out.aliases.push_back(HM_TRY(parse_alias(*at, k.str(), origin)));
    }
  }
  std::sort(out.aliases.begin(), out.aliases.end(),
            [](const ra::AliasPolicy& a, const ra::AliasPolicy& b) { return a.name < b.name; });
  if (out.default_alias.empty() && out.aliases.size() == 1) out.default_alias = out.aliases.front().name;
  if (!out.default_alias.empty() &&
      std::none_of(out.aliases.begin(), out.aliases.end(),
                   [&](const ra::AliasPolicy& a) { return a.name == out.default_alias; })) {
    return fail(Errc::invalid_input, fmt::format("{}: [est] default_alias '{}' names no [est.alias.{}] table",
                                                 origin, out.default_alias, out.default_alias));
  }
  return {};
}

}  // namespace

Result<std::optional<milliseconds>> parse_duration(std::string_view text, bool allow_forever) {
  if (allow_forever && text == "forever") return std::optional<milliseconds>{};
  const auto bad = [&] {
    return fail(Errc::invalid_input,
                fmt::format("'{}' is not a duration (use <N>y, <N>d, <N>h, <N>m, <N>s or <N>ms{})", text,
                            allow_forever ? ", or \"forever\"" : ""));
  };
  std::int64_t n = 0;
  const auto* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc() || p == text.data() || n < 0) return bad();
  const std::string_view unit(p, static_cast<std::size_t>(end - p));
  std::int64_t ms_per = 0;
  if (unit == "ms") {
    ms_per = 1;
  } else if (unit == "s") {
    ms_per = 1000;
  } else if (unit == "m") {
    ms_per = 60'000;
  } else if (unit == "h") {
    ms_per = 3'600'000;
  } else if (unit == "d") {
    ms_per = 86'400'000;
  } else if (unit == "y") {
    ms_per = 365 * std::int64_t{86'400'000};
  } else {
    return bad();
  }
  if (n > std::numeric_limits<std::int64_t>::max() / ms_per) return bad();
  return std::optional(milliseconds{n * ms_per});
}

Result<ServeConfig> parse_serve_config(std::string_view toml_text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return fail(Errc::invalid_input, fmt::format("{}:{}:{}: {}", origin, e.source().begin.line,
                                                 e.source().begin.column, e.description()));
  }
  ServeConfig out;
  out.server.tls_cert = "tls/server.pem";
  out.server.tls_key = "tls/server.key";
  if (const auto* n = root.get("server")) {
    const auto* t = n->as_table();
    if (t == nullptr) return fail(Errc::invalid_input, fmt::format("{}: [server] must be a table", origin));
    HM_TRY_VOID(parse_server(*t, origin, out));
  }
  if (const auto* n = root.get("est")) {
    const auto* t = n->as_table();
    if (t == nullptr) return fail(Errc::invalid_input, fmt::format("{}: [est] must be a table", origin));
    HM_TRY_VOID(parse_est(*t, origin, out));
  }
  return out;
}

}  // namespace hallmark::est

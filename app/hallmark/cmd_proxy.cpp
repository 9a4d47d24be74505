// hallmark proxy issue-cert | nginx-config: nginx as the mTLS-terminating reverse proxy in front of
// `hallmark serve` (DESIGN.md §5, docs/proxy.md). The proxy authenticates to hallmark with its own
// client certificate and forwards the device's verified certificate in a header.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>

#include "cli.hpp"
#include "db.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/est/config.hpp"
#include "home.hpp"
#include "output.hpp"

namespace hallmark::app {

namespace {

namespace fs = std::filesystem;

// Files of the proxy, in <home>/proxy/.
constexpr const char* kClientCert = "proxy/client.pem";
constexpr const char* kClientKey = "proxy/client.key";
constexpr const char* kPassphrase = "proxy/passphrase";
constexpr const char* kServerKey = "proxy/server.key";
constexpr const char* kClientCas = "proxy/client-cas.pem";
constexpr const char* kUpstreamCas = "proxy/upstream-cas.pem";
constexpr const char* kCrl = "crl/nginx.pem";
constexpr const char* kDefaultProxyCa = "proxy";

std::string in_home(const PkiHome& home, const std::string& path) {
  const fs::path p(path);
  return p.is_relative() ? (home.dir() / p).string() : path;
}

// The passphrase of the proxy's keys: its own, so that nginx never holds the CA key passphrase.
// Created (0600) when absent.
Result<Secret> proxy_passphrase(const PkiHome& home) {
  const auto path = in_home(home, kPassphrase);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    fs::create_directories(fs::path(path).parent_path(), ec);
    const auto pass = crypto::base64url_encode(crypto::random_bytes(32));
    HM_TRY_VOID(write_file_atomic(path, as_bytes(pass + "\n"), 0600));
  }
  return read_secret("file:" + path);
}

// [server] tls_key_passphrase, else [pki] key_passphrase; a relative file: is relative to the home.
Result<Secret> server_key_passphrase(const PkiHome& home, const http::ServerConfig& server) {
  auto secret = read_secret(home.secret_source(
      server.tls_key_passphrase.empty() ? home.config().key_passphrase : server.tls_key_passphrase));
  if (!secret) return std::unexpected(secret.error().with_context("TLS key passphrase"));
  return secret;
}

// ---------------------------------------------------------------------------------------------------
// hallmark proxy issue-cert

struct IssueOptions {
  std::string ca = kDefaultProxyCa;
  std::string cn = "hallmark reverse proxy";
  bool force = false;
};

Status issue_cert(const PkiHome& home, const std::string& db_override, const IssueOptions& options) {
  const SystemClock clock;
  const auto cert_path = in_home(home, kClientCert);
  std::error_code ec;
  if (fs::exists(cert_path, ec) && !options.force) {
    return fail(Errc::conflict,
                fmt::format("{} already exists; pass --force to replace it (and update [server.proxy] if "
                            "it is pinned by fingerprint)",
                            kClientCert));
  }
  auto ca = home.find_ca(options.ca);
  if (!ca && ca.error().code == Errc::not_found && options.ca == kDefaultProxyCa) {
    // A CA that issues proxy certificates only: trusting it as [server.proxy] trusted_cas then trusts
    // nothing else (the TLS CA also issues hallmark's own server certificate).
    const auto root = HM_TRY(home.find_ca_by_role("root"));
    auto db = HM_TRY(open_database(home, db_override));
    auto created = HM_TRY(home.create_ca(kDefaultProxyCa, "tls", root.name,
                                         fmt::format("{} Proxy CA", home.config().organization),
                                         home.config().key_type, clock));
    HM_TRY_VOID(register_ca(*db, home, created));
    fmt::print(stderr, "Created CA {}: {}\n", created.name, summary(created.certificate));
    ca = std::move(created);
  }
  if (!ca) return std::unexpected(ca.error());
  const auto signer = HM_TRY(home.load_signer(*ca));
  const auto profile = HM_TRY(home.load_profile("proxy-client"));
  const auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  const ca::Issuer issuer(ca->certificate, signer, clock);
  const auto cert = HM_TRY(issuer.issue(
      ca::IssueRequest{
          key.public_key(),
          {{"cn", options.cn}, {"org", home.config().organization}, {"product", home.config().product}},
          std::nullopt,
          std::nullopt},
      profile));
  const auto passphrase = HM_TRY(proxy_passphrase(home));
  HM_TRY_VOID(crypto::save_private_key(in_home(home, kClientKey), key, &passphrase, crypto::Kdf::scrypt));
  // The chain without its self-signed root, which hallmark already holds.
  std::string pem = cert.to_pem();
  for (const auto& c : HM_TRY(home.chain_of(ca->name))) {
    if (!c.is_self_issued()) pem += c.to_pem();
  }
  HM_TRY_VOID(write_file_atomic(cert_path, as_bytes(pem)));
  fmt::print("Issued proxy client certificate {} (serial {}) by CA {}\n", cert.subject().to_string(),
             cert.serial_hex(), ca->name);
  fmt::print("  certificate: {}\n  key:         {} (encrypted; passphrase in {})\n", cert_path,
             in_home(home, kClientKey), in_home(home, kPassphrase));
  fmt::print("  sha256:      {}\n\n", cert.fingerprint_sha256_hex());
  fmt::print(
      "hallmark trusts the proxy only once hallmark.toml says so; add one of these to [server.proxy]\n"
      "and restart `hallmark serve`:\n"
      "  trusted_cas = [\"{}\"]{}\n"
      "  trusted_fingerprints = [\"{}\"]\n",
      ca->name, ca->name == kDefaultProxyCa ? "" : "   # only if this CA issues proxy certificates only",
      cert.fingerprint_sha256_hex());
  return {};
}

// ---------------------------------------------------------------------------------------------------
// hallmark proxy nginx-config

struct NginxOptions {
  std::string upstream;
  std::vector<std::string> aliases;
  std::string listen = "443";
  std::vector<std::string> server_names;
  std::string out;
};

struct Upstream {
  std::string host;  // as written; an IPv6 literal keeps its brackets
  std::uint16_t port = 443;
  bool is_ip = false;
};

Result<Upstream> parse_upstream(std::string_view url) {
  const auto bad = [&](std::string_view why) {
    return fail(Errc::invalid_input, fmt::format("--upstream '{}': {}", url, why));
  };
  constexpr std::string_view kScheme = "https://";
  if (!url.starts_with(kScheme)) {
    return bad("must start with https:// (the proxy authenticates to hallmark with its client certificate)");
  }
  auto rest = url.substr(kScheme.size());
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#@ ") != std::string_view::npos)
    return bad("must be https://HOST[:PORT], no path");
  Upstream u;
  std::string_view port;
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    u.host = std::string(rest.substr(0, close + 1));
    u.is_ip = true;
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected :PORT after the IPv6 address");
      port = rest.substr(1);
    }
  } else {
    const auto colon = rest.find(':');
    u.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
    u.is_ip = u.host.find_first_not_of("0123456789.") == std::string::npos;
  }
  if (u.host.empty() || u.host == "[]") return bad("no host");
  if (!port.empty() || rest.ends_with(':')) {
    unsigned value = 0;
    const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535)
      return bad("port must be 1-65535");
    u.port = static_cast<std::uint16_t>(value);
  }
  return u;
}

void add_unique(std::vector<x509::Certificate>& list, const x509::Certificate& c) {
  if (std::find(list.begin(), list.end(), c) == list.end()) list.push_back(c);
}

// A path as an nginx quoted string.
std::string quoted(const std::string& path) {
  std::string out = "\"";
  for (char c : path) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string ms(std::chrono::milliseconds d) {
  return d.count() % 1000 == 0 ? fmt::format("{}s", d.count() / 1000) : fmt::format("{}ms", d.count());
}

// Values that go into the configuration verbatim: no whitespace, quotes, ';', braces or '$'.
Status check_token(std::string_view option, std::string_view value) {
  const bool ok = !value.empty() && std::ranges::all_of(value, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("._-:[]*~").find(c) != std::string_view::npos;
  });
  if (!ok) return fail(Errc::invalid_input, fmt::format("{} '{}': not a valid nginx value", option, value));
  return {};
}

Result<std::string> render_nginx(const PkiHome& home, const NginxOptions& options) {
  const auto upstream = HM_TRY(parse_upstream(options.upstream));
  HM_TRY_VOID(check_token("--upstream", upstream.host));
  HM_TRY_VOID(check_token("--listen", options.listen));
  for (const auto& n : options.server_names) HM_TRY_VOID(check_token("--server-name", n));
  const auto text = HM_TRY(read_text_file((home.dir() / "hallmark.toml").string()));
  auto config = HM_TRY(est::parse_serve_config(text, "hallmark.toml"));
  const auto& server = config.server;

  // The aliases served through this proxy: the named ones, else all.
  std::vector<ra::AliasPolicy> aliases;
  if (config.aliases.empty()) {
    // `hallmark serve`'s built-in alias: the IDC CA issues, the BC CA anchors birth certificates.
    ra::AliasPolicy p;
    p.name = "default";
    p.ca = HM_TRY(home.find_ca_by_role("idc")).name;
    p.enroll_anchors = {HM_TRY(home.find_ca_by_role("bc")).name};
    config.aliases.push_back(std::move(p));
  }
  for (const auto& name : options.aliases) {
    const auto it = std::find_if(config.aliases.begin(), config.aliases.end(),
                                 [&](const ra::AliasPolicy& a) { return a.name == name; });
    if (it == config.aliases.end()) {
      return fail(Errc::not_found,
                  fmt::format("--alias {}: hallmark.toml has no [est.alias.{}]", name, name));
    }
    aliases.push_back(*it);
  }
  if (aliases.empty()) aliases = config.aliases;

  // ssl_client_certificate: every BC anchor and IDC CA of those aliases, each with its chain, so
  // nginx can build a path from a device that sends only its leaf. hallmark then checks each
  // operation's own trust list; nginx only decides that the certificate is genuine.
  std::vector<x509::Certificate> client_cas;
  std::size_t depth = 1;
  std::vector<std::string> names;
  for (const auto& a : aliases) {
    names.push_back(a.name);
    const auto reenroll = a.reenroll_cas.empty() ? std::vector<std::string>{a.ca} : a.reenroll_cas;
    for (const auto* list : {&a.enroll_anchors, &reenroll}) {
      for (const auto& ca : *list) {
        auto chain = home.chain_of(ca);
        if (!chain) {
          return fail(Errc::invalid_input,
                      fmt::format("hallmark.toml: [est.alias.{}] {}: {}", a.name, ca, chain.error().detail));
        }
        depth = std::max(depth, chain->size());
        for (const auto& c : *chain) add_unique(client_cas, c);
      }
    }
  }
  std::string client_cas_pem;
  for (const auto& c : client_cas) client_cas_pem += c.to_pem();

  // hallmark's server certificate: nginx offers the same one to devices, and verifies hallmark's
  // with its CAs (the chain after the leaf).
  const auto tls_cert = in_home(home, server.tls_cert);
  const auto tls_key = in_home(home, server.tls_key);
  const auto server_chain = HM_TRY(x509::Certificate::parse_pem_chain(HM_TRY(read_text_file(tls_cert))));
  if (server_chain.size() < 2) {
    return fail(Errc::invalid_input,
                fmt::format("{}: needs the server certificate followed by its CA chain", tls_cert));
  }
  std::string upstream_cas_pem;
  for (std::size_t i = 1; i < server_chain.size(); ++i) upstream_cas_pem += server_chain[i].to_pem();
  // nginx checks the upstream's name with X509_check_host, which matches DNS names only: with an IP
  // upstream it checks one of the certificate's DNS names instead.
  std::string ssl_name = upstream.host;
  if (upstream.is_ip) {
    if (const auto san = server_chain.front().subject_alt_name()) {
      for (const auto& n : san->names) {
        if (n.kind == x509::GeneralName::Kind::dns) {
          ssl_name = n.value;
          break;
        }
      }
    }
  }

  // The proxy's own client certificate (hallmark proxy issue-cert) and whether hallmark trusts it.
  const auto client_cert_path = in_home(home, kClientCert);
  std::error_code ec;
  if (!fs::exists(client_cert_path, ec)) {
    return fail(Errc::not_found, fmt::format("no proxy client certificate ({}); run 'hallmark proxy "
                                             "issue-cert' first",
                                             client_cert_path));
  }
  const auto proxy_chain =
      HM_TRY(x509::Certificate::parse_pem_chain(HM_TRY(read_text_file(client_cert_path))));
  if (proxy_chain.empty())
    return fail(Errc::invalid_input, fmt::format("{}: no certificate", client_cert_path));
  const auto& proxy_cert = proxy_chain.front();
  bool trusted =
      std::ranges::find(server.trusted_proxies.fingerprints, proxy_cert.fingerprint_sha256_hex()) !=
      server.trusted_proxies.fingerprints.end();
  for (const auto& name : config.trusted_proxy_cas) {
    auto ca = home.find_ca(name);
    if (!ca) {
      return fail(Errc::invalid_input,
                  fmt::format("hallmark.toml: [server.proxy] trusted_cas: {}", ca.error().detail));
    }
    trusted |= proxy_cert.issuer() == ca->certificate.subject();
  }
  if (!trusted) {
    fmt::print(stderr,
               "hallmark: note: hallmark.toml does not trust {} yet; add to [server.proxy] "
               "trusted_fingerprints = [\"{}\"] (or its CA to trusted_cas) and restart hallmark serve\n",
               kClientCert, proxy_cert.fingerprint_sha256_hex());
  }

  // Files nginx reads: the server key re-encrypted under the proxy's own passphrase.
  const auto passphrase = HM_TRY(proxy_passphrase(home));
  {
    const auto tls_pass = HM_TRY(server_key_passphrase(home, server));
    const auto key_text = HM_TRY(read_text_file(tls_key));
    auto parsed = crypto::PrivateKey::parse_pem(key_text, &tls_pass);
    if (!parsed) return std::unexpected(parsed.error().with_context(tls_key));
    HM_TRY_VOID(
        crypto::save_private_key(in_home(home, kServerKey), *parsed, &passphrase, crypto::Kdf::scrypt));
  }
  HM_TRY_VOID(write_file_atomic(in_home(home, kClientCas), as_bytes(client_cas_pem)));
  HM_TRY_VOID(write_file_atomic(in_home(home, kUpstreamCas), as_bytes(upstream_cas_pem)));

  const auto crl = in_home(home, kCrl);
  const bool have_crl = fs::exists(crl, ec);
  const auto& header = server.trusted_proxies.header;
  const auto& t = server.timeouts;
  const auto server_names = options.server_names.empty()
                                ? std::string("_")
                                : fmt::format("{}", fmt::join(options.server_names, " "));
  // Allowed depth: the longest CA chain plus the device's own certificate.
  const auto verify_depth = depth + 1;

  std::string o;
  auto line = [&o](std::string_view s) {
    o += s;
    o += '\n';
  };
  line("# nginx in front of `hallmark serve`: written by `hallmark proxy nginx-config` (see docs/proxy.md).");
  line(fmt::format("# Include it in the http {{}} block. Aliases: {}. Upstream: {}.", fmt::join(names, ", "),
                   options.upstream));
  line("# Regenerate it after changing aliases, CAs, the server certificate or the CRL file.");
  line("");
  line("upstream hallmark_est {");
  line(fmt::format("    server {}:{};", upstream.host, upstream.port));
  line("    keepalive 32;");
  line("}");
  line("");
  line("server {");
  line(fmt::format("    listen {} ssl;", options.listen));
  line(fmt::format("    server_name {};", server_names));
  line("");
  line("    # TLS towards devices, with hallmark's own server certificate.");
  line(fmt::format("    ssl_certificate {};", quoted(tls_cert)));
  line(fmt::format("    ssl_certificate_key {};", quoted(in_home(home, kServerKey))));
  line(fmt::format("    ssl_password_file {};", quoted(in_home(home, kPassphrase))));
  line(server.min_tls_version == http::TlsVersion::tls1_3 ? "    ssl_protocols TLSv1.3;"
                                                          : "    ssl_protocols TLSv1.2 TLSv1.3;");
  line(fmt::format("    ssl_ecdh_curve {};", server.groups));
  line(fmt::format("    ssl_ciphers {};", server.ciphers_tls12));
  line("    ssl_prefer_server_ciphers on;");
  line(server.session_tickets ? "    ssl_session_tickets on;" : "    ssl_session_tickets off;");
  line("");
  line("    # Client certificates are requested, not demanded: one listener serves enroll (birth");
  line("    # certificate) and re-enroll (IDC). hallmark checks each operation's own trust list.");
  line("    ssl_verify_client optional;");
  line(fmt::format("    ssl_verify_depth {};", verify_depth));
  line(fmt::format("    ssl_client_certificate {};", quoted(in_home(home, kClientCas))));
  if (have_crl) {
    line("    # Every CA of a client's chain needs its CRL in this file (nginx checks them all).");
    line(fmt::format("    ssl_crl {};", quoted(crl)));
  } else {
    line(fmt::format("    # ssl_crl {};  (absent when this was written; regenerate once it exists)",
                     quoted(crl)));
  }
  line("");
  line("    # Limits and timeouts, as hallmark's [server].");
  line(fmt::format("    client_max_body_size {};", server.max_body_bytes));
  line("    client_body_buffer_size 64k;");
  line(fmt::format("    large_client_header_buffers 4 {}k;",
                   std::max<std::size_t>(1, server.max_header_bytes / 1024)));
  line(fmt::format("    client_header_timeout {};", ms(t.header)));
  line(fmt::format("    client_body_timeout {};", ms(t.body)));
  line(fmt::format("    keepalive_timeout {};", ms(t.idle)));
  line(fmt::format("    send_timeout {};", ms(t.write)));
  line("");
  line("    location /.well-known/est/ {");
  line("        proxy_pass https://hallmark_est;");
  line("        proxy_http_version 1.1;");
  line("        proxy_set_header Connection \"\";");
  line("        proxy_set_header Host $host;");
  line("        # The verified device certificate, URL-encoded PEM. proxy_set_header replaces a header of");
  line("        # this name sent by the client, and an empty value (no client certificate) sends none.");
  line(fmt::format("        proxy_set_header {} $ssl_client_escaped_cert;", header));
  line("        proxy_set_header X-Request-Id $request_id;");
  line("        proxy_set_header X-Forwarded-For $remote_addr;");
  line("        proxy_set_header X-Forwarded-Proto https;");
  line("");
  line("        # TLS towards hallmark: the proxy's own client certificate, hallmark's verified.");
  line(fmt::format("        proxy_ssl_certificate {};", quoted(client_cert_path)));
  line(fmt::format("        proxy_ssl_certificate_key {};", quoted(in_home(home, kClientKey))));
  line(fmt::format("        proxy_ssl_password_file {};", quoted(in_home(home, kPassphrase))));
  line(fmt::format("        proxy_ssl_trusted_certificate {};", quoted(in_home(home, kUpstreamCas))));
  line("        proxy_ssl_verify on;");
  line(fmt::format("        proxy_ssl_verify_depth {};", server_chain.size()));
  line(fmt::format("        proxy_ssl_name {};", ssl_name));
  line("        proxy_ssl_protocols TLSv1.2 TLSv1.3;");
  line("        proxy_ssl_session_reuse on;");
  line("        proxy_connect_timeout 5s;");
  line(fmt::format("        proxy_send_timeout {};", ms(t.body)));
  line("        # An enrollment waits for a durable commit.");
  line(fmt::format("        proxy_read_timeout {};",
                   ms(std::max(t.write, std::chrono::milliseconds{60'000}))));
  line("        proxy_request_buffering on;");
  line("        proxy_buffering off;");
  line("        proxy_next_upstream off;  # never replay an enrollment");
  line("    }");
  line("");
  line("    location / {");
  line("        return 404;");
  line("    }");
  line("}");
  return o;
}

}  // namespace

void add_proxy_commands(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* proxy = app.add_subcommand("proxy", "Run hallmark behind an mTLS-terminating reverse proxy (nginx)");
  proxy->require_subcommand(1);
  {
    auto* cmd = proxy->add_subcommand(
        "issue-cert",
        "Issue the reverse proxy's own TLS client certificate (profile proxy-client) into proxy/client.pem\n"
        "and proxy/client.key (encrypted; passphrase in proxy/passphrase). With the default --ca, a\n"
        "CA named 'proxy' (under the root) is created first when missing. Prints the [server.proxy]\n"
        "lines that make hallmark trust it.");
    auto options = std::make_shared<IssueOptions>();
    cmd->add_option("--ca", options->ca, "Issuing CA (use one that issues proxy certificates only)")
        ->capture_default_str();
    cmd->add_option("--cn", options->cn, "Common name of the proxy certificate")->capture_default_str();
    cmd->add_flag("--force", options->force, "Replace an existing proxy/client.pem");
    cmd->callback([&global, &status, options] {
      auto home = PkiHome::open(global.home);
      if (!home) {
        status = report(home.error());
        return;
      }
      if (auto r = issue_cert(*home, global.db, *options); !r) status = report(r.error());
    });
  }
  {
    auto* cmd = proxy->add_subcommand(
        "nginx-config",
        "Print an nginx configuration (upstream + server block, for the http {} context) that terminates\n"
        "the devices' mTLS and forwards their verified certificate to hallmark. Writes the files it\n"
        "references into proxy/: client-cas.pem, upstream-cas.pem, server.key (re-encrypted).\n"
        "Needs proxy/client.pem (hallmark proxy issue-cert).");
    auto options = std::make_shared<NginxOptions>();
    cmd->add_option("--upstream", options->upstream, "hallmark serve's URL, https://HOST:PORT")->required();
    cmd->add_option("--alias", options->aliases,
                    "EST alias served through the proxy (repeatable; default all)");
    cmd->add_option("--listen", options->listen, "nginx listen address: PORT or ADDRESS:PORT")
        ->capture_default_str();
    cmd->add_option("--server-name", options->server_names, "nginx server_name (repeatable; default _)");
    cmd->add_option("--out", options->out, "Write the configuration to this file (default: stdout)");
    cmd->callback([&global, &status, options] {
      auto r = [&]() -> Status {
        const auto home = HM_TRY(PkiHome::open(global.home));
        const auto text = HM_TRY(render_nginx(home, *options));
        return write_output(options->out, as_bytes(text));
      }();
      if (!r) status = report(r.error());
    });
  }
}

}  // namespace hallmark::app

// hallmark serve: the registration authority with its EST server, on the PKI home's CAs and store.
#include <fmt/format.h>
#include <signal.h>

#include <pthread.h>
#include <unistd.h>
#include <chrono>
#include <map>

#include "cli.hpp"
#include "db.hpp"
#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/est/config.hpp"
#include "hallmark/est/server.hpp"
#include "hallmark/http/router.hpp"
#include "hallmark/http/server.hpp"
#include "hallmark/ra/registrar.hpp"
#include "hallmark/revocation/config.hpp"
#include "hallmark/revocation/service.hpp"
#include "hallmark/store/store.hpp"
#include "home.hpp"
#include "revocation_cas.hpp"

namespace hallmark::app {

namespace {

namespace fs = std::filesystem;

struct ServeOptions {
  std::string home;  // `hallmark serve --home DIR` as well as `hallmark --home DIR serve`
  std::string port_file;
  std::string listen;
  int port = -1;
  std::string revocation_port_file;
  int revocation_port = -1;  // >= 0 turns the revocation listener on
};

// "host:pid:random": the name this node holds the CRL lease under.
std::string node_id() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return fmt::format("{}:{}:{}", host, ::getpid(), to_hex(crypto::random_bytes(4)));
}

std::string in_home(const PkiHome& home, const std::string& path) {
  if (path.empty()) return path;
  const fs::path p(path);
  return p.is_relative() ? (home.dir() / p).string() : path;
}

// With no [est.alias.*] table, one alias named "default": the home's IDC CA issues, its BC CA anchors
// birth certificates, which are revoked after issuance (Option 2, DESIGN.md §1).
Result<ra::AliasPolicy> default_alias_policy(const PkiHome& home) {
  const auto idc = HM_TRY(home.find_ca_by_role("idc"));
  const auto bc = HM_TRY(home.find_ca_by_role("bc"));
  ra::AliasPolicy p;
  p.name = "default";
  p.ca = idc.name;
  p.enroll_anchors = {bc.name};
  p.after_issue = ra::AfterIssue::revoke_bc;
  return p;
}

class Resolver {
 public:
  Resolver(const PkiHome& home, const Clock& clock) : home_(home), clock_(clock) {}

  Result<std::vector<x509::Certificate>> chain(const std::string& ca, std::string_view what,
                                               std::string_view alias) const {
    auto c = home_.chain_of(ca);
    if (!c) {
      return fail(Errc::invalid_input,
                  fmt::format("hallmark.toml: [est.alias.{}] {}: {}", alias, what, c.error().detail));
    }
    return c;
  }

  Result<std::shared_ptr<const ca::Issuer>> issuer(const std::string& name, std::string_view alias) {
    if (auto it = issuers_.find(name); it != issuers_.end()) return it->second;
    auto ca = home_.find_ca(name);
    if (!ca)
      return fail(Errc::invalid_input,
                  fmt::format("hallmark.toml: [est.alias.{}] ca: {}", alias, ca.error().detail));
    // Decrypted once at start; the key stays in memory for the life of the process.
    auto signer = home_.load_signer(*ca);
    if (!signer) return std::unexpected(signer.error().with_context(fmt::format("[est.alias.{}] ca", alias)));
    auto issuer = std::make_shared<const ca::Issuer>(ca->certificate, *signer, clock_);
    issuers_.emplace(name, issuer);
    return issuer;
  }

  Result<ra::Alias> alias(const ra::AliasPolicy& policy) {
    auto issuing = HM_TRY(issuer(policy.ca, policy.name));
    auto profile = home_.load_profile(policy.profile);
    if (!profile) {
      return fail(Errc::invalid_input, fmt::format("hallmark.toml: [est.alias.{}] profile: {}", policy.name,
                                                   profile.error().detail));
    }
    auto ca_chain = HM_TRY(chain(policy.ca, "ca", policy.name));
    std::vector<std::vector<x509::Certificate>> enroll;
    for (const auto& n : policy.enroll_anchors)
      enroll.push_back(HM_TRY(chain(n, "enroll_anchors", policy.name)));
    std::vector<std::vector<x509::Certificate>> reenroll;
    const auto reenroll_names =
        policy.reenroll_cas.empty() ? std::vector<std::string>{policy.ca} : policy.reenroll_cas;
    for (const auto& n : reenroll_names) reenroll.push_back(HM_TRY(chain(n, "reenroll_cas", policy.name)));
    auto a = ra::make_alias(policy, issuing, std::move(*profile), std::move(ca_chain), enroll, reenroll);
    if (!a) return fail(Errc::invalid_input, "hallmark.toml: " + a.error().detail);
    // The TLS layer requests client certificates under the union of every alias's anchors. The CAs
    // below the roots go in too, so a device that sends only its leaf still builds its path; each
    // operation then checks its own list (ra::make_alias).
    for (const auto* chains : {&enroll, &reenroll}) {
      for (const auto& c : *chains) {
        for (const auto& cert : c) add_anchor(cert);
      }
    }
    return a;
  }

  [[nodiscard]] const std::vector<x509::Certificate>& anchors() const { return anchors_; }

 private:
  void add_anchor(const x509::Certificate& c) {
    if (std::find(anchors_.begin(), anchors_.end(), c) == anchors_.end()) anchors_.push_back(c);
  }
  const PkiHome& home_;
  const Clock& clock_;
  std::map<std::string, std::shared_ptr<const ca::Issuer>> issuers_;
  std::vector<x509::Certificate> anchors_;
};

// The problem code of an error response, for the request log line.
std::string problem_code(const http::Response& r) {
  if (r.status < 400) return "-";
  const auto at = r.body.find("\"code\":\"");
  if (at == std::string::npos) return "-";
  const auto begin = at + 8;
  return r.body.substr(begin, r.body.find('"', begin) - begin);
}

Status serve(const PkiHome& home, const ServeOptions& options, const std::string& database_override) {
  const auto text = HM_TRY(read_text_file((home.dir() / "hallmark.toml").string()));
  auto config = HM_TRY(est::parse_serve_config(text, "hallmark.toml"));
  auto& server = config.server;
  if (!options.listen.empty()) server.listen = options.listen;
  if (options.port >= 0) server.port = static_cast<std::uint16_t>(options.port);
  server.tls_cert = in_home(home, server.tls_cert);
  server.tls_key = in_home(home, server.tls_key);
  server.tls_key_passphrase = home.secret_source(
      server.tls_key_passphrase.empty() ? home.config().key_passphrase : server.tls_key_passphrase);
  for (const auto& name : config.trusted_proxy_cas) {
    auto ca = home.find_ca(name);
    if (!ca) {
      return fail(Errc::invalid_input,
                  fmt::format("hallmark.toml: [server.proxy] trusted_cas: {}", ca.error().detail));
    }
    server.trusted_proxies.issuers.push_back(ca->certificate);
  }
  if (config.aliases.empty()) {
    config.aliases.push_back(HM_TRY(default_alias_policy(home)));
    config.default_alias = "default";
  }

  static const SystemClock clock;
  Resolver resolver(home, clock);
  std::vector<ra::Alias> aliases;
  for (const auto& p : config.aliases) aliases.push_back(HM_TRY(resolver.alias(p)));
  server.client_anchors = resolver.anchors();
  HM_TRY_VOID(http::validate(server));

  auto store = HM_TRY(open_database(home, database_override, SchemaPolicy::migrate));
  log::info("store_open", {{"backend", std::string(store->backend())}});

  // Revocation: CRLs and OCSP on a plain-HTTP listener of their own ([revocation], docs/revocation.md).
  auto revocation_config = HM_TRY(revocation::parse_revocation_config(text, "hallmark.toml"));
  if (options.revocation_port >= 0) {
    revocation_config.enabled = true;
    revocation_config.server.port = static_cast<std::uint16_t>(options.revocation_port);
  }
  std::unique_ptr<revocation::Service> revocation_service;
  std::unique_ptr<http::Server> revocation_server;
  http::Router revocation_router;
  if (revocation_config.enabled) {
    RevocationCaOptions ro;
    ro.crl_signers = true;
    ro.responders = true;
    ro.crl_cas = revocation_config.crl_cas;
    ro.ocsp_cas = revocation_config.ocsp_cas;
    revocation::ServiceOptions so;
    so.crl_interval = revocation_config.crl_interval;
    so.next_update = revocation_config.next_update;
    so.poll_interval = revocation_config.poll_interval;
    so.crl_dir = in_home(home, revocation_config.crl_dir);
    so.reload_command = revocation_config.crl_reload_command;
    so.node_id = node_id();
    so.responder.validity = revocation_config.ocsp_validity;
    revocation_service =
        std::make_unique<revocation::Service>(*store, HM_TRY(revocation_cas(home, ro, clock)), clock, so);
    HM_TRY_VOID(revocation_service->start());
    revocation_service->install(revocation_router);
  }

  ra::RegistrarOptions ro;
  ro.default_alias = config.default_alias;
  ro.variables = {{"org", home.config().organization}, {"product", home.config().product}};
  ro.on_bc_revoked = [&](const store::DeviceRecord& device, const std::string& request_id) {
    // The BC becomes a revoked certificate of the BC CA that issued it: on its next CRL and in OCSP.
    // Without the revocation service the flag stays; the service or `crl generate` records it later.
    if (!revocation_service) {
      log::info("bc_revoked", {{"request_id", request_id},
                               {"device", device.vendor_unique_id},
                               {"bc_sha256", device.bc_sha256},
                               {"crl", "on the next revocation service start or crl generate"}});
      return;
    }
    if (auto recorded = revocation_service->revoke_bc(device, request_id); !recorded) {
      // The device stays flagged; the revocation service records it when it follows the audit log.
      log::warn("bc_revocation_record_failed", {{"request_id", request_id},
                                                {"device", device.vendor_unique_id},
                                                {"error", recorded.error().detail}});
      return;
    }
    log::info(
        "bc_revoked",
        {{"request_id", request_id}, {"device", device.vendor_unique_id}, {"bc_sha256", device.bc_sha256}});
  };
  ra::Registrar registrar(*store, clock, std::move(aliases), ro);
  const est::EstService service(registrar);
  http::Router router;
  service.install(router);
  // Hook: the admin API and /metrics install their routes here.

  const http::Handler handler = [&router](const http::Request& r) {
    const auto start = std::chrono::steady_clock::now();
    auto response = router(r);
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)
            .count();
    log::info("request", {{"request_id", r.request_id},
                          {"method", r.method},
                          {"path", std::string(r.path())},
                          {"status", std::to_string(response.status)},
                          {"problem", problem_code(response)},
                          {"remote", r.peer.remote_address},
                          {"proxy", r.peer.via_proxy ? "yes" : "no"},
                          {"us", std::to_string(us)}});
    return response;
  };

  // Signals are taken by a sigwait loop on this thread: block them before the server's threads exist.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  server.answers_inline = est::EstService::answers_without_store;
  auto running = HM_TRY(http::Server::start(server, handler));
  const auto port = std::to_string(running->port());
  if (revocation_service) {
    const http::Handler revocation_handler = [&revocation_router](const http::Request& r) {
      auto response = revocation_router(r);
      log::debug("request", {{"request_id", r.request_id},
                             {"method", r.method},
                             {"path", std::string(r.path().substr(0, 64))},
                             {"status", std::to_string(response.status)},
                             {"remote", r.peer.remote_address}});
      return response;
    };
    revocation_server = HM_TRY(http::Server::start(revocation_config.server, revocation_handler));
    const auto rport = std::to_string(revocation_server->port());
    if (!options.revocation_port_file.empty())
      HM_TRY_VOID(write_file_atomic(options.revocation_port_file, as_bytes(rport + "\n")));
    log::info("revocation_ready", {{"address", revocation_config.server.listen}, {"port", rport}});
  }
  if (!options.port_file.empty()) HM_TRY_VOID(write_file_atomic(options.port_file, as_bytes(port + "\n")));
  std::vector<std::string> names = registrar.alias_names();
  log::info("serve_ready", {{"address", server.listen},
                            {"port", port},
                            {"aliases", fmt::format("{}", fmt::join(names, ","))},
                            {"default_alias", config.default_alias.empty() ? "-" : config.default_alias}});

  int sig = 0;
  sigwait(&signals, &sig);
  log::info("serve_stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  running->stop();
  running.reset();
  if (revocation_server) revocation_server->stop();
  revocation_server.reset();
  if (revocation_service) revocation_service->stop();
  log::info("serve_stopped");
  return {};
}

}  // namespace

void add_serve_command(CLI::App& app, const GlobalOptions& global, int& status) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Run the registration authority: RFC 7030 EST over HTTPS ([server] and [est] of hallmark.toml).\n"
      "Stops gracefully on SIGTERM or SIGINT.");
  auto options = std::make_shared<ServeOptions>();
  cmd->add_option("--home", options->home, "PKI home directory (same as the global --home)");
  cmd->add_option("--port-file", options->port_file, "Write the bound port here once listening (for port 0)");
  cmd->add_option("--listen", options->listen, "Listen address (overrides [server] listen)");
  cmd->add_option("--port", options->port, "Port (overrides [server] port; 0 = any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--revocation-port", options->revocation_port,
                  "Plain-HTTP port for /crl and /ocsp (turns the listener on; overrides [revocation] port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--revocation-port-file", options->revocation_port_file,
                  "Write the revocation listener's bound port here once listening");
  cmd->callback([&global, &status, options] {
    auto home = PkiHome::open(options->home.empty() ? global.home : options->home);
    if (!home) {
      status = report(home.error());
      return;
    }
    if (auto r = serve(*home, *options, global.db); !r) status = report(r.error());
  });
}

}  // namespace hallmark::app

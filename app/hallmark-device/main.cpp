// hallmark-device: the device agent (UKID, enroll, re-enroll, renew, status) and the fleet simulator.
// It links only what a device needs: no store, RA, EST server or database code.
#include <fmt/format.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <random>
#include <thread>

#include "hallmark/core/exit_code.hpp"
#include "hallmark/core/log.hpp"
#include "hallmark/device/agent.hpp"
#include "hallmark/device/fleet.hpp"

namespace hallmark::device_app {

namespace {

using namespace hallmark::device;
using std::chrono::milliseconds;

int report(const Error& error) {
  return report_error("hallmark-device", error);
}

// "<N>ms", "<N>s", "<N>m", "<N>h", "<N>d".
Result<milliseconds> parse_duration(std::string_view text, std::string_view option) {
  long long n = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(p, text.data() + text.size());
  long long scale = 0;
  if (unit == "ms") scale = 1;
  if (unit == "s") scale = 1000;
  if (unit == "m") scale = 60'000;
  if (unit == "h") scale = 3'600'000;
  if (unit == "d") scale = 86'400'000;
  if (ec != std::errc() || n < 0 || scale == 0 || n > 100LL * 365 * 86'400'000 / scale) {
    return fail(Errc::invalid_input,
                fmt::format("{}: '{}' is not a duration (<N>ms, s, m, h or d)", option, text));
  }
  return milliseconds{n * scale};
}

Result<std::vector<x509::Certificate>> load_certs(const std::string& path, std::string_view what) {
  const auto text = read_text_file(path);
  if (!text) return fail(text.error().code, fmt::format("{} {}: {}", what, path, text.error().detail));
  auto certs = x509::Certificate::parse_pem_chain(*text);
  if (!certs) {
    // DER, one certificate
    auto one = x509::Certificate::parse(as_bytes(*text));
    if (!one) return fail(Errc::invalid_input, fmt::format("{} {}: no certificate", what, path));
    return std::vector<x509::Certificate>{*one};
  }
  return certs;
}

struct Common {
  std::string dir = ".";
  std::string max_wait = "5m";
  std::string timeout = "30s";
  std::string key_token;
  std::string pin_source;
  bool pop_linking = false;
  bool tls13 = false;
};

void add_common(CLI::App* cmd, Common& c, bool keys) {
  cmd->add_option("--dir", c.dir, "Device state directory (credentials are written here)")
      ->capture_default_str();
  cmd->add_option("--max-wait", c.max_wait, "Give up retrying after this long (e.g. 30s, 5m)")
      ->capture_default_str();
  cmd->add_option("--timeout", c.timeout, "Timeout of each network operation")->capture_default_str();
  cmd->add_flag("--tls13", c.tls13, "Refuse TLS 1.2");
  cmd->add_flag(
      "--pop-linking", c.pop_linking,
      "Put the channel binding in challengePassword (RFC 7030 3.5); an Option 3 secret then goes in "
      "HTTP Basic");
  if (keys) {
    cmd->add_option(
        "--key", c.key_token,
        "Generate the new IDC key in this PKCS#11 token (RFC 7512 URI, e.g. 'pkcs11:token=device'); "
        "default: a P-256 key file in the state directory");
  }
  cmd->add_option("--pin-source", c.pin_source, "PKCS#11 PIN: file:PATH or env:NAME");
}

Result<AgentOptions> agent_options(const Common& c) {
  AgentOptions o;
  o.dir = c.dir;
  o.retry.max_wait = HM_TRY(parse_duration(c.max_wait, "--max-wait"));
  o.timeout = HM_TRY(parse_duration(c.timeout, "--timeout"));
  if (o.timeout.count() == 0) return fail(Errc::invalid_input, "--timeout must be positive");
  o.new_key_token = c.key_token;
  o.pin_source = c.pin_source;
  o.pop_linking = c.pop_linking;
  o.tls13_only = c.tls13;
  return o;
}

void print_credentials(const Credentials& c, std::string_view what) {
  fmt::print("{}: {}\n  serial    {}\n  issuer    {}\n  not after {}{}\n  key       {}\n  files     {}\n",
             what, c.idc.subject().to_string(), c.idc.serial_hex(), c.idc.issuer().to_string(),
             to_iso8601(c.idc.not_after()), c.idc.has_no_expiry() ? " (no expiry)" : "", c.key, c.directory);
}

std::atomic<bool> stop_requested{false};
extern "C" void on_signal(int) {
  stop_requested = true;
}

// Sleeps up to `d`, waking early on SIGTERM/SIGINT; false when asked to stop.
bool sleep_for(std::chrono::seconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!stop_requested && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        std::chrono::milliseconds(200), until - std::chrono::steady_clock::now()));
  }
  return !stop_requested;
}

struct RenewArgs {
  std::string before;
  std::string jitter = "0s";
  bool force = false;
  bool daemon = false;
  bool recover = false;
};

// Re-enrolls; when the IDC expired past the grace period and recovery is on, enrolls through the BC.
Result<Credentials> renew_once(const AgentOptions& o, bool recover_through_bc) {
  auto r = reenroll(o);
  if (!r && recover_through_bc && r.error().detail.find("idc-expired") != std::string::npos) {
    log::warn("recovery", {{"reason", r.error().detail}});
    return recover(o);
  }
  return r;
}

int run_renew(const Common& common, const RenewArgs& a) {
  auto o = agent_options(common);
  if (!o) return report(o.error());
  RenewalPolicy policy;
  policy.force = a.force;
  if (!a.before.empty()) {
    auto b = parse_duration(a.before, "--before");
    if (!b) return report(b.error());
    policy.before = std::chrono::duration_cast<std::chrono::seconds>(*b);
  }
  auto jitter = parse_duration(a.jitter, "--jitter");
  if (!jitter) return report(jitter.error());
  std::mt19937_64 rng{std::random_device{}()};
  const auto jitter_seconds = [&] {
    const auto max = std::chrono::duration_cast<std::chrono::seconds>(*jitter).count();
    return std::chrono::seconds{max > 0 ? std::uniform_int_distribution<long>(0, max)(rng) : 0};
  };
  const SystemClock clock;
  ::signal(SIGTERM, on_signal);
  ::signal(SIGINT, on_signal);
  for (;;) {
    auto creds = load_credentials(o->dir);
    if (!creds) return report(creds.error());
    const auto now = clock.now();
    const auto at = renewal_time(creds->idc, policy, now);
    if (!at) {
      fmt::print("renew: the IDC has no expiry; nothing to renew (--force renews anyway)\n");
      return 0;
    }
    if (now < *at) {
      const auto wait = *at - now;
      if (!a.daemon) {
        fmt::print("renew: not due until {} (in {} s)\n", to_iso8601(*at), wait.count());
        return 0;
      }
      const auto j = jitter_seconds();
      log::info("renew-sleep", {{"until", to_iso8601(*at + j)}, {"jitter_s", std::to_string(j.count())}});
      if (!sleep_for(wait + j)) return 0;
      continue;
    }
    if (const auto j = jitter_seconds(); j.count() > 0 && !sleep_for(j)) return 0;
    auto r = renew_once(*o, a.recover);
    if (r) {
      print_credentials(*r, "renewed");
      std::fflush(stdout);
      if (!a.daemon) return 0;
      policy.force = false;
      // A profile whose backdate exceeds a third of the lifetime makes every new IDC due at once:
      // never renew more than once a minute.
      if (const auto next = renewal_time(r->idc, policy, clock.now()); next && *next <= clock.now()) {
        log::warn("renew-due-again", {{"serial", r->idc.serial_hex()}, {"retry_s", "60"}});
        if (!sleep_for(std::chrono::seconds{60} + jitter_seconds())) return 0;
      }
      continue;
    }
    if (!a.daemon) return report(r.error());
    log::error("renew-failed", {{"reason", r.error().detail}});
    if (!sleep_for(std::chrono::seconds{60} + jitter_seconds())) return 0;
  }
}

}  // namespace

}  // namespace hallmark::device_app

int main(int argc, char** argv) {
  using namespace hallmark;
  using namespace hallmark::device_app;
  CLI::App app{
      "hallmark-device: the device agent. Enrolls over RFC 7030 EST with the chip's birth certificate,\n"
      "keeps the IEEE 802.1AR IDC renewed, and plays whole fleets of devices against a server."};
  app.set_version_flag("--version", "hallmark-device 0.1.0");
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log debug events to stderr");
  int status = 0;

  // ukid
  auto* ukid =
      app.add_subcommand("ukid", "Print the UKID of a birth certificate (SHA-256 of its public key, hex)");
  std::string ukid_bc;
  ukid->add_option("--bc", ukid_bc, "Birth certificate (PEM or DER; the first of a chain)")->required();
  ukid->callback([&] {
    auto bytes = read_file(ukid_bc);
    if (!bytes) {
      status = report(bytes.error());
      return;
    }
    auto cert = x509::Certificate::parse(*bytes);
    if (!cert) {
      status = report(cert.error().with_context(ukid_bc));
      return;
    }
    fmt::print("{}\n", device::ukid_of(*cert));
  });

  // enroll
  auto* enroll =
      app.add_subcommand("enroll", "Enroll through the birth certificate: get an IDC (simpleenroll)");
  Common enroll_common;
  std::string chip, bc, bc_key, trust, server, secret_source;
  enroll->add_option("--chip", chip, "Chip image written by 'hallmark vendor provision' (BC, key, secret)");
  enroll->add_option("--bc", bc, "Birth certificate chain (PEM, BC first), instead of --chip");
  enroll->add_option("--bc-key", bc_key, "BC key: a PEM file, file:PATH or a pkcs11: URI");
  enroll->add_option("--secret-source", secret_source, "Option 3 UKID secret: file:PATH or env:NAME");
  enroll->add_option("--trust", trust, "Trust anchor(s) provisioned at the factory (PEM)")->required();
  enroll->add_option("--server", server, "EST server: https://host:port[/.well-known/est[/<alias>]]")
      ->required();
  bool force_enroll = false;
  enroll->add_flag("--force", force_enroll, "Enroll even though the state directory already holds an IDC");
  add_common(enroll, enroll_common, true);
  enroll->callback([&] {
    status = [&]() -> int {
      auto o = agent_options(enroll_common);
      if (!o) return report(o.error());
      device::Enrollment e;
      auto url = device::ServerUrl::parse(server);
      if (!url) return report(url.error());
      e.server = *url;
      auto anchors = load_certs(trust, "trust anchor");
      if (!anchors) return report(anchors.error());
      e.trust = *anchors;
      if (std::filesystem::exists(std::filesystem::path(o->dir) / "current") && !force_enroll) {
        return report(
            Error{Errc::conflict, fmt::format("{} already holds an IDC: use reenroll, renew or recover "
                                              "(--force enrolls again)",
                                              o->dir)});
      }
      if (!chip.empty() == !bc.empty())
        return report(Error{Errc::invalid_input, "give either --chip or --bc/--bc-key"});
      if (!chip.empty()) {
        auto image = device::ChipImage::load(chip);
        if (!image) return report(image.error());
        if (image->mode == "idc") {
          return report(Error{
              Errc::invalid_input,
              fmt::format("chip {} was born with its IDC (mode idc): nothing to enroll", image->unique_id)});
        }
        e.bc_chain = image->chain;
        // The chip's key goes to the state directory as the BC key.
        auto key = image->key.to_pem();
        if (!key) return report(key.error());
        std::filesystem::create_directories(o->dir);
        const auto path = (std::filesystem::path(o->dir) / "bc.key").string();
        if (auto w = write_file_atomic(path, as_bytes(key->reveal()), 0600); !w) return report(w.error());
        e.bc_key = "file:" + path;
        e.ukid_secret = image->ukid_secret;
      } else {
        if (bc_key.empty()) return report(Error{Errc::invalid_input, "--bc needs --bc-key"});
        auto chain = load_certs(bc, "birth certificate");
        if (!chain) return report(chain.error());
        e.bc_chain = *chain;
        e.bc_key = bc_key;
      }
      if (!secret_source.empty()) {
        auto s = read_secret(secret_source);
        if (!s) return report(s.error());
        e.ukid_secret = std::move(*s);
      }
      auto creds = device::enroll(e, *o);
      if (!creds) return report(creds.error());
      print_credentials(*creds, "enrolled");
      return 0;
    }();
  });

  // reenroll
  auto* re =
      app.add_subcommand("reenroll", "Re-enroll with the current IDC (simplereenroll), new key by default");
  Common re_common;
  bool keep_key = false;
  add_common(re, re_common, true);
  re->add_flag("--keep-key", keep_key, "Keep the current key (the alias must allow key reuse)");
  re->callback([&] {
    auto o = agent_options(re_common);
    if (!o) {
      status = report(o.error());
      return;
    }
    o->keep_key = keep_key;
    auto creds = device::reenroll(*o);
    if (!creds) {
      status = report(creds.error());
      return;
    }
    print_credentials(*creds, "re-enrolled");
  });

  // recover
  auto* rec = app.add_subcommand("recover",
                                 "Enroll again through the birth certificate kept by enroll "
                                 "(after the IDC expired past the grace period, when the alias allows)");
  Common rec_common;
  add_common(rec, rec_common, true);
  rec->callback([&] {
    auto o = agent_options(rec_common);
    if (!o) {
      status = report(o.error());
      return;
    }
    auto creds = device::recover(*o);
    if (!creds) {
      status = report(creds.error());
      return;
    }
    print_credentials(*creds, "recovered");
  });

  // renew
  auto* renew = app.add_subcommand("renew", "Re-enroll when the IDC is inside its renewal window");
  Common renew_common;
  RenewArgs renew_args;
  add_common(renew, renew_common, true);
  renew->add_option("--before", renew_args.before,
                    "Renew when less than this is left (default: the last third of the lifetime)");
  renew->add_option("--jitter", renew_args.jitter, "Wait a random time up to this before renewing")
      ->capture_default_str();
  renew->add_flag("--force", renew_args.force, "Renew now, even an IDC with no expiry");
  renew->add_flag("--daemon", renew_args.daemon, "Keep running: sleep until the window, renew, repeat");
  renew->add_flag("--recover", renew_args.recover,
                  "When the IDC expired past the grace period, enroll again through the birth certificate");
  renew->callback([&] { status = run_renew(renew_common, renew_args); });

  // status
  auto* st = app.add_subcommand("status", "Identity, issuer, validity, renewal time, verification");
  Common st_common;
  std::string st_before;
  st->add_option("--dir", st_common.dir, "Device state directory")->capture_default_str();
  st->add_option("--before", st_before, "Renewal window as for renew");
  st->callback([&] {
    status = [&]() -> int {
      AgentOptions o;
      o.dir = st_common.dir;
      RenewalPolicy policy;
      if (!st_before.empty()) {
        auto b = parse_duration(st_before, "--before");
        if (!b) return report(b.error());
        policy.before = std::chrono::duration_cast<std::chrono::seconds>(*b);
      }
      auto r = device::status(o, policy);
      if (!r) return report(r.error());
      const auto now = SystemClock().now();
      std::string renewal = "never (no expiry)";
      if (r->renew_at) {
        renewal = *r->renew_at <= now
                      ? fmt::format("due since {}", to_iso8601(*r->renew_at))
                      : fmt::format("{} (in {} s)", to_iso8601(*r->renew_at), (*r->renew_at - now).count());
      }
      fmt::print(
          "identity  {}\nissuer    {}\nserial    {}\nvalidity  {} to {}{}\nrenewal   {}\nkey       {}\n"
          "server    {}\nverifies  {}\n",
          r->subject, r->issuer, r->serial, to_iso8601(r->not_before), to_iso8601(r->not_after),
          r->no_expiry ? " (no expiry)" : (r->not_after < now ? " (expired)" : ""), renewal, r->key,
          r->server, r->verifies ? "yes (against the trust anchor)" : "no: " + r->verify_error);
      return r->verifies ? 0 : 5;
    }();
  });

  // fleet
  auto* fleet = app.add_subcommand("fleet", "Play many devices from a reel's chip images against a server");
  std::string fleet_reel, fleet_server, fleet_trust, fleet_timeout = "30s", fleet_progress = "auto";
  device::FleetOptions fo;
  bool no_csrattrs = false;
  fleet
      ->add_option("--reel", fleet_reel,
                   "Directory of chip images (or the output directory of vendor provision)")
      ->required();
  fleet->add_option("--server", fleet_server, "EST server: https://host:port[/.well-known/est[/<alias>]]")
      ->required();
  fleet->add_option("--trust", fleet_trust, "Trust anchor(s) for the server and cacerts (PEM)")->required();
  fleet->add_option("--count", fo.count, "Devices to play (default: every bc / bc-secret chip)");
  fleet->add_option("--concurrency", fo.concurrency, "Devices in flight at once")->capture_default_str();
  fleet
      ->add_option("--reenroll-fraction", fo.reenroll_fraction, "Share of devices that then re-enroll (0..1)")
      ->capture_default_str();
  fleet->add_option("--alias", fo.alias, "EST alias for bc chips (Option 2; default: the URL's)");
  fleet->add_option("--secret-alias", fo.secret_alias,
                    "EST alias for bc-secret chips (Option 3; default: --alias)");
  fleet->add_option("--threads", fo.threads, "I/O threads (1 or 2)")->capture_default_str();
  fleet->add_option("--attempts", fo.max_attempts, "Attempts per operation (network failures, 503)")
      ->capture_default_str();
  fleet->add_option("--timeout", fleet_timeout, "Timeout of each network operation")->capture_default_str();
  fleet->add_option("--progress", fleet_progress, "Progress bar on stderr: auto, always, never")
      ->capture_default_str();
  fleet->add_flag("--no-csrattrs", no_csrattrs, "Skip csrattrs (the UKID goes in serialNumber)");
  fleet->callback([&] {
    status = [&]() -> int {
      fo.reel = fleet_reel;
      auto url = device::ServerUrl::parse(fleet_server);
      if (!url) return report(url.error());
      fo.server = *url;
      auto anchors = load_certs(fleet_trust, "trust anchor");
      if (!anchors) return report(anchors.error());
      fo.trust = *anchors;
      auto t = parse_duration(fleet_timeout, "--timeout");
      if (!t) return report(t.error());
      fo.timeout = *t;
      fo.csrattrs = !no_csrattrs;
      if (fleet_progress == "always") {
        fo.progress = ProgressBar::Mode::always;
      } else if (fleet_progress == "never") {
        fo.progress = ProgressBar::Mode::never;
      } else if (fleet_progress != "auto") {
        return report(Error{Errc::invalid_input, "--progress must be auto, always or never"});
      }
      auto r = device::run_fleet(fo);
      if (!r) return report(r.error());
      fmt::print("{}", r->to_text());
      return r->failed == 0 ? 0 : 1;
    }();
  });

  app.parse_complete_callback([&] {
    if (verbose) log::set_level(log::Level::debug);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}

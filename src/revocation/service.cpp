#include "hallmark/revocation/service.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cstdlib>
#include <ctime>
#include <set>

#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"

namespace hallmark::revocation {
namespace {

constexpr std::string_view kCrlType = "application/pkix-crl";
constexpr std::string_view kOcspType = "application/ocsp-response";

// RFC 9110 IMF-fixdate: "Sat, 28 Nov 2026 08:49:49 GMT".
std::string http_date(Seconds t) {
  const std::time_t tt = t.time_since_epoch().count();
  std::tm tm{};
  gmtime_r(&tt, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of the GET form's path (base64 may arrive with '+', '/' and '=' escaped).
std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

http::Response der_response(int status, std::string_view type, const Bytes& der) {
  http::Response r;
  r.status = status;
  r.headers.set("Content-Type", std::string(type));
  r.body.assign(reinterpret_cast<const char*>(der.data()), der.size());
  return r;
}

}  // namespace

Service::Service(store::Store& store, std::vector<CaSource> cas, const Clock& clock, ServiceOptions options)
    : store_(store),
      cas_(std::move(cas)),
      clock_(clock),
      options_(std::move(options)),
      responder_(store, cas_, clock, options_.responder) {}

Service::~Service() {
  stop();
}

Status Service::start() {
  audit_after_ = HM_TRY(store_.last_audit_id());
  // BCs the RA flagged while no revocation service ran.
  const auto recorded = HM_TRY(record_flagged_bcs(store_, cas_, RevokeOptions{"ra", "", &clock_}));
  if (recorded > 0) log::info("bc_revocations_recorded", {{"count", std::to_string(recorded)}});
  HM_TRY_VOID(pass(true));
  thread_ = std::thread([this] { run(); });
  return {};
}

void Service::stop() {
  {
    std::lock_guard lock(wake_mutex_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Service::wake() {
  {
    std::lock_guard lock(wake_mutex_);
    wake_ = true;
  }
  wake_cv_.notify_all();
}

void Service::run() {
  for (;;) {
    {
      std::unique_lock lock(wake_mutex_);
      wake_cv_.wait_for(lock, options_.poll_interval, [this] { return stopping_ || wake_; });
      if (stopping_) return;
      wake_ = false;
    }
    if (auto st = pass(false); !st) log::warn("revocation_pass_failed", {{"error", st.error().detail}});
  }
}

Status Service::follow_audit(bool& revoked) {
  for (;;) {
    const auto page = HM_TRY(store_.list_audit(audit_after_, 1000));
    for (const auto& r : page) {
      audit_after_ = r.id;
      if (r.event.outcome != store::Outcome::accepted) continue;
      if (r.event.action == "revoke") revoked = true;
      if (r.event.action == "bc-revoke") {
        // A BC flagged by the RA (possibly on another node, or before a crash) becomes a revoked row.
        auto device = store_.find_device_by_unique_id(r.event.object);
        if (!device || !find_issuer(cas_, device->bc_issuer)) continue;
        if (auto bc = x509::Certificate::parse_der(device->bc_der);
            bc && !store_.find_certificate_by_serial(bc->serial_hex())) {
          RevokeOptions o{"ra", r.event.request_id, &clock_};
          auto done = revoke_device_certificate(store_, *device, cas_, x509::RevocationReason::superseded, o);
          if (!done && done.error().code != Errc::conflict)
            log::warn("bc_revocation_record_failed",
                      {{"device", device->vendor_unique_id}, {"error", done.error().detail}});
        }
        revoked = true;
      }
    }
    if (page.size() < 1000) return {};
  }
}

Status Service::refresh_served(bool& changed) {
  const auto stored = HM_TRY(store_.list_crls());
  for (const auto& head : stored) {
    const bool ours =
        std::any_of(cas_.begin(), cas_.end(), [&](const CaSource& c) { return c.name == head.ca_name; });
    if (!ours) continue;
    {
      std::lock_guard lock(served_mutex_);
      if (auto it = served_.find(head.ca_name); it != served_.end() && it->second.number >= head.crl_number)
        continue;
    }
    const auto record = HM_TRY(store_.find_crl(head.ca_name));
    auto crl = x509::Crl::parse_der(record.der);
    if (!crl) {
      log::error("crl_unreadable", {{"ca", head.ca_name}, {"error", crl.error().detail}});
      continue;
    }
    std::lock_guard lock(served_mutex_);
    served_[record.ca_name] =
        Served{std::move(*crl), record.crl_number, record.this_update, record.next_update};
    changed = true;
  }
  return {};
}

Status Service::write_files() {
  if (options_.crl_dir.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(options_.crl_dir, ec);
  if (ec)
    return fail(Errc::unavailable,
                fmt::format("cannot create {}: {}", options_.crl_dir.string(), ec.message()));
  std::vector<x509::Crl> all;
  {
    std::lock_guard lock(served_mutex_);
    for (const auto& [name, s] : served_) all.push_back(s.crl);
  }
  {
    std::lock_guard lock(served_mutex_);
    for (const auto& [name, s] : served_) {
      HM_TRY_VOID(write_file_atomic((options_.crl_dir / (name + ".crl")).string(), s.crl.to_der()));
    }
  }
  HM_TRY_VOID(write_file_atomic((options_.crl_dir / "nginx.pem").string(), as_bytes(crl_bundle_pem(all))));
  if (!options_.reload_command.empty()) {
    const int rc = std::system(options_.reload_command.c_str());
    if (rc != 0) {
      log::warn("crl_reload_failed", {{"command", options_.reload_command}, {"status", std::to_string(rc)}});
    } else {
      log::info("crl_reloaded", {{"command", options_.reload_command}});
    }
  }
  return {};
}

Status Service::pass(bool first) {
  const auto now = clock_.now();
  bool revoked = false;
  HM_TRY_VOID(follow_audit(revoked));
  if (revoked) responder_.invalidate();
  if (auto st = responder_.index_devices(); !st)
    log::warn("ocsp_index_failed", {{"error", st.error().detail}});

  bool changed = false;
  HM_TRY_VOID(refresh_served(changed));
  const auto served_number = [&](const std::string& ca) -> std::int64_t {
    std::lock_guard lock(served_mutex_);
    const auto it = served_.find(ca);
    return it == served_.end() ? 0 : it->second.number;
  };
  // A revocation makes every CRL pending until a newer one is served (made here or by the node
  // holding the lease, which sees the same revocation in the log).
  if (revoked) {
    for (const auto& ca : cas_) {
      if (ca.crl_signer) pending_[ca.name] = served_number(ca.name);
    }
  }
  std::vector<const CaSource*> due;
  for (const auto& ca : cas_) {
    if (!ca.crl_signer) continue;
    if (auto p = pending_.find(ca.name); p != pending_.end() && served_number(ca.name) > p->second)
      pending_.erase(p);
    std::optional<Seconds> this_update;
    {
      std::lock_guard lock(served_mutex_);
      if (auto it = served_.find(ca.name); it != served_.end()) this_update = it->second.this_update;
    }
    const bool stale = !this_update || now >= *this_update + options_.crl_interval;
    if (stale || pending_.contains(ca.name)) due.push_back(&ca);
  }
  if (!due.empty()) {
    const auto ttl = std::max<std::chrono::seconds>(
        std::chrono::seconds(30),
        std::chrono::duration_cast<std::chrono::seconds>(options_.poll_interval * 5));
    const bool leader = HM_TRY(store_.try_leader_lease("crl", options_.node_id, ttl, now));
    if (leader) {
      for (const auto* ca : due) {
        auto crl = generate_crl(store_, *ca, now, options_.next_update);
        if (!crl) {
          log::error("crl_generation_failed", {{"ca", ca->name}, {"error", crl.error().detail}});
          continue;
        }
        pending_.erase(ca->name);
      }
      HM_TRY_VOID(refresh_served(changed));
    }
  }
  if (changed || first) HM_TRY_VOID(write_files());
  return {};
}

std::optional<x509::Crl> Service::served_crl(std::string_view ca) const {
  std::lock_guard lock(served_mutex_);
  auto it = served_.find(ca);
  if (it == served_.end()) return std::nullopt;
  return it->second.crl;
}

http::Response Service::crl_response(std::string_view file, const http::Request& request) const {
  if (!file.ends_with(".crl"))
    return http::problem(404, "not_found", "CRLs are published as /crl/<ca-name>.crl");
  const auto name = file.substr(0, file.size() - 4);
  Served s;
  {
    std::lock_guard lock(served_mutex_);
    auto it = served_.find(name);
    if (it == served_.end()) return http::problem(404, "not_found", fmt::format("no CRL for CA '{}'", name));
    s = it->second;
  }
  const auto etag = fmt::format("\"{}-{}\"", name, s.number);
  // Cacheable until the next regeneration is due, never past nextUpdate.
  const auto now = clock_.now();
  auto until = std::min(s.this_update + options_.crl_interval, s.next_update);
  const auto max_age = until > now ? (until - now).count() : 0;
  http::Response r;
  if (auto inm = request.headers.get("If-None-Match"); inm && *inm == etag) {
    r.status = 304;
  } else {
    r = der_response(200, kCrlType, s.crl.to_der());
  }
  r.headers.set("ETag", etag);
  r.headers.set("Last-Modified", http_date(s.this_update));
  r.headers.set("Expires", http_date(s.next_update));
  r.headers.set("Cache-Control", fmt::format("public, max-age={}, no-transform", max_age));
  return r;
}

http::Response Service::ocsp_response(const http::Request& request) {
  Bytes der;
  if (request.method == "POST") {
    if (auto type = request.headers.get("Content-Type");
        type && !type->starts_with("application/ocsp-request"))
      return http::problem(415, "unsupported_media_type", "POST /ocsp takes application/ocsp-request");
    der = responder_.respond(as_bytes(request.body));
    return der_response(200, kOcspType, der);
  }
  // GET /ocsp/<url-encoding of base64 of DER> (RFC 6960 Appendix A.1).
  auto path = request.path();
  path.remove_prefix(std::min(path.size(), std::string_view("/ocsp/").size()));
  auto decoded = percent_decode(path);
  auto bytes = decoded ? crypto::base64_decode(*decoded) : Result<Bytes>(fail(Errc::invalid_input, "escape"));
  der = bytes ? responder_.respond(*bytes)
              : x509::make_ocsp_error_response(x509::OcspResponseStatus::malformed_request);
  auto r = der_response(200, kOcspType, der);
  // RFC 5019 §6: GET responses are cacheable; a nonce makes one unique anyway.
  r.headers.set("Cache-Control",
                fmt::format("max-age={}, public, no-transform", options_.responder.validity.count() / 2));
  return r;
}

void Service::install(http::Router& router) {
  router.add("GET", "/crl/{file}", [this](const http::Request& r, const http::PathParams& p) {
    return crl_response(p.get("file"), r);
  });
  router.add("POST", "/ocsp", [this](const http::Request& r) { return ocsp_response(r); });
  router.add("POST", "/ocsp/", [this](const http::Request& r) { return ocsp_response(r); });
  router.add("GET", "/ocsp/*", [this](const http::Request& r) { return ocsp_response(r); });
}

Status Service::revoke_bc(const store::DeviceRecord& device, const std::string& request_id) {
  RevokeOptions o{"ra", request_id, &clock_};
  auto done = revoke_device_certificate(store_, device, cas_, x509::RevocationReason::superseded, o);
  if (!done && done.error().code != Errc::conflict) return std::unexpected(done.error());
  responder_.invalidate();
  wake();
  return {};
}

}  // namespace hallmark::revocation

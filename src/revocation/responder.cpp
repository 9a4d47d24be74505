#include "hallmark/revocation/responder.hpp"

#include <fmt/format.h>

#include <mutex>

#include "hallmark/core/log.hpp"

namespace hallmark::revocation {
namespace {

using x509::OcspCertStatus;
using x509::OcspResponseStatus;

std::string cache_key(const x509::OcspCertId& id) {
  std::string k = id.hash_algorithm;
  k += '|';
  k += as_chars(id.issuer_name_hash);
  k += as_chars(id.issuer_key_hash);
  k += as_chars(id.serial);
  return k;
}

}  // namespace

OcspResponder::OcspResponder(store::Store& store, std::vector<CaSource> cas, const Clock& clock,
                             ResponderOptions options)
    : store_(store), cas_(std::move(cas)), clock_(clock), options_(options) {
  for (const auto& ca : cas_) {
    if (!ca.responder_signer || ca.certificate.native() == nullptr) continue;
    Issuer issuer{&ca, {}};
    for (const auto* alg : {"sha1", "sha256", "sha384", "sha512"}) {
      if (auto id = x509::make_ocsp_cert_id(ca.certificate, {}, alg)) issuer.ids.push_back(std::move(*id));
    }
    issuers_.push_back(std::move(issuer));
  }
}

const OcspResponder::Issuer* OcspResponder::issuer_of(const x509::OcspCertId& id) const {
  for (const auto& issuer : issuers_) {
    for (const auto& known : issuer.ids) {
      if (known.same_issuer(id)) return &issuer;
    }
  }
  return nullptr;
}

Result<x509::OcspSingleResponse> OcspResponder::lookup(const Issuer& issuer, const x509::OcspCertId& id,
                                                       Seconds now) {
  x509::OcspSingleResponse r;
  r.id = id;
  r.this_update = now;
  r.next_update = now + options_.validity;
  r.status = OcspCertStatus::unknown;
  if (id.serial.empty()) return r;
  const auto serial = to_hex(id.serial);
  auto cert = store_.find_certificate_by_serial(serial);
  if (!cert && cert.error().code != Errc::not_found) return std::unexpected(cert.error());
  if (cert && cert->issuer_ca == issuer.ca->name) {
    if (cert->status == store::CertificateStatus::revoked) {
      r.status = OcspCertStatus::revoked;
      r.revocation_time = cert->revoked_at.value_or(now);
      if (cert->reason && *cert->reason > 0 && *cert->reason <= 10 && *cert->reason != 7)
        r.reason = static_cast<x509::RevocationReason>(*cert->reason);
    } else {
      r.status = OcspCertStatus::good;
    }
    return r;
  }
  // A certificate of a device row: a BC of our BC CA, an IDC a vendor issued (Option 1).
  if (!indexed_.load(std::memory_order_acquire))
    return fail(Errc::unavailable, "the inventory is not indexed yet");
  std::optional<store::Id> device_id;
  {
    std::shared_lock lock(index_mutex_);
    if (auto it = device_serials_.find(issuer.ca->name + "/" + serial); it != device_serials_.end())
      device_id = it->second;
  }
  if (!device_id) return r;
  const auto device = HM_TRY(store_.find_device(*device_id));
  if (device.bc_revoked) {
    // Flagged but not recorded yet (the revocation service records it on its next pass).
    r.status = OcspCertStatus::revoked;
    r.revocation_time = now;
  } else {
    r.status = OcspCertStatus::good;
  }
  return r;
}

Result<x509::OcspSingleResponse> OcspResponder::status(const x509::OcspCertId& id) {
  const auto* issuer = issuer_of(id);
  if (issuer == nullptr) return fail(Errc::not_found, "not a CA this responder answers for");
  return lookup(*issuer, id, clock_.now());
}

Bytes OcspResponder::respond(ByteView request_der) {
  auto request = x509::parse_ocsp_request(request_der);
  if (!request) return x509::make_ocsp_error_response(OcspResponseStatus::malformed_request);
  const auto* issuer = issuer_of(request->ids.front());
  if (issuer == nullptr) return x509::make_ocsp_error_response(OcspResponseStatus::unauthorized);
  const auto now = clock_.now();

  const bool cacheable = !request->nonce && request->ids.size() == 1;
  std::string key;
  if (cacheable) {
    key = cache_key(request->ids.front());
    std::shared_lock lock(cache_mutex_);
    if (auto it = cache_.find(key); it != cache_.end() && now < it->second.until) return *it->second.der;
  }

  std::vector<x509::OcspSingleResponse> singles;
  for (const auto& id : request->ids) {
    // One responder signs the whole response: ids of another issuer are answered unknown.
    if (!issuer->ids.empty() && !id.same_issuer(request->ids.front())) {
      x509::OcspSingleResponse unknown;
      unknown.id = id;
      unknown.this_update = now;
      singles.push_back(std::move(unknown));
      continue;
    }
    auto single = lookup(*issuer, id, now);
    if (!single) {
      log::warn("ocsp_lookup_failed", {{"ca", issuer->ca->name}, {"error", single.error().detail}});
      return x509::make_ocsp_error_response(OcspResponseStatus::try_later);
    }
    singles.push_back(std::move(*single));
  }
  auto der =
      x509::make_ocsp_response(singles, request->nonce, issuer->ca->responder, *issuer->ca->responder_signer);
  if (!der) {
    log::error("ocsp_sign_failed", {{"ca", issuer->ca->name}, {"error", der.error().detail}});
    return x509::make_ocsp_error_response(OcspResponseStatus::internal_error);
  }
  // "unknown" is not cached: the certificate may be issued a moment later.
  if (cacheable && singles.front().status != OcspCertStatus::unknown) {
    auto shared = std::make_shared<const Bytes>(*der);
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= options_.max_cached) cache_.clear();
    cache_[key] = Cached{std::move(shared), now + options_.validity / 2};
  }
  return std::move(*der);
}

void OcspResponder::invalidate() {
  std::unique_lock lock(cache_mutex_);
  cache_.clear();
}

std::size_t OcspResponder::cached() const {
  std::shared_lock lock(cache_mutex_);
  return cache_.size();
}

Status OcspResponder::index_devices() {
  store::DeviceFilter filter;
  filter.limit = 1000;
  {
    std::shared_lock lock(index_mutex_);
    filter.after_id = indexed_after_;
  }
  for (;;) {
    const auto page = HM_TRY(store_.list_devices(filter));
    if (page.empty()) break;
    std::vector<std::pair<std::string, store::Id>> found;
    for (const auto& d : page) {
      if (d.bc_der.empty()) continue;
      const auto* ca = find_issuer(cas_, d.bc_issuer);
      if (ca == nullptr || !ca->responder_signer) continue;
      auto cert = x509::Certificate::parse_der(d.bc_der);
      if (cert) found.emplace_back(ca->name + "/" + cert->serial_hex(), d.id);
    }
    filter.after_id = page.back().id;
    std::unique_lock lock(index_mutex_);
    for (auto& [k, id] : found) device_serials_[std::move(k)] = id;
    indexed_after_ = filter.after_id;
  }
  indexed_.store(true, std::memory_order_release);
  return {};
}

}  // namespace hallmark::revocation

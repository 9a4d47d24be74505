#pragma once
// Shared by the store tests: record builders and raw SQL access for tamper tests.
#include <atomic>
#include <string>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/store/store.hpp"

namespace hallmark::store::testing {

inline Seconds at(std::int64_t s) {
  return Seconds{std::chrono::seconds{s}};
}

inline std::string random_serial() {
  return to_hex(crypto::random_bytes(16));
}

inline AuditEvent event(std::string action = {}, std::string object = {}) {
  AuditEvent e;
  e.time = at(1'800'000'000);
  e.actor = "test";
  e.action = std::move(action);
  e.object = std::move(object);
  e.request_id = "req-" + to_hex(crypto::random_bytes(4));
  return e;
}

inline DeviceRecord device(const std::string& unique_id, bool with_ukid = true) {
  DeviceRecord d;
  d.vendor_unique_id = unique_id;
  d.bc_der = to_bytes("bc-der-" + unique_id);
  d.bc_sha256 = crypto::sha256_hex(d.bc_der);
  if (with_ukid) d.ukid = crypto::sha256_hex(to_bytes("spki-" + unique_id));
  d.bc_issuer = "CN=Vendor BC CA";
  d.part_number = "PN-1";
  return d;
}

inline CertificateRecord certificate(const std::string& serial, const std::string& key = "key",
                                     std::int64_t not_after = 253402300799,
                                     const std::string& ca = "idc-ca") {
  CertificateRecord c;
  c.serial_hex = serial;
  c.issuer_ca = ca;
  c.subject = "CN=device";
  c.not_before = at(1'800'000'000);
  c.not_after = at(not_after);
  c.public_key_sha256 = crypto::sha256_hex(to_bytes(key));
  c.der = to_bytes("cert-der-" + serial);
  return c;
}

inline IssuanceRequest issuance(const std::string& username, const std::string& serial,
                                const std::string& key = "key") {
  IssuanceRequest r;
  r.username = username;
  r.certificate = certificate(serial, key);
  r.audit = event();
  r.audit.actor = "ra";
  return r;
}

}  // namespace hallmark::store::testing

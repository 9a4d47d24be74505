#include "hallmark/revocation/revocation.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <tuple>

#include "hallmark/core/log.hpp"
#include "hallmark/crypto/digest.hpp"

namespace hallmark::revocation {
namespace {

// CRL entries are read from the store this many at a time.
constexpr std::int64_t kPage = 10'000;

Seconds now_of(const Clock* clock) {
  static const SystemClock system;
  return (clock != nullptr ? clock : &system)->now();
}

store::AuditEvent audit_event(const RevokeOptions& o, std::string action, std::string object,
                              x509::RevocationReason reason) {
  store::AuditEvent e;
  e.time = now_of(o.clock);
  e.actor = o.actor;
  e.action = std::move(action);
  e.object = std::move(object);
  e.reason = fmt::format("reason={}", x509::to_string(reason));
  e.request_id = o.request_id;
  return e;
}

// `entries` in CRL order (as X509_CRL_sort and make_crl have it: by the serial's magnitude, shorter
// first, then bytewise). Sorting compact keys (the first 16 bytes of each serial as two integers)
// instead of comparing the entries' scattered serials directly is several times faster at a
// million entries; ties past 16 bytes fall back to comparing the whole serials.
void sort_by_serial(std::vector<x509::CrlEntry>& entries) {
  struct Key {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    std::uint32_t size = 0;
    std::uint32_t index = 0;
  };
  const auto magnitude = [](const Bytes& serial) {
    ByteView v(serial);
    while (!v.empty() && v[0] == std::byte{0}) v = v.subspan(1);
    return v;
  };
  std::vector<Key> keys(entries.size());
  bool sorted = true;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto m = magnitude(entries[i].serial);
    Key& k = keys[i];
    for (std::size_t j = 0; j < 16; ++j) {
      const std::uint64_t b = j < m.size() ? std::to_integer<std::uint64_t>(m[j]) : 0;
      (j < 8 ? k.hi : k.lo) |= b << (8 * (7 - j % 8));
    }
    k.size = static_cast<std::uint32_t>(m.size());
    k.index = static_cast<std::uint32_t>(i);
    if (i > 0 && sorted) {
      const Key& p = keys[i - 1];
      sorted = std::tie(p.size, p.hi, p.lo) < std::tie(k.size, k.hi, k.lo) ||
               (std::tie(p.size, p.hi, p.lo) == std::tie(k.size, k.hi, k.lo) &&
                std::ranges::lexicographical_compare(magnitude(entries[i - 1].serial), m));
    }
  }
  if (sorted) return;
  std::sort(keys.begin(), keys.end(), [&](const Key& a, const Key& b) {
    if (a.size != b.size) return a.size < b.size;
    if (a.hi != b.hi) return a.hi < b.hi;
    if (a.lo != b.lo) return a.lo < b.lo;
    if (a.size <= 16) return false;
    const auto x = magnitude(entries[a.index].serial);
    const auto y = magnitude(entries[b.index].serial);
    return std::memcmp(x.data(), y.data(), x.size()) < 0;
  });
  std::vector<x509::CrlEntry> out;
  out.reserve(entries.size());
  for (const auto& k : keys) out.push_back(std::move(entries[k.index]));
  entries = std::move(out);
}

// A CA's revoked rows, read page by page on a thread of its own, a few pages ahead of the consumer.
// The destructor stops and joins the thread, also when the consumer gives up half-way.
class PageReader {
 public:
  using Page = std::vector<store::RevocationRecord>;

  PageReader(store::Store& store, std::string ca_name)
      : store_(store), ca_name_(std::move(ca_name)), thread_([this] { run(); }) {}
  PageReader(const PageReader&) = delete;
  PageReader& operator=(const PageReader&) = delete;
  ~PageReader() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // The next page; nullopt after the last one.
  Result<std::optional<Page>> next() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !pages_.empty() || done_; });
    if (!pages_.empty()) {
      auto page = std::move(pages_.front());
      pages_.pop_front();
      cv_.notify_all();
      return std::optional<Page>(std::move(page));
    }
    if (error_) return std::unexpected(*error_);
    return std::optional<Page>();
  }

 private:
  void run() {
    store::Id after = 0;
    for (;;) {
      auto page = store_.list_revocations(ca_name_, after, kPage);
      std::unique_lock lock(mu_);
      if (!page) {
        error_ = page.error();
        break;
      }
      const bool last = page->size() < static_cast<std::size_t>(kPage);
      if (!page->empty()) {
        after = page->back().id;
        pages_.push_back(std::move(*page));
      }
      cv_.notify_all();
      if (last) break;
      cv_.wait(lock, [this] { return pages_.size() < kPagesAhead || stop_; });
      if (stop_) break;
    }
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  static constexpr std::size_t kPagesAhead = 4;
  store::Store& store_;
  const std::string ca_name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Page> pages_;
  std::optional<Error> error_;
  bool done_ = false;
  bool stop_ = false;
  std::thread thread_;  // last: started once everything it uses is constructed
};

}  // namespace

const CaSource* find_issuer(const std::vector<CaSource>& cas, std::string_view issuer_dn) {
  for (const auto& ca : cas) {
    if (ca.certificate.native() != nullptr && ca.certificate.subject().to_string() == issuer_dn) return &ca;
  }
  return nullptr;
}

Result<std::string> normalize_serial(std::string_view text) {
  if (text.starts_with("0x") || text.starts_with("0X")) text.remove_prefix(2);
  std::string hex;
  for (char c : text) {
    if (c != ':') hex += c;
  }
  if (hex.empty()) return fail(Errc::invalid_input, "serial is empty");
  if (hex.size() % 2 != 0) hex.insert(hex.begin(), '0');
  auto bytes = parse_hex(hex);
  if (!bytes) return fail(Errc::invalid_input, fmt::format("serial '{}' is not hexadecimal", text));
  ByteView v(*bytes);
  while (v.size() > 1 && v[0] == std::byte{0}) v = v.subspan(1);
  return to_hex(v);
}

Result<store::CertificateRecord> revoke_certificate(store::Store& store, std::string_view serial_hex,
                                                    x509::RevocationReason reason,
                                                    const RevokeOptions& options) {
  const auto serial = HM_TRY(normalize_serial(serial_hex));
  const auto audit = audit_event(options, "revoke", serial, reason);
  HM_TRY_VOID(store.revoke_certificate(serial, audit.time, static_cast<int>(reason), audit));
  return store.find_certificate_by_serial(serial);
}

Result<store::CertificateRecord> revoke_device_certificate(store::Store& store,
                                                           const store::DeviceRecord& device,
                                                           const std::vector<CaSource>& cas,
                                                           x509::RevocationReason reason,
                                                           const RevokeOptions& options) {
  if (device.bc_der.empty())
    return fail(Errc::not_found, fmt::format("device {} has no certificate", device.vendor_unique_id));
  const auto* ca = find_issuer(cas, device.bc_issuer);
  if (ca == nullptr) {
    return fail(Errc::not_found,
                fmt::format("the certificate of device {} was issued by {}, not a CA hallmark "
                            "answers for",
                            device.vendor_unique_id, device.bc_issuer));
  }
  auto cert = x509::Certificate::parse_der(device.bc_der);
  if (!cert) return std::unexpected(cert.error().with_context("device " + device.vendor_unique_id));
  store::CertificateRecord r;
  r.serial_hex = cert->serial_hex();
  r.issuer_ca = ca->name;
  r.device_id = device.id;
  r.subject = cert->subject().to_string();
  r.not_before = cert->not_before();
  r.not_after = cert->not_after();
  r.public_key_sha256 = cert->public_key().sha256_hex();
  r.der = device.bc_der;
  r.status = store::CertificateStatus::revoked;
  const auto audit = audit_event(options, "revoke", r.serial_hex, reason);
  r.revoked_at = audit.time;
  r.reason = static_cast<int>(reason);
  HM_TRY_VOID(store.record_revoked_certificate(r, audit));
  return store.find_certificate_by_serial(r.serial_hex);
}

Result<std::vector<store::CertificateRecord>> revoke_device_certificates(store::Store& store,
                                                                         store::Id device_id,
                                                                         x509::RevocationReason reason,
                                                                         const RevokeOptions& options) {
  std::vector<store::CertificateRecord> out;
  const auto good = HM_TRY(store.list_certificates(
      {.device_id = device_id, .status = store::CertificateStatus::good, .limit = 100'000}));
  for (const auto& c : good) out.push_back(HM_TRY(revoke_certificate(store, c.serial_hex, reason, options)));
  return out;
}

Result<std::size_t> record_flagged_bcs(store::Store& store, const std::vector<CaSource>& cas,
                                       const RevokeOptions& options) {
  std::size_t recorded = 0;
  store::DeviceFilter filter;
  filter.limit = 1000;
  for (;;) {
    const auto page = HM_TRY(store.list_devices(filter));
    if (page.empty()) break;
    for (const auto& d : page) {
      if (!d.bc_revoked || d.bc_der.empty() || find_issuer(cas, d.bc_issuer) == nullptr) continue;
      auto bc = x509::Certificate::parse_der(d.bc_der);
      if (!bc) continue;
      auto known = store.find_certificate_by_serial(bc->serial_hex());
      if (known) continue;
      if (known.error().code != Errc::not_found) return std::unexpected(known.error());
      auto r = revoke_device_certificate(store, d, cas, x509::RevocationReason::superseded, options);
      if (!r && r.error().code != Errc::conflict) return std::unexpected(r.error());
      if (r) ++recorded;
    }
    filter.after_id = page.back().id;
  }
  return recorded;
}

Result<store::DeviceRecord> find_device_by_certificate_serial(store::Store& store,
                                                              std::string_view serial_hex,
                                                              const std::vector<CaSource>& cas) {
  const auto serial = HM_TRY(normalize_serial(serial_hex));
  store::DeviceFilter filter;
  filter.limit = 1000;
  for (;;) {
    const auto page = HM_TRY(store.list_devices(filter));
    if (page.empty()) break;
    for (const auto& d : page) {
      if (d.bc_der.empty() || find_issuer(cas, d.bc_issuer) == nullptr) continue;
      auto cert = x509::Certificate::parse_der(d.bc_der);
      if (cert && cert->serial_hex() == serial) return d;
    }
    filter.after_id = page.back().id;
  }
  return fail(Errc::not_found, fmt::format("no certificate with serial {}", serial));
}

Result<x509::Crl> generate_crl(store::Store& store, const CaSource& ca, Seconds now,
                               std::chrono::seconds next_update) {
  if (!ca.crl_signer) {
    return fail(
        Errc::invalid_input,
        fmt::format("CA '{}' has no key here (held elsewhere): hallmark cannot sign its CRL", ca.name));
  }
  x509::CrlTemplate tmpl;
  tmpl.this_update = now;
  tmpl.next_update = now + next_update;
  // The store is read on its own thread while this one turns the pages already read into entries;
  // they are then put in CRL order here, where it is cheap, so that make_crl has nothing to sort.
  PageReader reader(store, ca.name);
  for (;;) {
    auto page = HM_TRY(reader.next());
    if (!page) break;
    for (const auto& r : *page) {
      x509::CrlEntry e;
      e.serial = HM_TRY(parse_hex(r.serial_hex));
      e.revocation_time = r.revoked_at;
      // unspecified is left out, as RFC 5280 §5.3.1 asks.
      if (r.reason && *r.reason > 0 && *r.reason <= 10 && *r.reason != 7)
        e.reason = static_cast<x509::RevocationReason>(*r.reason);
      tmpl.entries.push_back(std::move(e));
    }
  }
  sort_by_serial(tmpl.entries);
  tmpl.crl_number = static_cast<std::uint64_t>(HM_TRY(store.next_crl_number(ca.name)));
  auto crl = HM_TRY(x509::make_crl(tmpl, ca.certificate, *ca.crl_signer));
  HM_TRY_VOID(store.put_crl(store::CrlRecord{ca.name, static_cast<std::int64_t>(tmpl.crl_number),
                                             tmpl.this_update, tmpl.next_update, crl.to_der()}));
  log::info("crl_generated", {{"ca", ca.name},
                              {"crl_number", std::to_string(tmpl.crl_number)},
                              {"entries", std::to_string(tmpl.entries.size())}});
  return crl;
}

std::string crl_bundle_pem(const std::vector<x509::Crl>& crls) {
  std::string out;
  for (const auto& c : crls) out += c.to_pem();
  return out;
}

}  // namespace hallmark::revocation

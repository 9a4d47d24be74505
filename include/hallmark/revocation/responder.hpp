#pragma once
// The OCSP responder (RFC 6960): status from the store, signed by each CA's delegated responder.
// Requests without a nonce get a pre-produced response, cached per CertID until half its validity is
// spent or a revocation is seen (invalidate); a nonce is honoured by signing on demand.
#include <atomic>
#include <chrono>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/revocation/revocation.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/ocsp.hpp"

namespace hallmark::revocation {

struct ResponderOptions {
  // nextUpdate of a response = thisUpdate + validity; a cached one is served for half of it.
  std::chrono::seconds validity{3600};
  std::size_t max_cached = 1'000'000;  // beyond: the cache starts over
};

class OcspResponder final {
 public:
  // `cas` without a responder signer are not answered for (their certificates are "unknown").
  OcspResponder(store::Store& store, std::vector<CaSource> cas, const Clock& clock, ResponderOptions options);

  // A DER OCSPResponse for a DER OCSPRequest: malformedRequest for bad input, tryLater while the
  // store is unavailable or the inventory not indexed yet, internalError on a signing failure.
  [[nodiscard]] Bytes respond(ByteView request_der);
  // The status of one certificate, as the responder would answer (also for `hallmark` tools).
  [[nodiscard]] Result<x509::OcspSingleResponse> status(const x509::OcspCertId& id);

  // Drops every cached response (a revocation happened somewhere).
  void invalidate();

  // Device rows whose certificate (a BC, an Option 1 IDC) one of the CAs issued are indexed by serial,
  // since the store has no such column; index_devices reads the devices added since the last call.
  // Until the first call completes, such certificates are answered tryLater.
  [[nodiscard]] Status index_devices();
  [[nodiscard]] std::size_t cached() const;

 private:
  struct Cached {
    std::shared_ptr<const Bytes> der;
    Seconds until;
  };
  struct Issuer {
    const CaSource* ca;
    std::vector<x509::OcspCertId> ids;  // issuer hashes under sha1, sha256, sha384, sha512
  };
  [[nodiscard]] const Issuer* issuer_of(const x509::OcspCertId& id) const;
  [[nodiscard]] Result<x509::OcspSingleResponse> lookup(const Issuer& issuer, const x509::OcspCertId& id,
                                                        Seconds now);

  store::Store& store_;
  std::vector<CaSource> cas_;
  std::vector<Issuer> issuers_;
  const Clock& clock_;
  ResponderOptions options_;

  mutable std::shared_mutex cache_mutex_;
  std::unordered_map<std::string, Cached> cache_;

  mutable std::shared_mutex index_mutex_;
  std::unordered_map<std::string, store::Id> device_serials_;  // "<ca>/<serial hex>" -> device id
  store::Id indexed_after_ = 0;
  std::atomic<bool> indexed_{false};
};

}  // namespace hallmark::revocation

#pragma once
// The registration authority: one core every protocol front end (EST now) calls.
//
//   authenticate (the TLS peer, the CSR's proof) -> authorize by the alias's policy -> choose the
//   profile -> ca::Issuer -> store.record_issuance (certificate + end entity + audit in one
//   transaction, committed before the front end sees the certificate) -> after-issue BC handling.
//
// Decisions are typed: an Errc, a stable problem code (e.g. "ukid-mismatch") and a reason. Only the
// front end maps them to protocol statuses. Every decision on an enrollment operation, accepted or
// refused, is an audit record carrying the reason and the request id. No OpenSSL, no SQL here.
#include <chrono>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/ra/policy.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::ra {

// A refused (or deferred) decision. `problem` is stable, for machines; `reason` is for people and
// goes to the audit log verbatim: it never holds a secret.
struct Refusal {
  Errc code = Errc::forbidden;
  std::string problem;
  std::string reason;
  std::optional<std::chrono::seconds> retry_after;  // unavailable: when to try again
};

template <class T>
using Decision = std::expected<T, Refusal>;

// Stable problem codes (docs/est.md lists them with their statuses).
namespace problem {
inline constexpr const char* kUnknownAlias = "unknown-alias";
inline constexpr const char* kSpoofedHeader = "spoofed-client-cert-header";
inline constexpr const char* kClientCertRequired = "client-certificate-required";
inline constexpr const char* kUntrustedClientCert = "untrusted-client-certificate";
inline constexpr const char* kUnknownDevice = "unknown-device";
inline constexpr const char* kDeviceNotMounted = "device-not-mounted";
inline constexpr const char* kDeviceRetired = "device-retired";
inline constexpr const char* kBcRevoked = "bc-revoked";
inline constexpr const char* kBcConsumed = "bc-consumed";
inline constexpr const char* kAuthenticatorNotAllowed = "authenticator-not-allowed";
inline constexpr const char* kBadCsr = "bad-csr";
inline constexpr const char* kCsrSignature = "csr-signature-invalid";
inline constexpr const char* kUkidMissing = "ukid-missing";
inline constexpr const char* kUkidMismatch = "ukid-mismatch";
inline constexpr const char* kSecretMissing = "secret-missing";
inline constexpr const char* kSecretMismatch = "secret-mismatch";
inline constexpr const char* kPopMissing = "pop-linking-missing";
inline constexpr const char* kPopMismatch = "pop-linking-mismatch";
inline constexpr const char* kPopUnavailable = "pop-linking-unavailable";
inline constexpr const char* kKeyNotAllowed = "key-not-allowed";
inline constexpr const char* kNoEndEntity = "no-end-entity";
inline constexpr const char* kEndEntityState = "end-entity-not-issuable";
inline constexpr const char* kAliasMismatch = "alias-mismatch";
inline constexpr const char* kAlreadyEnrolled = "already-enrolled";
inline constexpr const char* kNotAnIdc = "not-an-idc";
inline constexpr const char* kUnknownIdc = "unknown-idc";
inline constexpr const char* kIdcRevoked = "idc-revoked";
inline constexpr const char* kIdcExpired = "idc-expired";
inline constexpr const char* kOutsideRenewalWindow = "outside-renewal-window";
inline constexpr const char* kSubjectMismatch = "subject-mismatch";
inline constexpr const char* kSanMismatch = "san-mismatch";
inline constexpr const char* kKeyReuse = "key-reuse";
inline constexpr const char* kServerKeygenDisabled = "serverkeygen-disabled";
inline constexpr const char* kPending = "pending-approval";
inline constexpr const char* kStoreUnavailable = "store-unavailable";
inline constexpr const char* kIssuanceFailed = "issuance-failed";
inline constexpr const char* kInternal = "internal-error";
}  // namespace problem

// The TLS peer as the HTTP layer verified it (or a trusted proxy forwarded it).
struct Peer {
  std::vector<x509::Certificate> chain;  // leaf first; empty: no client certificate
  bool expired = false;                  // a certificate of the chain was outside its validity
  std::string channel_binding_type;      // "tls-unique" | "tls-exporter" | "" (none)
  Bytes channel_binding;
  bool via_proxy = false;
  // `chain` is the path the server's own TLS layer verified at the handshake without any error
  // (every signature from the leaf up to an anchor of the union of all aliases' chains, every
  // validity, the client-authentication purpose). Only the front end sets it, for a direct peer.
  bool verified = false;
  std::string remote_address;
  [[nodiscard]] const x509::Certificate* leaf() const noexcept {
    return chain.empty() ? nullptr : &chain.front();
  }
};

// What every decision is about, for the audit record.
struct RequestContext {
  std::string alias;  // as requested; empty: the default alias
  std::string request_id;
  Peer peer;
};

struct EnrollRequest {
  RequestContext context;
  Bytes csr_der;  // one DER CertificationRequest (the front end removed the transfer encoding)
  std::optional<Secret> basic_password;  // HTTP Basic password sent inside mTLS (Option 3 secret)
};

struct Enrollment {
  enum class Status { issued, pending };
  Status status = Status::issued;
  x509::Certificate certificate;
  std::optional<Secret> private_key_pkcs8;  // server_keygen: the new key, unencrypted PKCS#8 DER
  bool replayed = false;                    // idempotent retry: the IDC issued before, again
  std::chrono::seconds retry_after{0};      // pending
};

// A CA of an alias's enroll_cas/reenroll_cas whose own path make_alias verified once: a client path
// the TLS layer verified through it needs no second verification (see Peer::verified).
struct VerifiedCa {
  x509::Certificate ca;
  bool partial = false;  // recorded without its root: it vouches only for what it issued directly
  Seconds valid_from{};  // every certificate of its path is valid from..until
  Seconds valid_until{};
};

// An alias ready to serve: its policy plus the objects built from it once at start-up.
struct Alias {
  AliasPolicy policy;
  std::shared_ptr<const ca::Issuer> issuer;  // the issuing CA (policy.ca)
  ca::Profile profile;                       // lifetime already set from policy.lifetime
  std::vector<x509::Certificate> ca_chain;   // the issuing CA first, up to its root (cacerts)
  // A client certificate is accepted for an operation when its verified path passes through one
  // of these CAs (the named CA itself, not merely its root: the root also anchors the other CAs).
  std::vector<x509::Certificate> enroll_cas;     // policy.enroll_anchors
  std::vector<x509::Certificate> reenroll_cas;   // policy.reenroll_cas
  x509::TrustStore enroll_trust;                 // the roots above enroll_cas
  x509::TrustStore reenroll_trust;               // the roots above reenroll_cas
  std::vector<x509::Certificate> intermediates;  // offered to path building besides the peer's chain
  // CAs of enroll_cas/reenroll_cas recorded without their root: checked directly (see make_alias).
  std::vector<x509::Certificate> enroll_partial;
  std::vector<x509::Certificate> reenroll_partial;
  // The CAs above whose paths were verified at start-up; a CA whose path failed then, or carries
  // name or policy constraints (which reach down to the client certificate), is not here.
  std::vector<VerifiedCa> enroll_verified;
  std::vector<VerifiedCa> reenroll_verified;
};

// Builds an Alias from certificates the caller resolved (cmd_serve from the PKI home, tests from a
// test PKI). Each chain is one CA of policy.enroll_anchors / policy.reenroll_cas (in that order),
// the CA first, up to its root. An external CA recorded without its root is accepted as a partial
// anchor: certificates it issued directly are checked against it (signature, names, validity).
[[nodiscard]] Result<Alias> make_alias(AliasPolicy policy, std::shared_ptr<const ca::Issuer> issuer,
                                       ca::Profile profile, std::vector<x509::Certificate> ca_chain,
                                       const std::vector<std::vector<x509::Certificate>>& enroll_chains,
                                       const std::vector<std::vector<x509::Certificate>>& reenroll_chains);

struct RegistrarOptions {
  std::string default_alias;  // serves /.well-known/est/<op>; empty: that path is unknown
  // Profile variables every alias gets unless it sets them: org, product (from [pki]).
  std::map<std::string, std::string> variables;
  std::string actor = "ra";
  // Called after a BC was flagged revoked (after_issue = "revoke-bc"): the hook for real CRL
  // revocation of the BC under our BC CA. Runs on the request's thread, concurrently with other
  // requests: must be thread-safe and must not throw.
  std::function<void(const store::DeviceRecord& device, const std::string& request_id)> on_bc_revoked;
  std::chrono::seconds unavailable_retry_after{5};
  std::chrono::seconds pending_retry_after{60};
};

class Registrar final {
 public:
  // `store` and `clock` must outlive the registrar. Thread-safe: every method may run concurrently.
  Registrar(store::Store& store, const Clock& clock, std::vector<Alias> aliases, RegistrarOptions options);

  // The alias for `name` (empty: the default one); nullptr when unknown.
  [[nodiscard]] const Alias* find_alias(std::string_view name) const;
  [[nodiscard]] std::vector<std::string> alias_names() const;

  // The issuing CA's chain (cacerts).
  [[nodiscard]] Decision<std::vector<x509::Certificate>> cacerts(std::string_view alias) const;
  // Dotted OIDs the alias requires in a CSR (csrattrs): the UKID attribute type, and
  // challengePassword when POP linking is required or the alias takes Option 3 secrets.
  [[nodiscard]] Decision<std::vector<std::string>> csr_attributes(std::string_view alias) const;

  [[nodiscard]] Decision<Enrollment> simple_enroll(const EnrollRequest& request);
  [[nodiscard]] Decision<Enrollment> simple_reenroll(const EnrollRequest& request);
  // Enroll-style authentication; the CSR carries the request, the server makes the key.
  [[nodiscard]] Decision<Enrollment> server_keygen(const EnrollRequest& request);

  // Audits a refusal the front end decided before reaching the registrar (unknown alias, wrong
  // media type, undecodable body, spoofed proxy header) and returns it.
  Refusal refuse(std::string_view action, const RequestContext& context, Refusal refusal);

 private:
  struct Attempt;
  enum class Mode { enroll, keygen };
  Decision<Enrollment> enroll(const EnrollRequest& request, Mode mode);
  Decision<Enrollment> enroll_checked(Attempt& a, const EnrollRequest& request, Mode mode);
  Decision<Enrollment> reenroll_checked(Attempt& a, const EnrollRequest& request);
  Decision<Enrollment> issue(Attempt& a, store::IssuanceKind kind, const store::DeviceRecord& device,
                             const store::EndEntityRecord& ee, const crypto::PublicKey& key,
                             const std::optional<x509::Csr>& csr, std::optional<Secret> private_key);
  Decision<Enrollment> replay(Attempt& a, const store::DeviceRecord& device,
                              const store::CertificateRecord& record);
  // The alias's after_issue flag still to set on the device's BC for this attempt (none when set).
  [[nodiscard]] store::BcMark after_issue_mark(const Attempt& a, const store::DeviceRecord& device) const;
  [[nodiscard]] store::AuditEvent after_issue_event(const Attempt& a,
                                                    const store::DeviceRecord& device) const;
  // Sets the flag in a transaction of its own (a replayed issuance whose record lacks it).
  void apply_after_issue(Attempt& a, const store::DeviceRecord& device);
  // A Lite device's first contact: pins `bc` to the device it names. nullopt when `bc` names no
  // Lite device (the caller refuses it as unknown).
  Decision<std::optional<store::DeviceRecord>> pin_lite_device(Attempt& a, const x509::Certificate& bc,
                                                               const std::string& fingerprint);
  Refusal store_error(Attempt& a, const Error& error, std::string_view what);
  Refusal audited(Attempt& a, Refusal refusal);
  [[nodiscard]] std::map<std::string, std::string> variables_for(const Alias& alias,
                                                                 const store::DeviceRecord& device,
                                                                 const store::EndEntityRecord& ee) const;

  store::Store& store_;
  const Clock& clock_;
  std::map<std::string, Alias, std::less<>> aliases_;
  RegistrarOptions options_;
};

}  // namespace hallmark::ra

#pragma once
// The checks and requests of one enrollment, shared by the agent and the fleet. Private to src/device.
#include <optional>
#include <string>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/device/est_client.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/csr.hpp"

namespace hallmark::device::detail {

// Every certificate of a cacerts answer must chain to the trust anchor (another root is refused).
[[nodiscard]] Status check_cacerts(const std::vector<x509::Certificate>& cacerts,
                                   const x509::TrustStore& trust, Seconds now);
// The issued certificate carries `key` and chains through `cacerts` to the trust anchor.
[[nodiscard]] Status check_issued(const std::vector<x509::Certificate>& answer, const crypto::PublicKey& key,
                                  const std::vector<x509::Certificate>& cacerts,
                                  const x509::TrustStore& trust, Seconds now);

struct CsrPlan {
  std::string ukid;
  const Secret* ukid_secret = nullptr;
  std::optional<std::string> channel_binding;  // POP linking: goes in challengePassword
};
// The enrollment CSR: the UKID in every subject attribute the server asks for (serialNumber when it
// asks for none), the Option 3 secret in challengePassword (unless POP linking takes it).
[[nodiscard]] Result<x509::Csr> make_enroll_csr(const CsrAttrs& attrs, const CsrPlan& plan,
                                                const crypto::Signer& key);
// The re-enrollment CSR: the subject and SAN of the current IDC.
[[nodiscard]] Result<x509::Csr> make_reenroll_csr(const x509::Certificate& idc, const crypto::Signer& key,
                                                  std::optional<std::string> channel_binding);

// Certificates a client sends after its leaf: the CAs of cacerts that are not self-signed.
[[nodiscard]] std::vector<x509::Certificate> intermediates_of(const std::vector<x509::Certificate>& cacerts);

[[nodiscard]] x509::TrustStore make_trust_store(const std::vector<x509::Certificate>& anchors);

}  // namespace hallmark::device::detail
